"""A stage, declared once in its own folder (`kvmqa/stages/<name>/__init__.py`), and the registry of stages.

    STAGE = Stage(
        name="libvirt", order=30, title="libvirt daemon, capabilities, network and pool",
        checks=CHECKS,                                          # kvmqa.core.checks.StageChecks("libvirt")
        requires=("reach.probe", "packages.libvirt-daemon"),    # checks of earlier stages that must hold
        gatherers={"libvirt": "kvmqa.stages.libvirt.gather:gather_libvirt_for"},   # fact section -> function
        actions=("kvmqa.stages.libvirt.daemons:DAEMONS", ...),  # install mode's steps, in order
        probe=probe_snippet(__name__),                          # the folder's probe.sh: its sections
        parser="kvmqa.stages.libvirt.facts:parse",              # those sections -> its fact sections
    )

Everything that needs the list of stages reads a `Registry`: the suite order, the pytest plugin, reports
(the matrix's columns), profiles (a stage's own settings), `python -m kvmqa checks`, install mode and
`python -m kvmqa evaluate`. Gatherers, actions and parsers are named as "module:attribute" and resolved when
first
used, so listing the checks never imports libvirt or ovirtsdk4. The probe runner (kvmqa.gather) is handed the
stages' snippets and parsers (`Registry.probe_snippets`, `Registry.probe_parsers`): a fact lives with its
stage.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from typing import Any

from kvmqa.core.action import Action
from kvmqa.core.checks import Check, StageChecks

Gatherer = Callable[[Any], dict[str, Any]]  # (HostSession) -> a fact section
Sections = Mapping[str, tuple[int, str]]  # a probe output's sections: name -> (rc, text)
ProbeParser = Callable[[Sections], dict[str, Any]]  # a stage's sections -> its fact sections
SCOPES = ("host", "run")
INSTALL_COLUMN = "install"  # install mode's steps are findings of this pseudo-stage (a matrix column)


class GatherError(Exception):
    """A gatherer could not collect its facts; the stage gets one ERROR finding with this message."""


class StageInterrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) while a stage gathered on a host. Still a KeyboardInterrupt (pytest stops the run),
    carrying plain data for the report: the host, the stage and what the gatherer did before it let go
    (`evidence`; for first_vm the interrupted boot and the kvmqa- objects it removed)."""

    def __init__(self, evidence: dict[str, Any] | None = None, host: str = "", stage: str = "") -> None:
        super().__init__(f"interrupted while gathering stage {stage or '?'} on {host or '?'}")
        self.evidence = dict(evidence or {})
        self.host, self.stage = host, stage

    @classmethod
    def during(cls, exc: KeyboardInterrupt, host: str, stage: str) -> StageInterrupted:
        """`exc` (a gatherer's own StageInterrupted keeps its evidence), placed on `host` and `stage`."""
        return cls(exc.evidence if isinstance(exc, StageInterrupted) else None, host, stage)


class UnknownStage(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


class StageError(Exception):
    """A stage declaration is wrong (a site stage's folder): the message names the folder and what is
    wrong."""


def resolve(ref: str) -> Any:
    """ "package.module:attribute" -> the attribute."""
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


def probe_snippet(package: str) -> str:
    """The `probe.sh` in a stage's folder (`probe_snippet(__name__)` in its __init__.py): the sections it
    owns."""
    return resources.files(package).joinpath("probe.sh").read_text()


@dataclass(frozen=True)
class Stage:
    name: str
    order: int  # the suite's file number: suites/test_NN_<name>.py; site stages: 70 and up
    title: str
    checks: StageChecks
    requires: tuple[str, ...] = ()
    gatherers: Mapping[str, str | Gatherer] = field(default_factory=dict)
    actions: tuple[str, ...] = ()  # "module:ATTR" of an Action or a sequence of Actions
    roles: tuple[str, ...] = ()  # the inventory roles it applies to; () = every host
    offline: bool = True  # decidable from the probe's output alone (`python -m kvmqa evaluate`, Ansible runs)
    probe: str = (
        ""  # a probe snippet (POSIX sh, `_kq_sec NAME CMD...` sections) added to the host's one probe
    )
    parser: str = ""  # "module:function" (Sections) -> the fact sections this stage's snippet feeds
    site: bool = False  # from a site-checks folder (--site-checks), not built in
    install_context: str = (
        ""  # "module:function" (HostSession) -> what this stage's steps read as ctx.stage_context
    )
    # "host": checked on each host; "run": once for the whole run (its findings' host is a pseudo-host such as
    # `cluster`; its gatherers get the run's hosts together, its `requires` are looked up on each of them)
    scope: str = "host"

    def __post_init__(self) -> None:
        if self.checks.stage != self.name:
            raise StageError(f"stage {self.name!r} declares the checks of {self.checks.stage!r}")
        if self.scope not in SCOPES:
            raise StageError(f"stage {self.name!r}: scope {self.scope!r} is not one of {', '.join(SCOPES)}")

    def gatherer(self, name: str) -> Gatherer:
        fn = self.gatherers[name]
        return resolve(fn) if isinstance(fn, str) else fn  # type: ignore[no-any-return]

    def applies_to(self, roles: Sequence[str]) -> bool:
        """Whether this stage runs on a host with these inventory roles."""
        return not self.roles or bool(set(self.roles) & set(roles))

    def stage_context(self, session: Any) -> Any:
        """What this stage's install steps need besides facts (ActionContext.stage_context), or None."""
        return resolve(self.install_context)(session) if self.install_context else None

    def install_actions(self) -> list[Action]:
        out: list[Action] = []
        for ref in self.actions:
            value = resolve(ref)
            out.extend(value if isinstance(value, Sequence) else [value])
        return out

    def __iter__(self) -> Iterator[Check]:
        return iter(self.checks)


@dataclass(frozen=True)
class Registry:
    """The run's stages in run order (built-in ones, then site stages)."""

    stages: tuple[Stage, ...]

    def __post_init__(self) -> None:
        names = [s.name for s in self.stages]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise StageError(f"stage {sorted(dup)[0]!r} is declared twice")

    @cached_property
    def _by_name(self) -> dict[str, Stage]:
        return {s.name: s for s in self.stages}

    def __iter__(self) -> Iterator[Stage]:
        return iter(self.stages)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def names(self) -> list[str]:
        return [s.name for s in self.stages]

    def get(self, name: str) -> Stage:
        try:
            return self._by_name[name]
        except KeyError:
            raise UnknownStage(f"unknown stage {name!r} (stages: {', '.join(self.names())})") from None

    def stage_of_check(self, check_id: str) -> Stage | None:
        stage = self._by_name.get(check_id.split(".", 1)[0])
        return stage if stage is not None and check_id in stage.checks.ids() else None

    def find_check(self, check_id: str) -> Check:
        stage = self.stage_of_check(check_id)
        if stage is None:
            raise KeyError(check_id)
        return stage.checks.get(check_id)

    def columns(self) -> list[str]:
        """The matrix's columns: the stages, with install mode's column after the last host stage that
        installs."""
        names = self.names()
        host_installers = [i for i, s in enumerate(self.stages) if s.actions and not s.roles and not s.site]
        at = host_installers[-1] + 1 if host_installers else len(names)
        return [*names[:at], INSTALL_COLUMN, *names[at:]]

    def probe_snippets(self, roles: Sequence[str]) -> list[str]:
        """The probe snippets of the stages that apply to a host with these roles, in run order."""
        return [s.probe for s in self.stages if s.probe and s.applies_to(roles)]

    def probe_parsers(self) -> list[ProbeParser]:
        """Every stage's parser of its probe sections (a parser of sections a host lacks adds nothing)."""
        return [resolve(s.parser) for s in self.stages if s.parser]

    def with_stages(self, extra: Sequence[Stage]) -> Registry:
        return Registry(tuple(sorted((*self.stages, *extra), key=lambda s: s.order)))
