"""Install mode's steps of stage vdsm on ovirt-host targets (EL8/EL9): host deploy as the engine does it, the
oVirt
release repository, ovirt-host, then vdsm-tool configure. The oVirt helpers they share with the engine's steps
(release repository, EL check, package preconditions) are in kvmqa/stages/ovirt_engine/actions.py."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kvmqa.core.action import Action, ActionContext, Decision, needed, satisfied
from kvmqa.stages.ovirt_engine.actions import (
    HINT,
    HOST_ROLE,
    HOST_STAGE,
    el_release,
    package_precondition,
    release_repo,
    role_applies,
)


def _vdsm_configure_precondition(facts: Mapping[str, Any], ctx: ActionContext) -> Decision:
    configured = ((facts.get("vdsm") or {}).get("is_configured") or {}).get("ok")
    if configured:
        return satisfied("vdsm-tool is-configured: all modules configured")
    return needed("vdsm-tool is-configured reports modules not configured (or vdsm absent)")


def host_actions() -> list[Action]:
    """Stage vdsm on ovirt-host targets: host deploy as the engine's does it, ovirt-host then vdsm-tool
    configure."""
    applies = role_applies(HOST_ROLE)
    return [
        release_repo(HOST_STAGE, HOST_ROLE),
        Action(
            "ovirt.host-package",
            HOST_STAGE,
            "install ovirt-host (vdsm and its dependencies)",
            package_precondition("ovirt-host"),
            lambda f, c: ["dnf -y install ovirt-host"],
            timeout=1800,
            requires=("ovirt.release-repo",),
            supported=el_release,
            applies=applies,
            hint=HINT,
        ),
        Action(
            "ovirt.vdsm-configure",
            HOST_STAGE,
            "configure vdsm's modules and restart their services",
            _vdsm_configure_precondition,
            lambda f, c: ["vdsm-tool configure --force"],
            timeout=600,
            requires=("ovirt.host-package",),
            supported=el_release,
            applies=applies,
            hint=HINT,
        ),
    ]


HOST_ACTIONS: tuple[Action, ...] = tuple(host_actions())
