"""install.libvirt-user (stage libvirt, only with --libvirt-user NAME): the user joins the libvirt and kvm
groups."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kvmqa.core.action import Action, ActionContext, Decision, needed, satisfied, unsupported
from kvmqa.gather.install import USER_NAME

GROUPS = ("libvirt", "kvm")


def precondition(facts: Mapping[str, Any], ctx: ActionContext) -> Decision:
    user = ctx.libvirt_user or ""
    if not USER_NAME.match(user):
        return unsupported(f"{user!r} is not a valid user name")
    inst = facts.get("install") or {}
    if not inst.get("user_exists"):
        return unsupported(f"user {user} does not exist on the target (create it first)")
    have = set(inst.get("user_groups") or [])
    missing = [g for g in GROUPS if g not in have]
    if missing:
        return needed(f"{user} is not in {', '.join(missing)} (groups: {' '.join(sorted(have))})")
    return satisfied(f"{user} is in {' and '.join(GROUPS)}")


def commands(facts: Mapping[str, Any], ctx: ActionContext) -> list[str]:
    return [
        f"usermod -aG {','.join(GROUPS)} {ctx.libvirt_user}"
    ]  # the name matched USER_NAME: no quoting needed


LIBVIRT_USER = Action(
    "install.libvirt-user",
    "libvirt",
    "add --libvirt-user to the libvirt and kvm groups (usermod -aG)",
    precondition,
    commands,
    timeout=60,
    requires_checks=("packages.libvirt-daemon", "packages.qemu"),
    facts=("install",),
    applies=lambda ctx: bool(ctx.libvirt_user),
    hint="The groups come with the libvirt and QEMU packages; the user must log in again for them to apply",
)
