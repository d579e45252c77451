"""Verify mode (the default) and --plan change nothing on the target: real runs of the suites on this
machine."""

from __future__ import annotations

from pathlib import Path

from tests.install_support import diff, host_lock, requires_host, run_suites, snapshot

pytestmark = requires_host


def test_verify_and_plan_are_read_only(tmp_path: Path) -> None:
    with host_lock():
        before = snapshot()
        _, verify, _ = run_suites(tmp_path / "verify")
        after_verify = snapshot()
        _, plan, _ = run_suites(tmp_path / "plan", "--plan")
        after_plan = snapshot()
    assert verify["actions"] == [] and not any(f["stage"] == "install" for f in verify["results"])
    assert diff(before, after_verify) == {}
    assert plan["actions"], "--plan reports every step (planned or already satisfied)"
    assert {a["status"] for a in plan["actions"]} <= {
        "planned",
        "already-satisfied",
        "refused",
        "skipped",
        "failed",
    }
    assert all(a["rc"] is None for a in plan["actions"]), "plan mode ran a command"
    assert diff(before, after_plan) == {}
