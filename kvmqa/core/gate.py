"""The one gating rule: a check (or a stage, or an install step) runs only when what it requires holds;
otherwise
it is skipped with a reason naming the root cause, once.

    skipped: depends on libvirt.connect, which is fail on hv1: cannot connect to qemu:///system: ...
    skipped: depends on libvirt.connect, skipped on hv1 because reach.probe did not pass

Used by the host session (suite runs, `python -m kvmqa evaluate`, Ansible runs), by `evaluate_stage` (unit
tests
over recorded facts), and by install mode (`ActionContext.check_gate`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from kvmqa.core.model import Finding, Verdict

if TYPE_CHECKING:
    from kvmqa.core.checks import Check
    from kvmqa.core.facts import HostFacts

OK_VERDICTS = frozenset({Verdict.PASS, Verdict.WARN, Verdict.INFO, Verdict.WAIVED})


def holds(finding: Finding | None) -> bool:
    return finding is None or finding.verdict in OK_VERDICTS


def root_cause(finding: Finding) -> str:
    """The check a chain of skips started from."""
    return (
        str(finding.details.get("blocked_by") or finding.check_id)
        if finding.verdict == Verdict.SKIP
        else finding.check_id
    )


def dependency_reason(blocker: Finding, host: str) -> str:
    if blocker.verdict == Verdict.SKIP and blocker.details.get("blocked_by"):
        return (
            f"depends on {blocker.check_id}, skipped on {host} because {blocker.details['blocked_by']} did "
            "not pass"
        )
    return f"depends on {blocker.check_id}, which is {blocker.verdict.value} on {host}: {blocker.message}"


def skipped_by(check: Check, host: str, blocker: Finding) -> Finding:
    return Finding.skipped(
        host, check, "skipped: " + dependency_reason(blocker, host), blocked_by=root_cause(blocker)
    )


def first_blocker(check_ids: Iterable[str], lookup: Callable[[str], Finding | None]) -> Finding | None:
    """The first required check that did not hold (None: all hold, or unknown here)."""
    for cid in check_ids:
        finding = lookup(cid)
        if not holds(finding):
            return finding
    return None


def evaluate_stage(stage: Iterable[Check], host: str, facts: HostFacts, profile: Any) -> list[Finding]:
    """Evaluate a stage's checks over facts alone, honouring `requires` inside the stage (unit tests, the
    CLI)."""
    done: dict[str, Finding] = {}
    for c in stage:
        blocker = first_blocker(c.requires, done.get)
        done[c.id] = skipped_by(c, host, blocker) if blocker is not None else c.evaluate(host, facts, profile)
    return list(done.values())
