"""What every inventory reader shares (kvmqa YAML, --hosts URLs, Ansible): roles, the error, unique names."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kvmqa.transport.target import Target

ROLES = ("kvm-host", "ovirt-engine", "ovirt-host")


class InventoryError(ValueError):
    pass


def role_of_group(group: str) -> str | None:
    """An Ansible group's kvmqa role: kvm_hosts -> kvm-host, ovirt_hosts -> ovirt-host, ovirt_engine ->
    ovirt-engine."""
    role = group.replace("_", "-").lower().rstrip("s")
    return role if role in ROLES else None


def roles_of_groups(groups: list[str]) -> tuple[str, ...]:
    """The roles of a host in these groups; a host in none of the role groups is a KVM host."""
    return tuple(sorted({r for g in groups if (r := role_of_group(g))})) or ("kvm-host",)


def check_unique(targets: list[Target], src: str) -> None:
    seen: set[str] = set()
    for t in targets:
        if t.name in seen:
            raise InventoryError(f"{src}: host name {t.name!r} appears twice; names must be unique")
        seen.add(t.name)
