"""Checks are pure functions of facts, with a stable ID, a level and a remediation hint.

>>> cpu = StageChecks("cpu")
>>> @cpu.check("cpu.example", "Example", hint="do something")
... def example(facts, profile):
...     return passed("fine")
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from kvmqa.core.facts import HostFacts
from kvmqa.core.model import Finding, Level, Outcome, Verdict

# A check reads the host's facts and the run's profile (kvmqa.config.profile.Profile, a layer above this one:
# the bottom layer passes it through untouched, so it is typed Any here and Profile in the stages).
CheckFn = Callable[[HostFacts, Any], Outcome]


@dataclass(frozen=True)
class Check:
    id: str
    stage: str
    title: str
    level: Level
    hint: str
    requires: tuple[str, ...]
    fn: CheckFn

    def evaluate(self, host: str, facts: HostFacts, profile: Any) -> Finding:
        """Run the check over facts; a bug in a check is an ERROR finding, never a crash."""
        started = time.perf_counter()
        try:
            outcome = self.fn(facts, profile)
        except Exception as exc:  # noqa: BLE001 - a broken check must not take the run down
            outcome = Outcome(False, f"check raised {type(exc).__name__}: {exc}", {"exception": repr(exc)})
            return self.finding(host, outcome, time.perf_counter() - started, verdict=Verdict.ERROR)
        return self.finding(host, outcome, time.perf_counter() - started)

    def finding(
        self, host: str, outcome: Outcome, duration: float, verdict: Verdict | None = None
    ) -> Finding:
        level = outcome.level or self.level
        if verdict is None:
            verdict = Verdict.ERROR if outcome.error else verdict_for(outcome.ok, level)
        return Finding(
            host=host,
            stage=self.stage,
            check_id=self.id,
            title=self.title,
            level=level,
            verdict=verdict,
            message=outcome.message,
            hint="" if verdict == Verdict.PASS else (outcome.hint or self.hint),
            duration=round(duration, 6),
            details=outcome.details,
        )


def verdict_for(ok: bool | None, level: Level) -> Verdict:
    if ok is None:
        return Verdict.SKIP
    if level == Level.INFO:
        return Verdict.INFO
    if ok:
        return Verdict.PASS
    return Verdict.FAIL if level == Level.FAIL else Verdict.WARN


@dataclass
class StageChecks:
    """The ordered checks of one stage, declared with the `check` decorator."""

    stage: str
    checks: list[Check] = field(default_factory=list)

    def check(
        self,
        check_id: str,
        title: str,
        *,
        level: Level = Level.FAIL,
        hint: str = "",
        requires: tuple[str, ...] = (),
    ) -> Callable[[CheckFn], CheckFn]:
        if not check_id.startswith(self.stage + "."):
            raise ValueError(f"check id {check_id!r} must start with {self.stage!r}.")
        if any(c.id == check_id for c in self.checks):
            raise ValueError(f"duplicate check id {check_id!r}")

        def register(fn: CheckFn) -> CheckFn:
            self.checks.append(Check(check_id, self.stage, title, level, hint, tuple(requires), fn))
            return fn

        return register

    def __iter__(self) -> Iterator[Check]:
        return iter(self.checks)

    def ids(self) -> list[str]:
        return [c.id for c in self.checks]

    def get(self, check_id: str) -> Check:
        for c in self.checks:
            if c.id == check_id:
                return c
        raise KeyError(check_id)
