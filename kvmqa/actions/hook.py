"""The pytest side of install mode (a pytest plugin, listed in kvmqa.plugin's `pytest_plugins`).

- registers `install_hook` in `kvmqa.plugin.STAGE_HOOKS`: in `--mode install` or `--plan`, a stage's steps run
  (or are planned) before its gate, so the stage's checks verify the fresh facts;
- every step's record travels in the current test's `user_properties` (ACTION_PROP), so xdist workers hand
  them to the controller, which files it in `RunResults.actions` and as a Finding in stage `install`;
- `-n N` in install mode means `--dist loadgroup` (kvmqa.fleet's host scheduler): one worker per host;
- the terminal summary lists the steps (the plan, with its commands, under --plan).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from kvmqa.actions.base import DONE, FAILED, PLANNED, REFUSED, SATISFIED, SKIPPED, STATUSES, ActionRecord
from kvmqa.actions.runner import run_stage
from kvmqa.model import Finding, Level, Verdict
from kvmqa.plugin import RUN_KEY, STAGE_HOOKS

ACTION_PROP = "kvmqa_install_action"
VERDICTS = {DONE: Verdict.PASS, SATISFIED: Verdict.PASS, PLANNED: Verdict.WARN, FAILED: Verdict.FAIL,
            REFUSED: Verdict.FAIL, SKIPPED: Verdict.SKIP}
_PENDING: list[ActionRecord] = []  # produced during the running test, attached to its report
_CONFIG: dict[str, pytest.Config] = {}


def wants_install(options: Any) -> bool:
    return options.mode == "install" or bool(options.plan)


def install_hook(session: Any, stage_def: Any) -> None:
    if wants_install(session.options):
        _PENDING.extend(run_stage(session, stage_def))


if install_hook not in STAGE_HOOKS:
    STAGE_HOOKS.append(install_hook)


def finding_of(record: ActionRecord) -> Finding:
    level = Level.WARN if record.status == PLANNED or record.level == "warn" else Level.FAIL
    verdict = VERDICTS[record.status]
    if verdict == Verdict.FAIL and level == Level.WARN:
        verdict = Verdict.WARN
    return Finding(record.host, "install", record.id, record.description, level, verdict,
                   f"{record.status}: {record.message}", hint=record.hint, duration=record.duration,
                   details={"action": record.to_json()})


def pytest_configure(config: pytest.Config) -> None:
    _CONFIG["config"] = config
    opt = config.option
    if wants_install(opt) and getattr(opt, "dist", "no") == "load":
        # -n N alone means --dist load: two workers could change one host at once. kvmqa's loadgroup scheduler
        # (kvmqa.fleet, registered by the plugin) keeps each host's stages on one worker, in order.
        opt.dist = "loadgroup"


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> None:
    if call.when == "call" and _PENDING:
        for record in _PENDING:
            item.user_properties.append((ACTION_PROP, json.dumps(record.to_json(), default=str)))
        _PENDING.clear()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    config = _CONFIG.get("config")
    if report.when != "call" or config is None or RUN_KEY not in config.stash:
        return
    run = config.stash[RUN_KEY]
    for name, value in report.user_properties:
        if name == ACTION_PROP:
            data = json.loads(str(value))
            run.results.actions.append(data)
            run.results.add(finding_of(ActionRecord.from_json(data)))


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
    if run is None or not run.suite_run or getattr(config, "workerinput", None) is not None or not run.results.actions:
        return
    plan = bool(run.options.plan)
    terminalreporter.write_sep("=", "kvmqa: install plan (nothing was changed)" if plan else "kvmqa: install actions")
    for line in summary_lines(run.results.actions, plan):
        terminalreporter.write_line(line)
