"""The run's state: one `KvmqaRun` per pytest process, kept in `config.stash[RUN_KEY]`."""

from __future__ import annotations

from typing import Any

import pytest

from kvmqa.config.options import RunOptions
from kvmqa.core.stage import Registry
from kvmqa.report.results import RunResults
from kvmqa.session.cluster import ClusterSession
from kvmqa.session.host import HostSession
from kvmqa.stages.first_vm.progress import terminal_writer
from kvmqa.transport.target import Target

RUN_KEY = pytest.StashKey["KvmqaRun"]()
FINDING_PROP = "kvmqa_finding"
HOST_PROP = "kvmqa_host_summary"


class KvmqaRun:
    """Per pytest process: options, profile, the stages, targets and their sessions; on the controller, the
    results."""

    def __init__(
        self,
        config: pytest.Config,
        options: RunOptions,
        targets: list[Target],
        profile: Any,
        engine: dict[str, Any],
        suite_run: bool,
        registry: Registry,
    ) -> None:
        self.config = config
        self.options = options
        self.targets = targets
        self.profile = profile
        self.engine = engine
        self.suite_run = suite_run
        self.registry = registry
        self.sessions: dict[str, HostSession] = {}
        self.results = RunResults(columns=tuple(registry.columns()))
        self._cluster: ClusterSession | None = None

    def cluster(self) -> ClusterSession:
        """The run's hosts together, for run-scoped stages (their sessions are this process's host
        sessions)."""
        if self._cluster is None:
            self._cluster = ClusterSession(
                self.session, [t.name for t in self.targets], self.profile, self.options, self.registry
            )
        return self._cluster

    @property
    def peers(self) -> dict[str, HostSession]:
        """Sessions for every target, created on demand (a peer's facts are probed only when asked for)."""
        return _LazySessions(self)

    def session(self, name: str) -> HostSession:
        if name not in self.sessions:
            target = next(t for t in self.targets if t.name == name)
            hook = self.config.hook
            self.sessions[name] = HostSession(
                target,
                self.profile,
                self.options,
                self.registry,
                all_targets=self.targets,
                peers=self.peers,
                before_stage=lambda s, stage: hook.pytest_kvmqa_before_stage(session=s, stage=stage),
                progress=terminal_writer(self.config),
            )
        return self.sessions[name]


class _LazySessions(dict):  # type: ignore[type-arg]
    def __init__(self, run: KvmqaRun) -> None:
        super().__init__()
        self._run = run

    def __contains__(self, name: object) -> bool:
        return any(t.name == name for t in self._run.targets)

    def __getitem__(self, name: str) -> HostSession:
        return self._run.session(name)
