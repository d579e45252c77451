"""Install actions as data: each an idempotent step with a precondition read from facts.

    action = Action("install.example", "libvirt", "make it so", precondition, commands, timeout=60)
    action.decide(facts, ctx)   -> Decision("run" | "done" | "unsupported" | "skip", reason)
    run_action(action, facts, ctx, done={...})   -> ActionRecord (status done / already-satisfied / planned /
                                                     failed / refused / skipped)

Preconditions and command builders are pure functions of `HostFacts` and the run's `ActionContext`
(tested over recorded facts); only `run_action` touches the target, and only when `ctx.execute`.

A step's commands are shell strings (`ctx.run(command, timeout)`) or `Call`s: Python that reaches the target
through the context itself (`ctx.run`, `ctx.put_file`), e.g. engine-setup writing its secret answers to a 0600
file instead of a command line. A `Call` is shown (plan, records) by its `shown` text, never by its data.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

# Statuses an action ends in. Only DONE changed the target.
DONE = "done"
SATISFIED = "already-satisfied"
PLANNED = "planned"
FAILED = "failed"
REFUSED = "refused"
SKIPPED = "skipped"
STATUSES = (DONE, SATISFIED, PLANNED, FAILED, REFUSED, SKIPPED)
BLOCKING = frozenset({FAILED, REFUSED, SKIPPED})  # a dependent step cannot go on after these

TAIL = 2000  # characters of output kept per action


@dataclass(frozen=True)
class Decision:
    """A precondition's answer: `run` (needed), `done` (already satisfied), `unsupported` (needed but not
    possible here: FAILED) or `skip` (does not apply to this host, e.g. a role's step on a distro that role
    does not support: SKIPPED with the reason)."""

    state: str
    reason: str


def needed(reason: str) -> Decision:
    return Decision("run", reason)


def satisfied(reason: str) -> Decision:
    return Decision("done", reason)


def unsupported(reason: str) -> Decision:
    return Decision("unsupported", reason)


def skip(reason: str) -> Decision:
    return Decision("skip", reason)


class StepResult(Protocol):
    """What `run_action` reads from a step's result (`timed_out` via getattr, when there is one)."""

    rc: int
    stdout: str
    stderr: str


class ResultLike(StepResult, Protocol):
    duration: float
    timed_out: bool


@dataclass
class ActionContext:
    """What preconditions and commands may read besides facts, and how commands reach the target."""

    host: str
    run: Callable[[str, float], ResultLike] | None = None  # target.run(command, timeout)
    put_file: Callable[[str, bytes, int], None] | None = (
        None  # target.put_file(path, data, mode): data never on a command line
    )
    engine_password: Any = None  # kvmqa.config.options.Secret or None
    roles: tuple[str, ...] = ()  # the target's inventory roles
    stage_context: Any = None  # what the stage declares its steps need besides facts (Stage.install_context)
    execute: bool = False  # False: plan only, never call `run`
    libvirt_user: str | None = None
    extra_packages: Mapping[str, list[str]] = field(default_factory=dict)  # family -> names (profile)
    sudo: bool = False
    secrets: tuple[str, ...] = ()  # values to blank out of every recorded output
    records: dict[str, ActionRecord] = field(default_factory=dict)  # id -> record, earlier steps of this host
    # the verify gate: the first of these check ids that does not hold on this host (a Finding), else None
    check_gate: Callable[[tuple[str, ...]], Any] | None = None


@dataclass(frozen=True)
class Retry:
    """When a step fails and its output matches `pattern`, run `command` once, then the step again (apt-get
    update)."""

    pattern: str
    command: str
    why: str


@dataclass(frozen=True)
class Call:
    """A step command that is Python, not a shell string: `fn(ctx) -> result` (rc, stdout, stderr, ...).
    `shown` is what the plan and the records show for it."""

    shown: str
    # Any: called with the run's ActionContext, but written against narrower protocols such as
    # kvmqa.stages.ovirt_engine.actions.InstallContext (whose `run` is not optional), which ActionContext
    # cannot satisfy.
    fn: Callable[[Any], StepResult]

    def __call__(self, ctx: ActionContext) -> StepResult:
        return self.fn(ctx)


Command = str | Call


def command_text(command: Command) -> str:
    return command if isinstance(command, str) else command.shown


@dataclass(frozen=True)
class Action:
    id: str
    stage: str  # the verify stage this step belongs to (runs before its gate)
    description: str
    precondition: Callable[[Mapping[str, Any], ActionContext], Decision]
    commands: Callable[
        [Mapping[str, Any], ActionContext], Sequence[Command]
    ]  # run in order, stop at the first failure
    timeout: float = 600.0  # per command
    requires: tuple[str, ...] = ()  # ids of steps that must not have failed
    # ids of verify checks that must hold first (on fresh facts): what the step really needs, e.g. the libvirt
    # daemon package for starting the daemons, not the whole package step (a missing client tool must not stop
    # it)
    requires_checks: tuple[str, ...] = ()
    needs_root: bool = True
    facts: tuple[str, ...] = ()  # gathered (non-probe) fact sections the precondition reads
    retry: Retry | None = None
    explain_failure: Callable[[Mapping[str, Any], str], str] | None = (
        None  # extra context for a failure message
    )
    hint: str = ""
    applies: Callable[[ActionContext], bool] | None = (
        None  # None: always; else only when it says so (an option)
    )
    # Asked before anything else (dependencies, gathering `facts`): a Decision (e.g. skip: "not supported on
    # debian 12") is final; None lets the step go on to its precondition.
    supported: Callable[[Mapping[str, Any]], Decision | None] | None = None
    # The level ("fail"/"warn") of a failure of this step, from facts and the profile (default: fail). A step
    # that
    # only serves warn-level checks (e.g. loading vhost_net) must not fail a run those checks would only warn
    # about.
    severity: Callable[[Mapping[str, Any], Any], str] | None = None

    def unsupported_here(self, facts: Mapping[str, Any]) -> Decision | None:
        return self.supported(facts) if self.supported is not None else None

    def decide(self, facts: Mapping[str, Any], ctx: ActionContext) -> Decision:
        return self.unsupported_here(facts) or self.precondition(facts, ctx)


@dataclass
class ActionRecord:
    """One step on one host: what was decided, what ran, how it ended (results.json `actions`)."""

    host: str
    stage: str
    id: str
    description: str
    status: str
    message: str
    command: str = ""
    rc: int | None = None
    duration: float = 0.0
    output_tail: str = ""
    reason: str = ""  # the precondition's answer before anything ran
    blocked_by: str = ""  # a skipped step: the step or check at the root of it (named once in the message)
    hint: str = ""
    level: str = "fail"  # how much a failure matters: as much as the verify checks the step serves

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ActionRecord:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def redact(text: str, secrets: tuple[str, ...]) -> str:
    for s in secrets:
        if s:
            text = text.replace(s, "***")
    return text


def is_root(facts: Mapping[str, Any]) -> bool:
    return str((facts.get("probe") or {}).get("euid", "")) == "0"


def blocker(action: Action, records: Mapping[str, ActionRecord]) -> ActionRecord | None:
    return next((records[r] for r in action.requires if r in records and records[r].status in BLOCKING), None)


def blocked_reason(action: Action, ctx: ActionContext) -> tuple[str, str] | None:
    """Why `action` cannot go on, naming the root cause once, and that root's id; None when nothing blocks it.

    A required step that failed or was refused is the root; one that was skipped passes on its own root (never
    "skipped: depends on A, which is skipped: skipped: depends on B ..."). A required check is asked through
    the
    verify gate, whose findings name their own root the same way."""
    step = blocker(action, ctx.records)
    if step is not None:
        if step.status == SKIPPED and step.blocked_by:
            return f"depends on {step.id}, which did not run because of {step.blocked_by}", step.blocked_by
        return f"depends on {step.id}, which {step.status}: {step.message}", step.id
    if action.requires_checks and ctx.check_gate is not None:
        finding = ctx.check_gate(action.requires_checks)
        if finding is not None:
            root = str(finding.details.get("blocked_by") or finding.check_id)
            if root != finding.check_id:
                return f"needs {finding.check_id}, which did not run because {root} did not pass", root
            return f"needs {finding.check_id}, which is {finding.verdict.value}: {finding.message}", root
    return None


def _record(action: Action, ctx: ActionContext, status: str, message: str, **kw: Any) -> ActionRecord:
    rec = ActionRecord(
        ctx.host,
        action.stage,
        action.id,
        action.description,
        status,
        redact(message, ctx.secrets),
        hint=action.hint if status in BLOCKING else "",
        **kw,
    )
    ctx.records[action.id] = rec
    return rec


def _final(action: Action, ctx: ActionContext, decision: Decision) -> ActionRecord | None:
    """The record of a decision that ends the step before any command (done, unsupported, skip), else None."""
    if decision.state == "done":
        return _record(action, ctx, SATISFIED, decision.reason, reason=decision.reason)
    if decision.state == "unsupported":
        return _record(action, ctx, FAILED, f"not possible: {decision.reason}", reason=decision.reason)
    if decision.state == "skip":
        return _record(action, ctx, SKIPPED, f"skipped: {decision.reason}", reason=decision.reason)
    return None


def plan_action(
    action: Action, facts: Mapping[str, Any], ctx: ActionContext
) -> tuple[ActionRecord | None, str, list[Command]]:
    """Decide without running anything: a final record (satisfied, refused, skipped, failed), or None, why
    and the commands."""
    gate = action.unsupported_here(facts)
    final = _final(action, ctx, gate) if gate is not None else None
    if final is not None:
        return final, final.reason, []
    blocked = blocked_reason(action, ctx)
    if blocked is not None:
        why, root = blocked
        return _record(action, ctx, SKIPPED, f"skipped: {why}", reason=why, blocked_by=root), why, []
    decision = action.decide(facts, ctx)
    final = _final(action, ctx, decision)
    if final is not None:
        return final, decision.reason, []
    commands = list(action.commands(facts, ctx))
    if action.needs_root and not is_root(facts) and not ctx.sudo:
        probe = facts.get("probe") or {}
        return (
            _record(
                action,
                ctx,
                REFUSED,
                f"refused: needs root, but commands run as {probe.get('user') or '?'} (uid "
                f"{probe.get('euid') or '?'}) "
                f"and --sudo was not given; nothing was changed. Rerun with --sudo (passwordless) or as root",
                command="\n".join(map(command_text, commands)),
                reason=decision.reason,
            ),
            decision.reason,
            commands,
        )
    return None, decision.reason, commands


def run_action(action: Action, facts: Mapping[str, Any], ctx: ActionContext) -> ActionRecord:
    """Decide, then (install mode) run the commands; never raises for a target's failure."""
    final, reason, commands = plan_action(action, facts, ctx)
    if final is not None:
        return final
    shown = "\n".join(map(command_text, commands))
    if not ctx.execute or (ctx.run is None and any(isinstance(c, str) for c in commands)):
        return _record(action, ctx, PLANNED, f"would run ({reason})", command=shown, reason=reason)
    started = time.perf_counter()
    ran: list[str] = []
    outputs: list[str] = []
    rc: int | None = 0
    failure = ""
    retried = False
    i = 0
    while i < len(commands):
        step = commands[i]
        cmd = command_text(step)
        try:
            res: StepResult
            if isinstance(step, str):
                if ctx.run is None:  # planned above unless a retry inserted a shell command among Calls
                    raise TypeError(f"no ctx.run to run a shell command: {cmd}")
                res = ctx.run(step, action.timeout)
            else:
                res = step(ctx)
        except Exception as exc:  # noqa: BLE001 - a lost target is a failed step, not a crash
            ran.append(cmd)
            rc, failure = None, f"{type(exc).__name__}: {exc}"
            break
        ran.append(cmd)
        text = (res.stdout + ("\n" if res.stdout and res.stderr else "") + res.stderr).strip()
        outputs.append(f"$ {cmd}\n{text}" if text else f"$ {cmd}")
        rc = res.rc
        if getattr(res, "timed_out", False):
            failure = f"timed out after {action.timeout:g}s: {cmd}"
            break
        if res.rc != 0:
            if (
                action.retry
                and not retried
                and action.retry.command not in ran
                and re.search(action.retry.pattern, text, re.M)
            ):
                retried = True
                commands = commands[:i] + [action.retry.command] + commands[i:]
                continue
            failure = failure_message(text, res.rc, cmd)
            break
        i += 1
    duration = round(time.perf_counter() - started, 3)
    tail = redact("\n".join(outputs), ctx.secrets)[-TAIL:]
    if failure:
        if action.explain_failure:
            failure += action.explain_failure(facts, failure)
        return _record(
            action,
            ctx,
            FAILED,
            failure,
            command="\n".join(ran),
            rc=rc,
            duration=duration,
            output_tail=tail,
            reason=reason,
        )
    note = f" (after {action.retry.why})" if retried and action.retry else ""
    return _record(
        action,
        ctx,
        DONE,
        f"done in {duration:.1f}s{note}: {reason}",
        command="\n".join(ran),
        rc=rc,
        duration=duration,
        output_tail=tail,
        reason=reason,
    )


ERROR_LINE = re.compile(
    r"^(E: |Error: |error: |Error |No match for argument|.*: not found$|.*: command not found$|"
    r"modprobe: |usermod: |virsh: |Failed |failed to )",
    re.M,
)


def failure_message(text: str, rc: int, cmd: str) -> str:
    """The tool's own words: its error lines (apt's `E:`, dnf's `Error:`, virsh's `error:`), else the
    output's tail."""
    lines = [ln.strip() for ln in text.splitlines() if ERROR_LINE.match(ln.strip())]
    if not lines:
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()][-3:]
    first = cmd.splitlines()[0][:120]
    return f"rc {rc} from `{first}`: " + (" / ".join(dict.fromkeys(lines)) or "no output")


def verify_after(
    action: Action, record: ActionRecord, facts: Mapping[str, Any], ctx: ActionContext
) -> ActionRecord:
    """After a DONE step and fresh facts: the precondition must now hold, else the step failed."""
    if record.status != DONE:
        return record
    decision = action.decide(facts, ctx)
    if decision.state == "done":
        record.message += f"; verified: {decision.reason}"
        return record
    record.status = FAILED
    record.hint = action.hint
    record.message = (
        f"the commands succeeded but the step does not hold on fresh facts: {decision.reason}"
        f" (before: {record.reason})"
    )
    return record
