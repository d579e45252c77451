"""A run cut short by Ctrl-C (SIGINT) says so: the pytest side of kvmqa.report.interruption.Interruption.

`InterruptRecorder`, registered per suite run, keeps the run state the record needs: which tests were
selected, which started and which finished (logstart/logfinish reach the xdist controller too), and when
SIGINT came. At pytest's KeyboardInterrupt it files the record on the run's results (results.json, the HTML
banner); at the end it adds JUnit testsuite properties and the terminal lines. pytest's exit status stays 2
(interrupted): kvmqa only ever changes a status of 0.
"""

from __future__ import annotations

import signal
import threading
import time
from typing import Any

import pytest

from kvmqa.core.stage import Registry, StageInterrupted
from kvmqa.pytest_plugin.fleet import host_of
from kvmqa.pytest_plugin.run import RUN_KEY, KvmqaRun
from kvmqa.report.interruption import Interruption
from kvmqa.session.cluster import CLUSTER_HOST


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def place_of(nodeid: str, hosts: list[str], registry: Registry) -> dict[str, str]:
    """host, stage and check of a stage test's node id (`...::test_cpu[<host>-<check id>]`), if known."""
    place = {"test": nodeid}
    host = host_of(nodeid, hosts)
    if host is None:  # a run-scoped stage's test (`...::test_migration[migration.live]`): the pseudo-host's
        check = nodeid[nodeid.find("[") + 1 : nodeid.rfind("]")] if "[" in nodeid else ""
        stage = registry.stage_of_check(check)
        if stage is not None and stage.scope == "run":
            return {**place, "host": CLUSTER_HOST, "check": check, "stage": stage.name}
        return place
    check = nodeid[nodeid.find("[") + 1 + len(host) + 1 : nodeid.rfind("]")]
    stage = registry.stage_of_check(check)
    if stage is None:
        return {**place, "host": host}
    return {**place, "host": host, "check": check, "stage": stage.name}


class InterruptRecorder:
    """Per suite run, on the process that writes the reports: what ran when the run was cut short."""

    def __init__(self, run: KvmqaRun) -> None:
        self.run = run
        self.selected: list[str] = []
        self.started: dict[str, None] = {}  # in start order
        self.finished: set[str] = set()
        self.signalled: tuple[str, str] | None = None  # (signal name, UTC time) of the first SIGINT
        self._previous_handler: Any = None

    # -- what ran ------------------------------------------------------------------------------
    @pytest.hookimpl(trylast=True)
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.selected = [item.nodeid for item in session.items]

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        if not self.selected:  # the xdist controller collects nothing itself: the workers' ids (all the same)
            self.selected = list(ids)

    def pytest_runtest_logstart(self, nodeid: str) -> None:
        self.started[nodeid] = None

    def pytest_runtest_logfinish(self, nodeid: str) -> None:
        self.finished.add(nodeid)

    # -- when the signal came ------------------------------------------------------------------------
    def pytest_sessionstart(self) -> None:
        """Note the time of SIGINT, then do what was done before (Python's KeyboardInterrupt). Not where
        SIGINT is ignored or left to the default action, and only in the main thread (which signals reach)."""
        if threading.current_thread() is not threading.main_thread():
            return
        previous = signal.getsignal(signal.SIGINT)
        if callable(previous):
            self._previous_handler = previous
            signal.signal(signal.SIGINT, self._on_sigint)

    def _on_sigint(self, signum: int, frame: Any) -> None:
        if self.signalled is None:
            self.signalled = (signal.Signals(signum).name, utc_now())
        self._previous_handler(signum, frame)

    def pytest_unconfigure(self) -> None:
        if self._previous_handler is not None and signal.getsignal(signal.SIGINT) == self._on_sigint:
            signal.signal(signal.SIGINT, self._previous_handler)

    # -- the record ------------------------------------------------------------------------------------
    def pytest_keyboard_interrupt(self, excinfo: pytest.ExceptionInfo[BaseException]) -> None:
        self.run.results.interruption = self.record(excinfo.value)

    def record(self, exc: BaseException) -> Interruption:
        signal_name, at = self.signalled or ("", utc_now())
        reason = "KeyboardInterrupt" if isinstance(exc, KeyboardInterrupt) else f"pytest.exit: {exc}"
        return Interruption(at, signal_name, reason, self.in_flight(exc), self.not_run())

    def _place(self, nodeid: str) -> dict[str, Any]:
        return place_of(nodeid, [t.name for t in self.run.targets], self.run.registry)

    def in_flight(self, exc: BaseException) -> list[dict[str, Any]]:
        """The tests that started and did not finish; the one whose stage was interrupted gets that stage
        (it may be another than the test's own: a required check's stage) and the stage's cleanup evidence."""
        running = [self._place(n) for n in self.started if n not in self.finished]
        if isinstance(exc, StageInterrupted):
            mine = next((p for p in running if p.get("host") == exc.host), None)
            if mine is None:
                running.append(mine := {"host": exc.host, "test": ""})
            if mine.get("stage") and mine["stage"] != exc.stage:
                mine["test_stage"] = mine["stage"]
            mine["stage"] = exc.stage
            if exc.evidence:
                mine["cleanup"] = exc.evidence
        return running

    def not_run(self) -> list[dict[str, Any]]:
        """Per host, the selected tests that never started, counted by stage, and the stages never started."""
        by_host: dict[str, dict[str, Any]] = {}
        for nodeid in self.selected:
            place = self._place(nodeid)
            entry = by_host.setdefault(place.get("host") or "?", {"started": set(), "by_stage": {}})
            stage = place.get("stage") or "?"
            if nodeid in self.started:
                entry["started"].add(stage)
            else:
                entry["by_stage"][stage] = entry["by_stage"].get(stage, 0) + 1
        return [
            {
                "host": host,
                "checks": sum(e["by_stage"].values()),
                "by_stage": e["by_stage"],
                "stages_never_started": [s for s in e["by_stage"] if s not in e["started"]],
            }
            for host, e in by_host.items()
            if e["by_stage"]
        ]

    # -- JUnit and the terminal --------------------------------------------------------------------------
    @pytest.hookimpl(tryfirst=True)  # before junitxml writes the file
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        try:
            from _pytest.junitxml import xml_key  # the stash key of record_testsuite_property's LogXML
        except ImportError:
            return
        xml = session.config.stash.get(xml_key, None)
        if xml is None:
            return
        interruption = self.run.results.interruption
        xml.add_global_property("kvmqa_interrupted", "true" if interruption else "false")
        if interruption is not None:
            xml.add_global_property("kvmqa_interruption", interruption.banner())

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        interruption = self.run.results.interruption
        if interruption is None:
            return
        terminalreporter.write_sep("=", "kvmqa: RUN INTERRUPTED (exit status 2)", red=True, bold=True)
        for line in interruption.lines():
            terminalreporter.write_line(line, red=True)


@pytest.hookimpl(trylast=True)  # after kvmqa's own configure has made the run
def pytest_configure(config: pytest.Config) -> None:
    run = config.stash.get(RUN_KEY, None)
    if run is not None and run.suite_run and getattr(config, "workerinput", None) is None:
        config.pluginmanager.register(InterruptRecorder(run), "kvmqa-interrupt")
