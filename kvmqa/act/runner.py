"""Install mode on one host: before a stage's gate, its steps in order; after each DONE step the facts are
probed again and the step's precondition must hold (else it failed). Plan mode decides the same way and runs
nothing.

    stage cpu      -> install.modules
    stage packages -> install.packages
    stage libvirt  -> install.daemons, install.default-network, install.storage-pool, install.libvirt-user
    stage ovirt_engine (ovirt-engine targets) -> ovirt.release-repo, ovirt.engine-package, ovirt.engine-setup,
                                                 ovirt.add-hosts
                                                 (kvmqa.stages.ovirt_engine.actions)
    stage vdsm (ovirt-host targets)           -> ovirt.release-repo, ovirt.host-package, ovirt.vdsm-configure

A step whose `supported` gate answers (oVirt on a non-EL distro: skipped "not supported on debian 12") is
recorded without gathering its facts or running anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from kvmqa.core.action import DONE, FAILED, Action, ActionContext, ActionRecord, run_action, verify_after
from kvmqa.core.stage import Registry, Stage
from kvmqa.gather.install import gather_install

if TYPE_CHECKING:
    from kvmqa.session.host import HostSession

STATE_ATTR = "_kvmqa_install"


def actions_for(stage: str, registry: Registry) -> list[Action]:
    """A stage's install steps, in order, as its folder declares them (Stage.actions)."""
    return registry.get(stage).install_actions()


def host_actions(registry: Registry) -> list[Action]:
    """Every install step of the stages that apply to every host (no role), in run order."""
    return [a for s in registry if not s.roles for a in s.install_actions()]


@dataclass
class HostInstall:
    """Per host session: every step's record so far (dependencies look here) and the stages already
    handled."""

    records: dict[str, ActionRecord] = field(default_factory=dict)
    stages: set[str] = field(default_factory=set)


def install_state(session: HostSession) -> HostInstall:
    state = getattr(session, STATE_ATTR, None)
    if state is None:
        state = HostInstall()
        setattr(session, STATE_ATTR, state)
    return state


def context_for(session: HostSession, state: HostInstall, stage: Stage | None = None) -> ActionContext:
    opts = session.options
    secrets = tuple(s.reveal() for s in (getattr(opts, "engine_password", None),) if s)
    target = session.target
    return ActionContext(
        host=session.name,
        run=lambda cmd, timeout: target.run(cmd, timeout=timeout),
        execute=opts.install,
        put_file=lambda path, data, mode: target.put_file(path, data, mode),
        engine_password=getattr(opts, "engine_password", None),
        roles=tuple(target.roles),
        stage_context=stage.stage_context(session) if stage is not None else None,
        libvirt_user=opts.libvirt_user,
        extra_packages=session.profile.extra_packages,
        sudo=target.sudo and not target.is_local,  # Target ignores sudo locally
        secrets=secrets,
        records=state.records,
        check_gate=session.blocker,
    )


def ensure_facts(session: HostSession, action: Action, stage: Stage, ctx: ActionContext) -> None:
    """Gather the non-probe sections a precondition reads (the stage's own gatherer for 'libvirt' and others,
    e.g. 'engine'); nothing when the step's `supported` gate already answered (it will not run here)."""
    if action.unsupported_here(session.facts) is not None:
        return
    for name in action.facts:
        if name == "install":
            session.gather("install", lambda s: gather_install(s, ctx))
        # a section another stage gathers (an install step of cpu reading libvirt's facts): that stage's
        # gatherer
        else:
            owner = next((s for s in session.stages if name in s.gatherers), None)
            if owner is not None:
                session.gather(name, owner.gatherer(name))


def run_stage(session: HostSession, stage: Stage) -> list[ActionRecord]:
    """The stage's steps on this host, once per session; returns their records (in order)."""
    state = install_state(session)
    if stage.name in state.stages:
        return []
    state.stages.add(stage.name)
    ctx = context_for(session, state, stage)
    out = []
    for action in actions_for(stage.name, session.stages):
        if action.applies is not None and not action.applies(ctx):
            continue
        try:
            ensure_facts(session, action, stage, ctx)
            record = run_action(action, session.facts, ctx)
            if record.status == DONE or (record.status == FAILED and record.rc is not None):
                # a step that ran may have changed the host even when it failed (packages installed but one):
                # later steps and the stage's verify gate judge fresh facts
                session.refresh_facts()
                ensure_facts(session, action, stage, ctx)
            if record.status == DONE:
                verify_after(action, record, session.facts, ctx)
            if action.severity is not None and record.status == FAILED:
                record.level = action.severity(session.facts, session.profile)
        except Exception as exc:  # noqa: BLE001 - a step's bug or a lost target fails the step, not the run
            record = ActionRecord(
                session.name,
                action.stage,
                action.id,
                action.description,
                FAILED,
                f"kvmqa could not run the step: {type(exc).__name__}: {exc}",
                hint=action.hint,
            )
            state.records[action.id] = record
        out.append(record)
    return out
