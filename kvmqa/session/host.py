"""HostSession: everything kvmqa knows and has concluded about one host during one pytest process."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kvmqa.config.options import RunOptions
from kvmqa.config.profile import Profile
from kvmqa.core.checks import Check
from kvmqa.core.facts import HostFacts
from kvmqa.core.gate import dependency_reason, first_blocker, root_cause, skipped_by
from kvmqa.core.model import Finding, StageCheck, Verdict
from kvmqa.core.paths import safe_name
from kvmqa.core.stage import Gatherer, GatherError, Registry, Stage, StageInterrupted
from kvmqa.transport.target import Target, TargetError, TargetUnusable

log = logging.getLogger("kvmqa")


@dataclass
class HostSession:
    target: Target
    profile: Profile
    options: RunOptions
    registry: Registry  # the run's stages (built-in and site ones)
    all_targets: list[Target] = field(default_factory=list)
    findings: dict[str, Finding] = field(default_factory=dict)
    _facts: HostFacts | None = None
    _conn: Any = None
    _gathered: dict[str, str | None] = field(default_factory=dict)  # stage -> error or None
    before_stage: Callable[[HostSession, Stage], None] | None = (
        None  # the plugin's pytest_kvmqa_before_stage hook
    )
    progress: Callable[[str], None] | None = None  # where long gatherers' progress lines go (None: stderr)
    libvirt_connects: int = 0
    _adopted: bool = False  # facts taken from another process (adopt): it writes facts.json, not this one
    round_trips_before: dict[str, int] = field(
        default_factory=dict
    )  # counted by the process it was adopted from
    peers: dict[str, HostSession] = field(default_factory=dict, repr=False)  # the run's other hosts

    def facts_of(self, name: str) -> HostFacts | None:
        """Another host's facts (probing it if this process has not yet), e.g. the engine stage reading
        hosts' CPUs."""
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
        from kvmqa.gather.probe import run_probe

        try:
            snippets = self.stages.probe_snippets(self.target.roles)  # only where the stage applies
            facts, raw = run_probe(self.target, snippets, self.stages.probe_parsers())
            (self.host_dir / "probe.txt").write_text(raw)
        except TargetError as exc:
            reach: dict[str, Any] = {"error": str(exc)}
            if isinstance(exc, TargetUnusable):
                reach["unusable"] = True  # nothing was tried: the inventory's entry itself is the problem
            if exc.stderr:
                reach["stderr"] = exc.stderr[-4000:]  # the transport's whole output, for the details
            facts = HostFacts(reach=reach, probe={"target": self.target.url})
        facts["target"] = {
            "name": self.name,
            "url": self.target.url,
            "roles": list(self.target.roles),
            "sudo": self.target.sudo,
        }
        self._facts = facts
        self.save_facts()
        return facts

    @property
    def gathered_facts(self) -> HostFacts | None:
        """The facts when this session has them already (probed or given), without probing."""
        return self._facts

    def use_facts(self, facts: HostFacts) -> None:
        """Facts gathered elsewhere (the probe's output through Ansible): this session evaluates them, never
        probes."""
        self._facts = facts

    def adopt(self, facts: HostFacts, gathered: list[str]) -> None:
        """Facts another process of this run gathered (an xdist worker that owns the host): this session
        evaluates them instead of probing again; `gathered`: the stages whose gatherers ran there. The round
        trips they cost stay counted (`round_trips_before`)."""
        self._facts = facts
        self._adopted = True  # facts.json is its owner's to write
        self.round_trips_before = dict(facts.get("round_trips", {}))
        for stage in gathered:
            self._gathered[stage] = None

    def refresh_facts(self) -> HostFacts:
        """Probe again (install mode, after actions), keeping gathered non-probe sections out: they are
        re-gathered."""
        self.close_libvirt()
        self._gathered.clear()
        return self.probe()

    def save_facts(self) -> None:
        if self._facts is not None:
            before = self.round_trips_before
            self._facts["round_trips"] = {
                "ssh_commands": self.target.round_trips + before.get("ssh_commands", 0),
                "libvirt_connections": self.libvirt_connects + before.get("libvirt_connections", 0),
            }
            if not self._adopted:
                self._facts.save(self.host_dir / "facts.json")

    def libvirt(self) -> Any:
        """A cached libvirt connection to the target (qemu:///system, or qemu+ext over ssh)."""
        if self._conn is None:
            import libvirt

            uri = self.target.libvirt_uri(self.host_dir / ".ssh")
            self.libvirt_connects += 1
            libvirt.registerErrorHandler(lambda *_: None, None)
            self._conn = libvirt.openAuth(
                uri, [[libvirt.VIR_CRED_AUTHNAME, libvirt.VIR_CRED_PASSPHRASE], _no_prompt, None], 0
            )
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

    def summary(self) -> dict[str, Any]:
        """A digest of the host's facts for the environment table and results.json."""
        f: dict[str, Any] = self._facts or {}
        self.save_facts()
        lv = f.get("libvirt", {})
        summary = {
            "host": self.name,
            "url": self.target.url,
            "roles": list(self.target.roles),
            "os": f.get("os", {}).get("pretty_name", ""),
            "kernel": f.get("kernel", {}).get("release", ""),
            "cpu": f.get("cpu", {}).get("model_name", ""),
            "cpus": f.get("cpu", {}).get("count", 0),
            "memory_gib": round(f.get("memory", {}).get("total_kib", 0) / 1024 / 1024, 1),
            "libvirt": lv.get("lib_version", ""),
            "qemu": lv.get("hypervisor_version", ""),
            "round_trips": f.get("round_trips", {}),
            "facts": str(self.host_dir / "facts.json"),
        }
        if f.get("reach", {}).get("error"):
            summary["error"] = f["reach"]["error"]
        return summary

    # -- evaluate ----------------------------------------------------------------------------
    def blocker(self, check_ids: tuple[str, ...]) -> Finding | None:
        """The first required check that did not hold (evaluating pure ones that were not run yet)."""
        return first_blocker(check_ids, lambda cid: self.findings.get(cid) or self._evaluate_silently(cid))

    @property
    def stages(self) -> Registry:
        return self.registry

    def _evaluate_silently(self, check_id: str) -> Finding | None:
        """A required check from a stage that was not selected in this run: gate and gather its stage,
        evaluate it."""
        stage = self.stages.stage_of_check(check_id)
        if stage is None:
            return None
        check = stage.checks.get(check_id)
        stop = self.prepare_stage(stage)
        if stop is not None:
            if stop.verdict == Verdict.SKIP:
                return Finding.skipped(self.name, check, stop.message, details=stop.details)
            return Finding.error(self.name, check, stop.message, **stop.details)
        blocked = self.blocker(check.requires)
        if blocked is not None:
            return skipped_by(check, self.name, blocked)
        finding = check.evaluate(self.name, self.facts, self.profile)
        self.findings[check_id] = finding
        return finding

    def stage_error(self, stage: str) -> str | None:
        return self._gathered.get(stage)

    def prepare_stage(self, stage: Stage) -> Finding | None:
        """Gate a stage (roles, requires), run hooks (install mode) and gatherers once; a Finding means 'stop
        here'."""
        if stage.scope != "host":  # the run's hosts together: kvmqa.session.cluster, never one host's
            return self._stage_finding(stage, Verdict.SKIP, f"{stage.name} is checked once for the whole run")
        if stage.name in self._gathered:
            err = self._gathered[stage.name]
            return None if err is None else self._stage_finding(stage, Verdict.ERROR, err)
        if stage.name != "reach":
            reach = self.blocker(("reach.probe",))
            if reach is not None:
                why = "not checked" if self.facts.get("reach", {}).get("unusable") else "unreachable"
                return self._stage_finding(
                    stage, Verdict.SKIP, f"host {self.name} {why}: {reach.message}", blocked_by="reach.probe"
                )
        if stage.roles and not set(stage.roles) & set(self.target.roles):
            return self._stage_finding(
                stage,
                Verdict.SKIP,
                f"host {self.name} has no role {' or '.join(stage.roles)} "
                f"(roles: {', '.join(self.target.roles)})",
            )
        if self.before_stage is not None:
            self.before_stage(self, stage)
        blocked = self.blocker(stage.requires)
        if blocked is not None:
            return self._stage_finding(
                stage, Verdict.SKIP, dependency_reason(blocked, self.name), blocked_by=root_cause(blocked)
            )
        error = None
        for name in stage.gatherers:
            try:
                self.gather(name, stage.gatherer(name))
            except GatherError as exc:
                error = f"{stage.name}: gathering {name} failed: {exc}"
                break
            except TargetError as exc:
                error = f"{stage.name}: {exc}"
                break
            except KeyboardInterrupt as exc:  # the run stops here; the report names this host and stage
                raise StageInterrupted.during(exc, self.name, stage.name) from exc
        self._gathered[stage.name] = error
        return None if error is None else self._stage_finding(stage, Verdict.ERROR, error)

    def _stage_finding(
        self, stage: Stage, verdict: Verdict, message: str, blocked_by: str | None = None
    ) -> Finding:
        whole = StageCheck(stage.name)
        if verdict == Verdict.SKIP:
            return Finding.skipped(self.name, whole, message, blocked_by=blocked_by)
        return Finding.error(self.name, whole, message)

    def evaluate(self, stage: Stage, check: Check) -> Finding:
        started = time.perf_counter()
        stop = self.prepare_stage(stage)
        if stop is None:
            blocked = self.blocker(check.requires)
            finding = (
                skipped_by(check, self.name, blocked)
                if blocked is not None
                else check.evaluate(self.name, self.facts, self.profile)
            )
        elif stop.verdict != Verdict.ERROR:
            finding = Finding.skipped(self.name, check, "skipped: " + stop.message, details=stop.details)
        else:  # the stage's facts could not be gathered: its first check says why, the others name that one
            first = next(
                (f for f in self.findings.values() if f.stage == stage.name and f.verdict == Verdict.ERROR),
                None,
            )
            if first is None:
                finding = Finding.error(self.name, check, stop.message)
            else:
                finding = Finding.skipped(
                    self.name,
                    check,
                    f"skipped: {first.check_id} could not run on {self.name}: {stop.message}",
                    blocked_by=first.check_id,
                )
        finding.duration = round(time.perf_counter() - started, 6)
        self.findings[check.id] = finding
        return finding


def _no_prompt(credentials: list[Any], _data: Any) -> int:
    return -1  # never prompt: kvmqa runs unattended
