"""A run cut short (Ctrl-C): the record results.json keeps, and its words for the terminal, HTML and JUnit.

    Interruption(at="2026-12-01T10:00:06Z", signal="SIGINT", reason="KeyboardInterrupt",
                 in_flight=[{"host": "local", "stage": "first_vm", "check": "first_vm.kvm-boot",
                             "test": "...", "cleanup": {"removed": ["domain kvmqa-kvm-local-3f2a", ...]}}],
                 not_run=[{"host": "local", "checks": 10, "by_stage": {"first_vm": 10},
                           "stages_never_started": []}])

results.json always has `interrupted` (true or false) and `interruption` (this record, or null).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Interruption:
    at: str  # UTC, ISO 8601: when the signal came (when pytest stopped, if no signal was seen)
    signal: str  # "SIGINT", or "" when no signal came (a KeyboardInterrupt raised in code, pytest.exit)
    reason: str  # "KeyboardInterrupt", "pytest.exit: <message>"
    # what ran when it came: host, stage, check, test (node id) and, from a stage that cleans up, "cleanup"
    # (created / removed / leftovers: kvmqa- objects as libvirt listed them after the stage's own cleanup)
    in_flight: list[dict[str, Any]] = field(default_factory=list)
    # per host, the selected tests that never started: checks (count), by_stage {stage: count},
    # stages_never_started (stages none of whose tests started on that host)
    not_run: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Interruption | None:
        return cls(**data) if data else None

    def lines(self) -> list[str]:
        """One line each: when and why, what was in flight and its cleanup, what never ran."""
        how = self.signal or "no signal"
        out = [f"interrupted at {self.at} ({how}: {self.reason})"]
        for item in self.in_flight or [{}]:
            out.append(f"in flight: {_in_flight_text(item)}")
            cleanup = item.get("cleanup")
            if cleanup:
                out.append(_cleanup_text(item.get("stage", "?"), cleanup))
        nothing = ["not run: nothing (every selected check started)"]
        return out + ([_not_run_text(entry) for entry in self.not_run] or nothing)

    def banner(self) -> str:
        """One line for the top of the HTML report and the JUnit property."""
        return "RUN INTERRUPTED: " + "; ".join(self.lines())


def _in_flight_text(item: dict[str, Any]) -> str:
    if not item:
        return "no check (between tests)"
    check = f" check {item['check']}" if item.get("check") else f" test {item.get('test', '?')}"
    return f"host {item.get('host') or '?'} stage {item.get('stage') or '?'}{check}"


def _cleanup_text(stage: str, cleanup: dict[str, Any]) -> str:
    removed = ", ".join(cleanup.get("removed") or []) or "none"
    text = f"{stage} objects removed: {removed}"
    guest = cleanup.get("guest") or {}
    if guest:
        stopped = guest.get("stopped_by") or "?"
        text += f" (guest {guest.get('name')} {guest.get('outcome')}, stopped by {stopped})"
    if cleanup.get("pair"):  # the migration stage: the move in flight
        text += f" (move in flight: {cleanup['pair']})"
    if cleanup.get("leftovers"):
        text += f"; LEFT BEHIND: {', '.join(cleanup['leftovers'])}"
    return text


def _not_run_text(entry: dict[str, Any]) -> str:
    stages = ", ".join(f"{stage} {n}" for stage, n in entry.get("by_stage", {}).items())
    never = ", ".join(entry.get("stages_never_started") or []) or "none"
    return (
        f"not run on {entry.get('host')}: {entry.get('checks', 0)} check(s) ({stages}); "
        f"stages never started: {never}"
    )
