"""The pytest side of install mode (a pytest plugin, listed in kvmqa.pytest_plugin.plugin's `pytest_plugins`).

- implements `pytest_kvmqa_before_stage`: in `--mode install` or `--plan`, a stage's steps run (or are
planned) before
  its gate, so the stage's checks verify the fresh facts; the records wait on the run's `InstallRecorder`;
- every step's record travels in the current test's `user_properties` (ACTION_PROP), so xdist workers hand
  them to the controller, which files it in `RunResults.actions` and as a Finding in stage `install`;
- the terminal summary lists the steps (the plan, with its commands, under --plan).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest

from kvmqa.act.runner import run_stage
from kvmqa.core.action import DONE, FAILED, PLANNED, REFUSED, SATISFIED, SKIPPED, STATUSES, ActionRecord
from kvmqa.core.model import Finding, Level, Verdict
from kvmqa.pytest_plugin.run import RUN_KEY

if TYPE_CHECKING:
    from kvmqa.core.stage import Stage
    from kvmqa.session.host import HostSession

ACTION_PROP = "kvmqa_install_action"
VERDICTS = {
    DONE: Verdict.PASS,
    SATISFIED: Verdict.PASS,
    PLANNED: Verdict.WARN,
    FAILED: Verdict.FAIL,
    REFUSED: Verdict.FAIL,
    SKIPPED: Verdict.SKIP,
}


class InstallRecorder:
    """Registered per run in install mode: runs a stage's steps before its gate and hands their records from
    the
    test that triggered them to the process that writes the reports."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.pending: list[ActionRecord] = []  # produced during the running test, attached to its report

    @pytest.hookimpl
    def pytest_kvmqa_before_stage(self, session: HostSession, stage: Stage) -> None:
        self.pending.extend(run_stage(session, stage))

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[Any]) -> None:
        if call.when == "call" and self.pending:
            for record in self.pending:
                item.user_properties.append((ACTION_PROP, json.dumps(record.to_json(), default=str)))
            self.pending.clear()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        run = self.config.stash.get(RUN_KEY, None)
        if report.when != "call" or run is None:
            return
        for name, value in report.user_properties:
            if name == ACTION_PROP:
                data = json.loads(str(value))
                run.results.actions.append(data)
                run.results.add(finding_of(ActionRecord.from_json(data)))


def finding_of(record: ActionRecord) -> Finding:
    level = Level.WARN if record.status == PLANNED or record.level == "warn" else Level.FAIL
    verdict = VERDICTS[record.status]
    if verdict == Verdict.FAIL and level == Level.WARN:
        verdict = Verdict.WARN
    return Finding(
        record.host,
        "install",
        record.id,
        record.description,
        level,
        verdict,
        f"{record.status}: {record.message}",
        hint=record.hint,
        duration=record.duration,
        details={"action": record.to_json()},
    )


@pytest.hookimpl(trylast=True)  # after kvmqa's own configure has read the options
def pytest_configure(config: pytest.Config) -> None:
    run = config.stash.get(RUN_KEY, None)
    if run is not None and run.options.install_steps:
        config.pluginmanager.register(InstallRecorder(config), "kvmqa-install")


def summary_lines(actions: list[dict[str, Any]], plan: bool) -> list[str]:
    lines = []
    for a in actions:
        lines.append(f"{a['host']}  {a['stage']:<9} {a['id']:<24} {a['status']:<18} {a['message']}")
        if a.get("command") and (plan or a["status"] in (DONE, FAILED, PLANNED)):
            lines += ["      $ " + c for c in str(a["command"]).splitlines()]
    counts = {s: sum(1 for a in actions if a["status"] == s) for s in STATUSES}
    lines.append(", ".join(f"{n} {s}" for s, n in counts.items() if n))
    return lines


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    run = config.stash.get(RUN_KEY, None)
    if (
        run is None
        or not run.suite_run
        or getattr(config, "workerinput", None) is not None
        or not run.results.actions
    ):
        return
    plan = bool(run.options.plan)
    terminalreporter.write_sep(
        "=", "kvmqa: install plan (nothing was changed)" if plan else "kvmqa: install actions"
    )
    for line in summary_lines(run.results.actions, plan):
        terminalreporter.write_line(line)
