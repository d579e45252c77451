"""Waivers and baselines at the end of a run (pytest_kvmqa_finish): their results.json sections (kvmqa/policy/
holds
the data logic, report/html.py renders the sections), the terminal lines and the exit status."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kvmqa.core.paths import safe_name
from kvmqa.policy.baseline import (
    DOWNTIME_TOLERANCE_PCT,
    compare,
    comparison_lines,
    load_baseline,
    save_baseline,
    snapshot,
)
from kvmqa.policy.waivers import load_waivers, waiver_summary
from kvmqa.pytest_plugin.run import KvmqaRun


def host_facts(run: KvmqaRun, host: str) -> dict[str, Any]:
    """A host's facts on the controller: its in-process session, else the facts.json a worker wrote."""
    session = run.sessions.get(host)
    if session is not None and session.gathered_facts is not None:
        return dict(session.gathered_facts)
    candidates = [
        run.results.hosts.get(host, {}).get("facts"),
        run.options.reports_dir / safe_name(host) / "facts.json",
    ]
    for c in candidates:
        if c and Path(c).is_file():
            return dict(json.loads(Path(c).read_text()))
    return {}


def current_snapshots(run: KvmqaRun) -> dict[str, dict[str, Any]]:
    return {
        h: snapshot(host_facts(run, h), [f for f in run.results.findings if f.host == h])
        for h in run.results.host_names()
    }


def _terminal_on_new_line(session: pytest.Session) -> Any:
    """pytest's terminal reporter (None without one), after ending the progress line it may have left open."""
    terminal = session.config.pluginmanager.get_plugin("terminalreporter")
    if terminal is not None:
        terminal.write_line("")
    return terminal


def finish_waivers(run: KvmqaRun, session: pytest.Session) -> None:
    """The waivers section and expired-waiver warnings on the terminal."""
    waivers = load_waivers(run.options.waivers)
    if not waivers:
        return
    summary = waiver_summary(waivers, run.results.findings)
    run.results.sections["waivers"] = summary
    if summary["warnings"] and (terminal := _terminal_on_new_line(session)) is not None:
        terminal.write_sep("=", "kvmqa: expired waivers", yellow=True)
        for line in summary["warnings"]:
            terminal.write_line(f"WARNING: {line}", yellow=True, bold=True)


def finish_baseline(run: KvmqaRun, session: pytest.Session) -> None:
    """Compare with --compare-baseline (section, terminal, exit status), then --save-baseline."""
    compare_path, save_path = run.options.compare_baseline, run.options.save_baseline
    if not compare_path and not save_path:
        return
    current = current_snapshots(run)
    if compare_path:
        tolerance = float(
            run.profile.stage("migration").get("downtime_tolerance_pct", DOWNTIME_TOLERANCE_PCT)
        )
        comparison = compare(load_baseline(compare_path), current, tolerance)
        run.results.sections["baseline_comparison"] = comparison
        if (terminal := _terminal_on_new_line(session)) is not None:
            terminal.write_sep("=", f"kvmqa: compared with baseline {compare_path}")
            for line in comparison_lines(comparison):
                terminal.write_line(line, red="REGRESSIONS" in line)
        if comparison["regressions"] and session.exitstatus == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
    if save_path:
        save_baseline(save_path, current)


@pytest.hookimpl
def pytest_kvmqa_finish(run: KvmqaRun, session: pytest.Session) -> None:
    finish_waivers(run, session)  # first: the baseline compares waived verdicts as waived
    finish_baseline(run, session)
