"""install.daemons (stage libvirt): a running, enabled libvirt daemon for QEMU and virtlogd.

systemd: `systemctl enable --now libvirtd` (monolithic), or the modular virtqemud/virtnetworkd/virtstoraged
sockets where the distro uses them (EL9 and Fedora fresh installs). Without systemd (containers, sandboxes):
`virtlogd -d` and `libvirtd -d` by hand, which the report says, since nothing brings them back after a reboot.
Every variant ends by waiting until `virsh version` answers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kvmqa.core.action import Action, ActionContext, Decision, needed, satisfied
from kvmqa.core.facts import HostFacts
from kvmqa.gather.install import DAEMONS as DAEMON_NAMES
from kvmqa.stages.libvirt.checks import daemon_layout

MODULAR_SOCKETS = tuple(
    f"virt{d}d{s}.socket" for d in ("qemu", "network", "storage") for s in ("", "-ro", "-admin")
)
WAIT = (
    "i=0; until virsh -c qemu:///system version >/dev/null 2>&1; do i=$((i+1)); "
    "if [ $i -ge 60 ]; then virsh -c qemu:///system version; exit 1; fi; sleep 0.5; done"
)


ENABLED = frozenset({"enabled", "static", "indirect", "enabled-runtime", "alias"})


def _unit(facts: Mapping[str, Any], name: str) -> dict[str, str]:
    return ((facts.get("init") or {}).get("units") or {}).get(name) or {}


def uses_modular(facts: Mapping[str, Any]) -> bool:
    """The modular daemons: already in use, or the distro's default (EL9+, Fedora) unless libvirtd is set
    up."""
    if any(
        _unit(facts, u).get("active") == "active" or _unit(facts, u).get("enabled") == "enabled"
        for u in ("virtqemud.socket", "virtqemud.service")
    ):
        return True
    if any(_unit(facts, u).get("enabled") == "enabled" for u in ("libvirtd.service", "libvirtd.socket")):
        return False
    os_ = facts.get("os") or {}
    if os_.get("id") == "fedora":
        return True
    major = str(os_.get("version_id", "")).split(".")[0]
    return os_.get("family") == "el" and major.isdigit() and int(major) >= 9


def systemd_units(facts: Mapping[str, Any]) -> list[str]:
    return (
        ["virtlogd.socket", *MODULAR_SOCKETS]
        if uses_modular(facts)
        else ["virtlogd.socket", "libvirtd.service"]
    )


def live_facts(facts: Mapping[str, Any]) -> dict[str, Any]:
    """Facts whose process list holds only live daemons (facts['install']['live']) when that was gathered."""
    live = (facts.get("install") or {}).get("live")
    if live is None:
        return dict(facts)
    others = [p for p in facts.get("processes") or [] if p not in DAEMON_NAMES]
    return {**facts, "processes": sorted(others + list(live))}


def _virtlogd_running(facts: Mapping[str, Any]) -> bool:
    return (
        "virtlogd" in (facts.get("processes") or [])
        or _unit(facts, "virtlogd.socket").get("active") == "active"
    )


def precondition(facts: Mapping[str, Any], ctx: ActionContext) -> Decision:
    facts = live_facts(facts)
    init = facts.get("init") or {}
    layout = daemon_layout(HostFacts(facts))
    if init.get("systemd"):
        groups = (
            [
                ("virtqemud", ("virtqemud.service", "virtqemud.socket")),
                ("virtnetworkd", ("virtnetworkd.socket",)),
                ("virtstoraged", ("virtstoraged.socket",)),
            ]
            if uses_modular(facts)
            else [("libvirtd", ("libvirtd.service", "libvirtd.socket"))]
        )
        groups.append(("virtlogd", ("virtlogd.service", "virtlogd.socket")))
        bad = []
        for name, units in groups:
            active = any(_unit(facts, u).get("active") == "active" for u in units)
            enabled = any(_unit(facts, u).get("enabled") in ENABLED for u in units)
            if not (active and enabled):
                states = ", ".join(
                    f"{u} "
                    f"{_unit(facts, u).get('active') or '?'}/{_unit(facts, u).get('enabled') or 'not found'}"
                    for u in units
                )
                bad.append(f"{name} not {'enabled' if active else 'active'} ({states})")
        if bad:
            return needed("systemd: " + "; ".join(bad))
        return satisfied(
            f"systemd: {', '.join(n for n, _ in groups)} active (or socket-activated) and enabled"
        )
    how = f"no systemd (PID 1 is {init.get('pid1_comm') or init.get('system') or 'unknown'})"
    missing = []
    if not (layout["monolithic"] or layout["modular"]):
        missing.append("libvirtd")
    if not _virtlogd_running(facts):
        missing.append("virtlogd")
    if missing:
        return needed(
            f"{how}: not running: {', '.join(missing)}; kvmqa starts "
            f"{' and '.join(m + ' -d' for m in reversed(missing))} by hand (not persistent across reboots)"
        )
    running = "virtqemud" if layout["modular"] and not layout["monolithic"] else "libvirtd"
    return satisfied(f"{how}: {running} and virtlogd are running (started by hand, not by an init system)")


def commands(facts: Mapping[str, Any], ctx: ActionContext) -> list[str]:
    facts = live_facts(facts)
    if (facts.get("init") or {}).get("systemd"):
        return [f"systemctl enable --now {' '.join(systemd_units(facts))}", WAIT]
    layout = daemon_layout(HostFacts(facts))
    out = []
    if not _virtlogd_running(facts):
        out.append("virtlogd -d")
    if not (layout["monolithic"] or layout["modular"]):
        out.append("libvirtd -d")
    return out + [WAIT]


DAEMONS = Action(
    "install.daemons",
    "libvirt",
    "start (and enable, under systemd) the libvirt daemons and virtlogd",
    precondition,
    commands,
    timeout=120,
    requires_checks=("packages.libvirt-daemon",),
    facts=("install",),
    hint="Read the daemon's log (journalctl -u libvirtd, or /var/log/libvirt/libvirtd.log)",
)
