"""install.modules (stage cpu): kvm_intel/kvm_amd by CPU vendor, vhost_net and tun; modprobe, then persist
the ones kvmqa loaded in /etc/modules-load.d/kvmqa.conf (only after they loaded: nothing half-done)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kvmqa.core.action import Action, ActionContext, Decision, needed, satisfied, unsupported
from kvmqa.gather.install import MODULES_LOAD
from kvmqa.gather.vendors import kvm_module_for

DEVICE_OF = {"vhost_net": "/dev/vhost-net", "tun": "/dev/net/tun"}


def module_states(facts: Mapping[str, Any]) -> dict[str, str]:
    """Module -> '' when present, else why it is wanted. A device node counts as present (built in)."""
    present = set((facts.get("modules") or {}).get("present", []))
    devices = facts.get("devices") or {}
    wanted: dict[str, str] = {}
    hw = kvm_module_for((facts.get("cpu") or {}).get("vendor_id", ""))
    arch = (facts.get("host") or {}).get("arch", "")
    if hw and arch in ("", "x86_64", "i686"):
        wanted[hw] = "" if hw in present else f"{hw} not loaded"
    for mod, dev in DEVICE_OF.items():
        if mod in present or (devices.get(dev) or {}).get("exists"):
            wanted[mod] = ""
        else:
            wanted[mod] = f"{mod} not loaded ({dev} missing)"
    return wanted


def missing_modules(facts: Mapping[str, Any]) -> list[str]:
    return [m for m, why in module_states(facts).items() if why]


def precondition(facts: Mapping[str, Any], ctx: ActionContext) -> Decision:
    states = module_states(facts)
    missing = [why for why in states.values() if why]
    if missing and "install" in facts and not (facts.get("install") or {}).get("modprobe"):
        # Nothing to run: say so without running anything (a second install run then changes nothing here
        # either).
        return unsupported("; ".join(missing) + explain(facts, ""))
    if missing:
        return needed("; ".join(missing))
    return satisfied(f"loaded or built in: {', '.join(states)}")


def commands(facts: Mapping[str, Any], ctx: ActionContext) -> list[str]:
    mods = missing_modules(facts)
    persist = (
        f"mkdir -p /etc/modules-load.d && for m in {' '.join(mods)}; do "
        f'grep -qx "$m" {MODULES_LOAD} 2>/dev/null || echo "$m" >> {MODULES_LOAD}; done'
    )
    return [f"modprobe -a {' '.join(mods)}", persist]


def explain(facts: Mapping[str, Any], failure: str) -> str:
    notes = []
    if (facts.get("modules") or {}).get("source") == "none":
        notes.append(
            "this kernel has no /proc/modules (modules built in, or loading not available here, e.g. a "
            "sandboxed kernel)"
        )
    if not (facts.get("install") or {}).get("modprobe"):
        notes.append("modprobe is not installed (package kmod)")
    return ("; " + "; ".join(notes) + ": loading modules is not possible on this host") if notes else ""


def severity(facts: Mapping[str, Any], profile: Any) -> str:
    """As severe as the cpu checks the missing modules serve: kvm_* -> the profile's kvm level, vhost_net ->
    warn
    (cpu.vhost-net), tun -> fail (cpu.tun)."""
    levels = []
    for mod in missing_modules(facts):
        if mod.startswith("kvm"):
            levels.append(getattr(getattr(profile, "kvm", None), "value", "fail"))
        else:
            levels.append("warn" if mod == "vhost_net" else "fail")
    return "fail" if "fail" in levels or not levels else "warn"


MODULES = Action(
    "install.modules",
    "cpu",
    "load the KVM, vhost_net and tun kernel modules and persist them in " + MODULES_LOAD,
    precondition,
    commands,
    timeout=60,
    facts=("install",),
    explain_failure=explain,
    severity=severity,
    hint="Check dmesg and the firmware's virtualization setting; on a VM, expose VT-x/AMD-V to the guest",
)
