"""What a stage's gatherer may use of the host it gathers from: the host session, seen from below.

The session itself (kvmqa.session.host.HostSession) lives above the stages; gatherers, install-fact readers
and
actions are written against this protocol so that nothing below the session imports it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from kvmqa.config.options import RunOptions
from kvmqa.config.profile import Profile
from kvmqa.core.facts import HostFacts
from kvmqa.transport.target import Target


class HostContext(Protocol):
    """One host during one run, as gatherers see it."""

    target: Target
    profile: Profile
    options: RunOptions
    all_targets: list[Target]
    progress: Callable[[str], None] | None

    @property
    def name(self) -> str: ...

    @property
    def host_dir(self) -> Path: ...

    @property
    def facts(self) -> HostFacts: ...

    def libvirt(self) -> Any: ...

    def close_libvirt(self) -> None: ...


class ClusterContext(Protocol):
    """The run's hosts together (kvmqa.session.cluster.ClusterSession), as a run-scoped stage's gatherer
    sees them."""

    profile: Profile
    options: RunOptions

    @property
    def name(self) -> str: ...

    def member_names(self) -> list[str]: ...

    def member(self, name: str) -> HostContext: ...

    def member_facts(self) -> tuple[dict[str, HostFacts], dict[str, str]]: ...
