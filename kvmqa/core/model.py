"""Plain data shared by every room: levels, verdicts, findings.

Data flows one way: gather (facts) -> evaluate (checks -> findings) -> act -> report.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol


class Level(str, enum.Enum):
    """How much a failing check matters."""

    FAIL = "fail"
    WARN = "warn"
    INFO = "info"


class Verdict(str, enum.Enum):
    """What a check concluded about one host."""

    PASS = "pass"
    FAIL = "fail"  # a fail-level check did not hold
    WARN = "warn"  # a warn-level check did not hold
    INFO = "info"  # informational: recorded, never fails
    SKIP = "skip"  # not evaluated (dependency failed, role absent, not applicable)
    ERROR = "error"  # the check could not run (host unreachable, bad input)
    WAIVED = "waived"  # did not hold, but a valid waiver excuses it


@dataclass
class Outcome:
    """What a check function returns; the registry turns it into a Finding."""

    ok: bool | None  # None: not applicable on this host (becomes SKIP)
    message: str
    details: dict[str, Any] = field(default_factory=dict)
    level: Level | None = None  # override the check's default level (profile-driven)
    hint: str | None = None  # override the check's default hint
    error: bool = False  # the check could not decide (its evidence could not be read): an ERROR finding


def passed(message: str, **details: Any) -> Outcome:
    return Outcome(True, message, details)


def failed(message: str, *, level: Level | None = None, hint: str | None = None, **details: Any) -> Outcome:
    return Outcome(False, message, details, level=level, hint=hint)


def info(message: str, **details: Any) -> Outcome:
    """A fact worth showing that can neither pass nor fail."""
    return Outcome(True, message, details, level=Level.INFO)


def not_applicable(message: str, **details: Any) -> Outcome:
    return Outcome(None, message, details)


def undecided(message: str, *, hint: str | None = None, **details: Any) -> Outcome:
    """The evidence the check needs could not be read (not: the host lacks it): an ERROR, never a FAIL or
    PASS."""
    return Outcome(False, message, details, hint=hint, error=True)


class CheckLike(Protocol):
    """What a Finding factory reads of a check (kvmqa.core.checks.Check, or a stage's `<stage>.*`
    pseudo-check)."""

    @property
    def id(self) -> str: ...
    @property
    def stage(self) -> str: ...
    @property
    def title(self) -> str: ...
    @property
    def level(self) -> Level: ...


@dataclass(frozen=True)
class StageCheck:
    """A stage as a whole (`libvirt.*`): what a stage gate's finding is about."""

    stage: str
    level: Level = Level.FAIL

    @property
    def id(self) -> str:
        return f"{self.stage}.*"

    @property
    def title(self) -> str:
        return self.stage


@dataclass
class Finding:
    """One check's verdict on one host: the unit every report is made of."""

    host: str
    stage: str
    check_id: str
    title: str
    level: Level
    verdict: Verdict
    message: str
    hint: str = ""
    duration: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)
    waiver: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["level"] = self.level.value
        data["verdict"] = self.verdict.value
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Finding:
        data = dict(data)
        data["level"] = Level(data["level"])
        data["verdict"] = Verdict(data["verdict"])
        return cls(**data)

    @classmethod
    def skipped(
        cls,
        host: str,
        check: CheckLike,
        message: str,
        *,
        blocked_by: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> Finding:
        """A check that did not run because something it needs does not hold; `blocked_by` names the root
        cause."""
        details = dict(details or {})
        if blocked_by:
            details["blocked_by"] = blocked_by
        return cls(
            host, check.stage, check.id, check.title, check.level, Verdict.SKIP, message, details=details
        )

    @classmethod
    def error(cls, host: str, check: CheckLike, message: str, **details: Any) -> Finding:
        """A check that could not run (its stage's facts could not be gathered, the host broke mid-way)."""
        return cls(
            host, check.stage, check.id, check.title, check.level, Verdict.ERROR, message, details=details
        )

    @property
    def is_failure(self) -> bool:
        return self.verdict in (Verdict.FAIL, Verdict.ERROR)
