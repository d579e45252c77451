"""HostSession: everything kvmqa knows and has concluded about one host during one pytest process."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kvmqa.checks.base import OK_VERDICTS, Check, StageChecks
from kvmqa.facts import HostFacts
from kvmqa.model import Finding, Level, Verdict
from kvmqa.options import RunOptions
from kvmqa.profile import Profile
from kvmqa.targets import Target, TargetError

log = logging.getLogger("kvmqa")

Gatherer = Callable[["HostSession"], dict[str, Any]]


class GatherError(Exception):
    """A gatherer could not collect its facts; the stage gets one ERROR finding with this message."""


@dataclass
class StageDef:
    checks: StageChecks
    requires: tuple[str, ...] = ()
    gatherers: dict[str, Gatherer] = field(default_factory=dict)
    roles: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.checks.stage


@dataclass
class HostSession:
    target: Target
    profile: Profile
    options: RunOptions
    all_targets: list[Target] = field(default_factory=list)
    findings: dict[str, Finding] = field(default_factory=dict)
    _facts: HostFacts | None = None
    _conn: Any = None
    _gathered: dict[str, str | None] = field(default_factory=dict)  # stage -> error or None
    stage_hooks: list[Callable[[HostSession, StageDef], None]] = field(default_factory=list)
    libvirt_connects: int = 0
    peers: dict[str, HostSession] = field(default_factory=dict, repr=False)  # the run's other hosts

    def facts_of(self, name: str) -> HostFacts | None:
        """Another host's facts (probing it if this process has not yet), e.g. the engine stage reading hosts' CPUs."""
        if name == self.name:
            return self.facts
        if name in self.peers:
            return self.peers[name].facts
        path = self.options.reports_dir / safe_name(name) / "facts.json"
        return HostFacts.load(path) if path.exists() else None

    @property
    def name(self) -> str:
        return self.target.name

    @property
    def host_dir(self) -> Path:
        d = self.options.reports_dir / safe_name(self.name)
        d.mkdir(parents=True, exist_ok=True)
        return d

    # -- gather ------------------------------------------------------------------------------
    @property
    def facts(self) -> HostFacts:
        if self._facts is None:
            self._facts = self.probe()
        return self._facts

    def probe(self) -> HostFacts:
        """Run the probe (one round trip). An unreachable host becomes facts with a 'reach' error."""
        from kvmqa.probe import run_probe

        try:
            facts, raw = run_probe(self.target)
            (self.host_dir / "probe.txt").write_text(raw)
        except TargetError as exc:
            reach = {"error": str(exc)}
            if exc.stderr:
                reach["stderr"] = exc.stderr[-4000:]  # the transport's whole output, for the details
            facts = HostFacts(reach=reach, probe={"target": self.target.url})
        facts["target"] = {"name": self.name, "url": self.target.url, "roles": list(self.target.roles), "sudo": self.target.sudo}
        self._facts = facts
        self.save_facts()
        return facts

    def refresh_facts(self) -> HostFacts:
        """Probe again (install mode, after actions), keeping gathered non-probe sections out: they are re-gathered."""
        self.close_libvirt()
        self._gathered.clear()
        return self.probe()

    def save_facts(self) -> None:
        if self._facts is not None:
            self._facts["round_trips"] = {"ssh_commands": self.target.round_trips, "libvirt_connections": self.libvirt_connects}
            self._facts.save(self.host_dir / "facts.json")

    def libvirt(self) -> Any:
        """A cached libvirt connection to the target (qemu:///system, or qemu+ext over ssh)."""
        if self._conn is None:
            import libvirt

            uri = self.target.libvirt_uri(self.host_dir / ".ssh")
            self.libvirt_connects += 1
            libvirt.registerErrorHandler(lambda *_: None, None)
            self._conn = libvirt.openAuth(uri, [[libvirt.VIR_CRED_AUTHNAME, libvirt.VIR_CRED_PASSPHRASE], _no_prompt, None], 0)
        return self._conn

    def close_libvirt(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # noqa: BLE001 - closing a dead connection
                pass
            self._conn = None

    def gather(self, name: str, fn: Gatherer) -> dict[str, Any]:
        if name not in self.facts:
            self.facts[name] = fn(self)
            self.save_facts()
        return self.facts[name]

    # -- evaluate ----------------------------------------------------------------------------
    def blocker(self, check_ids: tuple[str, ...]) -> Finding | None:
        """The first required check that did not hold (evaluating pure ones that were not run yet)."""
        for cid in check_ids:
            finding = self.findings.get(cid)
            if finding is None:
                finding = self._evaluate_silently(cid)
            if finding is not None and finding.verdict not in OK_VERDICTS:
                return finding
        return None

    def _evaluate_silently(self, check_id: str) -> Finding | None:
        """A required check from a stage that was not selected in this run: gate and gather its stage, evaluate it."""
        from kvmqa.stages import stage_of_check

        stage = stage_of_check(check_id)
        if stage is None or check_id not in stage.checks.ids():
            return None
        check = stage.checks.get(check_id)
        stop = self.prepare_stage(stage)
        if stop is not None:
            return Finding(self.name, stage.name, check.id, check.title, check.level, stop.verdict, stop.message,
                           details=stop.details)
        blocked = self.blocker(check.requires)
        if blocked is not None:
            return skipped_by(check, self.name, blocked)
        finding = check.evaluate(self.name, self.facts, self.profile)
        self.findings[check_id] = finding
        return finding

    def stage_error(self, stage: str) -> str | None:
        return self._gathered.get(stage)

    def prepare_stage(self, stage: StageDef) -> Finding | None:
        """Gate a stage (roles, requires), run hooks (install mode) and gatherers once; a Finding means 'stop here'."""
        if stage.name in self._gathered:
            err = self._gathered[stage.name]
            return None if err is None else self._stage_finding(stage, Verdict.ERROR, err)
        if stage.name != "reach":
            reach = self.blocker(("reach.probe",))
            if reach is not None:
                return self._stage_finding(stage, Verdict.SKIP, f"host {self.name} unreachable: {reach.message}",
                                           blocked_by="reach.probe")
        if stage.roles and not set(stage.roles) & set(self.target.roles):
            return self._stage_finding(stage, Verdict.SKIP, f"host {self.name} has no role {' or '.join(stage.roles)} "
                                       f"(roles: {', '.join(self.target.roles)})")
        for hook in self.stage_hooks:
            hook(self, stage)
        blocked = self.blocker(stage.requires)
        if blocked is not None:
            return self._stage_finding(stage, Verdict.SKIP, dependency_reason(blocked, self.name), blocked_by=root_cause(blocked))
        error = None
        for name, fn in stage.gatherers.items():
            try:
                self.gather(name, fn)
            except GatherError as exc:
                error = f"{stage.name}: gathering {name} failed: {exc}"
                break
            except TargetError as exc:
                error = f"{stage.name}: {exc}"
                break
        self._gathered[stage.name] = error
        return None if error is None else self._stage_finding(stage, Verdict.ERROR, error)

    def _stage_finding(self, stage: StageDef, verdict: Verdict, message: str, blocked_by: str | None = None) -> Finding:
        details = {"blocked_by": blocked_by} if blocked_by else {}
        return Finding(self.name, stage.name, f"{stage.name}.*", stage.name, Level.FAIL, verdict, message, details=details)

    def evaluate(self, stage: StageDef, check: Check) -> Finding:
        started = time.perf_counter()
        stop = self.prepare_stage(stage)
        if stop is not None:
            if stop.verdict == Verdict.ERROR and not any(f.stage == stage.name and f.verdict == Verdict.ERROR
                                                         for f in self.findings.values()):
                finding = Finding(self.name, stage.name, check.id, check.title, check.level, Verdict.ERROR, stop.message)
            elif stop.verdict == Verdict.ERROR:
                first = next(f for f in self.findings.values() if f.stage == stage.name and f.verdict == Verdict.ERROR)
                finding = Finding(self.name, stage.name, check.id, check.title, check.level, Verdict.SKIP,
                                  f"skipped: {first.check_id} could not run on {self.name}: {stop.message}",
                                  details={"blocked_by": first.check_id})
            else:
                finding = Finding(self.name, stage.name, check.id, check.title, check.level, Verdict.SKIP,
                                  "skipped: " + stop.message, details=stop.details)
        else:
            blocked = self.blocker(check.requires)
            if blocked is not None:
                finding = skipped_by(check, self.name, blocked)
            else:
                finding = check.evaluate(self.name, self.facts, self.profile)
        finding.duration = round(time.perf_counter() - started, 6)
        self.findings[check.id] = finding
        return finding


def _no_prompt(credentials: list[Any], _data: Any) -> int:
    return -1  # never prompt: kvmqa runs unattended


def safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)


def root_cause(finding: Finding) -> str:
    return str(finding.details.get("blocked_by") or finding.check_id) if finding.verdict == Verdict.SKIP else finding.check_id


def dependency_reason(blocker: Finding, host: str) -> str:
    if blocker.verdict == Verdict.SKIP and blocker.details.get("blocked_by"):
        return f"depends on {blocker.check_id}, skipped on {host} because {blocker.details['blocked_by']} did not pass"
    return f"depends on {blocker.check_id}, which is {blocker.verdict.value} on {host}: {blocker.message}"


def skipped_by(check: Check, host: str, blocker: Finding) -> Finding:
    return Finding(host, check.stage, check.id, check.title, check.level, Verdict.SKIP,
                   "skipped: " + dependency_reason(blocker, host), details={"blocked_by": root_cause(blocker)})
