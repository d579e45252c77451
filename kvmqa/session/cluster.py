"""ClusterSession: the run's hosts together, for the stages scoped to the whole run (`Stage(scope="run")`).

Its findings have the pseudo-host `cluster` (a row of the stage matrix), so checks, the gate, waivers and
every
report treat them like a host's. It is built from the run's host sessions: their facts (one probe each) and
their libvirt connections are the ones the host stages used; a run-scoped stage's `requires` are looked up on
each host, and a host where one does not hold is named as not judged (`member_facts`), never dropped.

    cluster = ClusterSession(run.session, [t.name for t in run.targets], profile, options, registry)
    cluster.evaluate(stage, stage.checks.get("cluster.reach"))
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kvmqa.config.options import RunOptions
from kvmqa.config.profile import Profile
from kvmqa.core.checks import Check
from kvmqa.core.facts import HostFacts
from kvmqa.core.gate import dependency_reason, first_blocker, skipped_by
from kvmqa.core.model import Finding, StageCheck
from kvmqa.core.stage import GatherError, Registry, Stage
from kvmqa.session.host import HostSession
from kvmqa.transport.target import TargetError

CLUSTER_HOST = "cluster"  # the pseudo-host of run-scoped findings


def not_a_cluster(names: list[str], boot_ids: dict[str, str]) -> str | None:
    """Why the hosts are no cluster to judge (None: they are): fewer than two, or all of them one machine
    reached under several names (one running kernel: the same boot id; a host without one counts alone)."""
    if len(names) < 2:
        return f"one host in this run ({', '.join(names) or 'none'}): a cluster needs two or more"
    machines = {boot_ids.get(n) or f"unknown:{n}" for n in names}
    if len(machines) < 2:
        return f"{', '.join(names)} are one machine (one boot id): a cluster needs two or more"
    return None


@dataclass
class ClusterSession:
    session_of: Callable[[str], HostSession]  # the run's host session of a target (KvmqaRun.session)
    names: list[str]  # the run's targets, in inventory order
    profile: Profile
    options: RunOptions
    registry: Registry
    findings: dict[str, Finding] = field(default_factory=dict)
    _facts: dict[str, HostFacts] = field(default_factory=dict)  # stage -> the facts its gatherers made
    _errors: dict[str, str | None] = field(default_factory=dict)  # stage -> gather error or None
    _requires: tuple[str, ...] = ()  # the stage being gathered: what each member must hold

    @property
    def name(self) -> str:
        return CLUSTER_HOST

    @property
    def host_dir(self) -> Path:
        d = self.options.reports_dir / CLUSTER_HOST
        d.mkdir(parents=True, exist_ok=True)
        return d

    def member_names(self) -> list[str]:
        return list(self.names)

    def member(self, name: str) -> HostSession:
        return self.session_of(name)

    def not_applicable(self) -> str | None:
        """Why the run's hosts are not a cluster to judge (None: they are): fewer than two, or all of them one
        machine reached under several names (one running kernel: the same boot id)."""
        boot_ids = {n: self.member(n).facts.get("hostname", {}).get("boot_id", "") for n in self.names}
        return not_a_cluster(self.names, boot_ids)

    def member_facts(self) -> tuple[dict[str, HostFacts], dict[str, str]]:
        """Each host's facts where the stage's requires hold on it; else why it is not judged."""
        facts: dict[str, HostFacts] = {}
        missing: dict[str, str] = {}
        for name in self.names:
            host = self.member(name)
            blocker = host.blocker(self._requires)
            if blocker is not None:
                missing[name] = dependency_reason(blocker, name)
            else:
                facts[name] = host.facts
        return facts, missing

    def round_trips(self) -> dict[str, dict[str, Any]]:
        """What checking the hosts cost, per host (the cluster's own script is one of each host's
        commands)."""
        out = {}
        for name in self.names:
            host = self.member(name)
            before = host.round_trips_before  # counted by the xdist worker that owns the host
            out[name] = {
                "ssh_commands": host.target.round_trips + before.get("ssh_commands", 0),
                "libvirt_connections": host.libvirt_connects + before.get("libvirt_connections", 0),
            }
        return out

    def facts(self, stage: Stage) -> HostFacts:
        return self._facts.get(stage.name, HostFacts())

    def prepare_stage(self, stage: Stage) -> Finding | None:
        """Run a run-scoped stage's gatherers once; a Finding means 'stop here' (they failed)."""
        if stage.name not in self._errors:
            facts, error = HostFacts(), None
            self._requires = stage.requires
            for section in stage.gatherers:
                try:
                    facts[section] = stage.gatherer(section)(self)
                except (GatherError, TargetError) as exc:
                    error = f"{stage.name}: gathering {section} failed: {exc}"
                    break
            self._facts[stage.name], self._errors[stage.name] = facts, error
            HostFacts({k: v for f in self._facts.values() for k, v in f.items()}).save(
                self.host_dir / "facts.json"
            )  # every run-scoped stage's sections in one file (cluster, migration)
        error = self._errors[stage.name]
        return None if error is None else Finding.error(CLUSTER_HOST, StageCheck(stage.name), error)

    def evaluate(self, stage: Stage, check: Check) -> Finding:
        started = time.perf_counter()
        stop = self.prepare_stage(stage)
        if stop is not None:
            finding = Finding.error(CLUSTER_HOST, check, stop.message)
        else:
            blocked = first_blocker(check.requires, self.findings.get)
            facts = self.facts(stage)
            finding = (
                skipped_by(check, CLUSTER_HOST, blocked)
                if blocked is not None
                else check.evaluate(CLUSTER_HOST, facts, self.profile)  # read as facts.view(...)
            )
        finding.duration = round(time.perf_counter() - started, 6)
        self.findings[check.id] = finding
        return finding

    def summary(self) -> dict[str, Any]:
        """The pseudo-host's row of results.json's hosts: its members and what they cost."""
        return {
            "url": "",
            "roles": ["cluster"],
            "members": list(self.names),
            "round_trips": {},
            "member_round_trips": self.round_trips(),
            "facts": str(self.host_dir / "facts.json"),
        }
