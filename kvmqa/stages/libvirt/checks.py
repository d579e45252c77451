"""Stage libvirt: the daemon, a connection, versions, capabilities, the default network and a storage pool,
and a side-by-side with the real virt-host-validate."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from kvmqa.config.profile import Profile
from kvmqa.core.checks import StageChecks
from kvmqa.core.facts import HostFacts
from kvmqa.core.model import Level, Outcome, failed, info, not_applicable, passed, undecided
from kvmqa.gather.distro import package_manager_of
from kvmqa.gather.facts import HostInfo
from kvmqa.gather.versions import at_least
from kvmqa.stages.first_vm.space import POOL_BASE, reusable_pool, space_need
from kvmqa.stages.host.facts import Storage
from kvmqa.stages.libvirt.facts import (
    DefinedGuest,
    Init,
    Libvirt,
    MachineType,
    VhvLine,
    VirtHostValidate,
    processes,
    sockets,
)

CHECKS = StageChecks("libvirt")

MODULAR = ("virtqemud", "virtnetworkd", "virtstoraged")


def daemon_layout(facts: HostFacts) -> dict[str, Any]:
    """Which libvirt daemons run, how they are started, and which sockets exist."""
    procs = processes(facts).names
    init = facts.view(Init)
    active_units = sorted(u for u, s in init.units.items() if s.active == "active")
    monolithic = "libvirtd" in procs or any(u.startswith("libvirtd.") for u in active_units)
    modular = (
        "virtqemud" in procs or "virtqemud.socket" in active_units or "virtqemud.service" in active_units
    )
    return {
        "monolithic": monolithic,
        "modular": modular,
        "processes": sorted(p for p in procs if p.startswith(("libvirtd", "virt"))),
        "active_units": active_units,
        "sockets": sorted(sockets(facts).by_path),
        "init": init.system,
    }


RESTARTING = ("activating", "deactivating", "reloading")


def restarting_units(facts: HostFacts) -> str:
    """libvirt's units systemd is starting, stopping or reloading ('libvirtd.service deactivating'), or ''."""
    units = facts.view(Init).units
    return ", ".join(f"{u} {st.active}" for u, st in sorted(units.items()) if st.active in RESTARTING)


@CHECKS.check(
    "libvirt.daemon",
    "A libvirt daemon for QEMU is running (libvirtd or virtqemud)",
    hint="Start it: systemctl enable --now libvirtd (monolithic) or the virtqemud/virtnetworkd/virtstoraged "
    "sockets "
    "(modular); without systemd: libvirtd -d (after virtlogd -d); kvmqa --mode install does it",
)
def daemon(facts: HostFacts, profile: Profile) -> Outcome:
    layout = daemon_layout(facts)
    init = layout["init"]
    systemd = facts.view(Init).systemd
    how = "systemd" if systemd else f"no systemd (PID 1 is {init}): started by hand"
    if systemd:
        daemon_sockets = [
            u
            for u in layout["active_units"]
            if u.endswith(".socket") and u.startswith(("libvirtd", "virtqemud"))
        ]
        how += (
            f", socket activation: {', '.join(daemon_sockets)}"
            if daemon_sockets
            else ", no socket activation"
        )
    restarting = restarting_units(facts)
    if restarting:  # a package upgrade's postinst (or an admin) restarts it: say so, not "not running"
        return failed(
            f"the libvirt daemon is restarting: {restarting} ({how}); run kvmqa again when it has settled",
            level=Level.WARN,
            **layout,
        )
    if layout["monolithic"]:
        return passed(f"monolithic libvirtd running ({how})", **layout)
    if layout["modular"]:
        missing = [
            d
            for d in MODULAR[1:]
            if d not in layout["processes"] and f"{d}.socket" not in layout["active_units"]
        ]
        extra = f"; not running: {', '.join(missing)}" if missing else ""
        return passed(f"modular virtqemud running or socket-activated ({how}){extra}", **layout)
    return failed(f"neither libvirtd nor virtqemud is running or socket-activated ({how})", **layout)


@CHECKS.check(
    "libvirt.socket",
    "The libvirt client socket exists",
    hint="The daemon is not listening: restart it and check its log",
    requires=("libvirt.daemon",),
)
def socket(facts: HostFacts, profile: Profile) -> Outcome:
    by_path = sockets(facts).by_path
    for path in ("/run/libvirt/virtqemud-sock", "/run/libvirt/libvirt-sock"):
        if path in by_path:
            s = by_path[path]
            return passed(f"{path} (mode {s.mode}, {s.owner}:{s.group})")
    return failed("no /run/libvirt/libvirt-sock or /run/libvirt/virtqemud-sock")


@CHECKS.check(
    "libvirt.virtlogd",
    "virtlogd is running (QEMU's log handler)",
    hint="Start virtlogd (systemctl start virtlogd.socket, or virtlogd -d): without it domains fail to start",
    requires=("libvirt.daemon",),
)
def virtlogd(facts: HostFacts, profile: Profile) -> Outcome:
    socket_unit = facts.view(Init).units.get("virtlogd.socket")
    if "virtlogd" in processes(facts).names:
        return passed("virtlogd running")
    if socket_unit is not None and socket_unit.active == "active":
        return passed("virtlogd.socket active (socket-activated)")
    return failed("virtlogd is neither running nor socket-activated")


@CHECKS.check(
    "libvirt.connect",
    "libvirt-python connects to the QEMU driver",
    hint="Check the daemon's log; over SSH the user needs sudo or membership of the libvirt group",
    requires=("libvirt.daemon",),
)
def connect(facts: HostFacts, profile: Profile) -> Outcome:
    lv = facts.view(Libvirt)
    if not lv.connected:
        if lv.uri.startswith("qemu+ext"):  # the URI holds a local helper's path: the error names the host
            return failed(lv.error, stderr=lv.stderr)
        restarting = restarting_units(facts)
        why = f" (the daemon is restarting: {restarting})" if restarting else ""
        return failed(f"cannot connect to {lv.uri or 'libvirt'}: {lv.error}{why}")
    qemu = "?" if lv.hypervisor_version is None else lv.hypervisor_version
    return passed(f"connected to {lv.uri} (libvirt {lv.lib_version}, QEMU {qemu}) in {lv.connect_s:.2f} s")


@CHECKS.check(
    "libvirt.versions",
    "libvirt and QEMU versions meet the profile's floors (default: nova's)",
    hint="Upgrade libvirt/QEMU (the default floors are OpenStack nova's: libvirt >= 8.0.0 and QEMU >= 6.2.0 "
    "required, >= 10.0.0 / 8.2.2 recommended); a profile's min_versions / warn_versions override them",
    requires=("libvirt.connect",),
)
def versions(facts: HostFacts, profile: Profile) -> Outcome:
    lv = facts.view(Libvirt)
    have = {"libvirt": lv.lib_version or "", "qemu": lv.hypervisor_version or ""}
    # libvirt's own x.y.z numbers, not package versions: both orders agree on them; the family's when known
    manager = package_manager_of(facts) or "rpm"

    def below(floors: dict[str, str]) -> list[str]:
        return [
            f"{k} {have[k]} < {floors[k]}"
            for k in have
            if floors.get(k) and have[k] and not at_least(have[k], floors[k], manager)
        ]

    desc = f"libvirt {have['libvirt']}, QEMU {have['qemu'] or 'unknown'}"
    floors = ", ".join(f"{k} >= {v}" for k, v in sorted(profile.min_versions.items()) if k in have)
    low = below(profile.min_versions)
    if low:
        return failed(f"{desc}: below the profile's minimum: {'; '.join(low)}", level=Level.FAIL)
    soon = below(profile.warn_versions)
    if soon:
        return failed(
            f"{desc}: meets the minimum ({floors or 'none'}) but is below the recommended {'; '.join(soon)}",
            level=Level.WARN,
        )
    return passed(f"{desc} (minimum {floors or 'none'})")


def kvm_arch(facts: HostFacts) -> str:
    """The architecture KVM guests have on this host: its own (libvirt's host arch, else uname -m)."""
    arch = facts.view(Libvirt).capabilities.host_arch or facts.view(HostInfo).arch
    return str(arch or "x86_64")


# The architectures the first_vm stage has a guest kit for (kvmqa.stages.first_vm.kit.ARCH_KITS; a unit test
# keeps the two equal): on any other host it cannot prove a KVM boot.
FIRST_VM_ARCHES = ("x86_64", "aarch64")
FIRST_VM_ARCH_NOTE = (
    "; note: the first_vm stage has guest kits for " + ", ".join(FIRST_VM_ARCHES) + " only, so on this "
    "{arch} host it cannot prove a KVM boot"
)


@CHECKS.check(
    "libvirt.kvm-guest",
    "Capabilities offer <domain type='kvm'> for guests of the host's architecture",
    hint="libvirt sees no usable KVM: check the cpu stage (/dev/kvm, modules) and restart the daemon after "
    "fixing it",
    requires=("libvirt.connect",),
)
def kvm_guest(facts: HostFacts, profile: Profile) -> Outcome:
    arch = kvm_arch(facts)
    types = facts.view(Libvirt).hvm_domain_types(arch)
    note = FIRST_VM_ARCH_NOTE.format(arch=arch) if arch not in FIRST_VM_ARCHES else ""
    if "kvm" in types:
        return passed(f"{arch} hvm guests: domain types {', '.join(types)}{note}")
    return failed(
        f"no <domain type='kvm'> for {arch} (domain types: {', '.join(types) or 'none'}): "
        f"could not find capabilities for arch={arch} domaintype=kvm{note}",
        level=profile.kvm,
    )


@CHECKS.check(
    "libvirt.qemu-guest",
    "Capabilities offer emulated (TCG) x86_64 guests",
    hint="Install the QEMU system emulator (qemu-system-x86 / qemu-kvm)",
    level=Level.WARN,
    requires=("libvirt.connect",),
)
def qemu_guest(facts: HostFacts, profile: Profile) -> Outcome:
    # the emulated first VM is of the host's architecture too (its kit): x86_64 on x86 hosts
    arch = kvm_arch(facts)
    types = facts.view(Libvirt).hvm_domain_types(arch)
    level = Level.FAIL if profile.allow_emulation else Level.WARN
    if "qemu" in types:
        return passed(f"{arch} hvm guests can be emulated (domain type qemu)")
    return failed(f"no <domain type='qemu'> for {arch}", level=level)


@CHECKS.check(
    "libvirt.domcapabilities",
    "Domain capabilities: machine, CPU modes, firmware",
    hint="libvirt cannot describe what a KVM guest may use: check the QEMU binary and libvirt's log",
    requires=("libvirt.connect",),
)
def domcapabilities(facts: HostFacts, profile: Profile) -> Outcome:
    lv = facts.view(Libvirt)
    kvm, qemu = lv.described("kvm"), lv.described("qemu")
    if kvm is None:
        if qemu is None:
            return failed(
                f"domcapabilities failed for kvm ({lv.domcapabilities_error('kvm', '?')}) "
                f"and qemu ({lv.domcapabilities_error('qemu', '?')})"
            )
        return failed(
            f"domcapabilities for kvm failed: {lv.domcapabilities_error('kvm', 'missing')}; "
            f"TCG: machine {qemu.machine}",
            level=profile.kvm,
        )
    modes = [m for m, ok in kvm.cpu_modes.items() if ok]
    uefi = "UEFI loader available" if kvm.loader_supported and kvm.loader_values else "no UEFI loader"
    arch = lv.domcapabilities_arch.get("kvm", "x86_64")
    secure = list(kvm.launch_security or ())
    return passed(
        f"kvm ({arch}): machine {kvm.machine}, max {kvm.max_vcpus} vCPUs, CPU modes "
        f"{', '.join(modes)}, {uefi}, launch security: {', '.join(secure) or 'none'}",
        cpu_modes=modes,
        usable_cpu_models=len(kvm.usable_cpu_models),
        launch_security=secure,
    )


@CHECKS.check(
    "libvirt.default-network",
    "The default network is defined and active",
    hint="virsh net-start default && virsh net-autostart default (kvmqa --mode install does it)",
    requires=("libvirt.connect",),
)
def default_network(facts: HostFacts, profile: Profile) -> Outcome:
    nets = {n.name: n for n in facts.view(Libvirt).networks}
    net = nets.get("default")
    if net is None:
        return failed(f"no network named default (networks: {', '.join(nets) or 'none'})")
    desc = (
        f"default: {net.forward} on {net.bridge or '?'} {net.address}, "
        f"autostart {'on' if net.autostart else 'off'}"
    )
    if not net.active:
        return failed(desc + ", inactive")
    return passed(desc + ", active")


@CHECKS.check(
    "libvirt.storage-pool",
    "An active storage pool exists",
    hint="virsh pool-define-as default dir --target /var/lib/libvirt/images && virsh pool-build default && "
    "virsh pool-start default && virsh pool-autostart default (kvmqa --mode install does it)",
    requires=("libvirt.connect",),
)
def storage_pool(facts: HostFacts, profile: Profile) -> Outcome:
    pools = facts.view(Libvirt).pools
    active = [p for p in pools if p.active and not p.name.startswith("kvmqa-")]
    if not active:
        names = ", ".join(f"{p.name} ({'active' if p.active else 'inactive'})" for p in pools) or "none"
        return failed(f"no active storage pool (pools: {names})")
    p = next((p for p in active if p.name == "default"), active[0])
    free_gib = p.available / 1024**3
    if free_gib < profile.min_free_disk_gib:
        return failed(
            f"pool {p.name} ({p.type} {p.path}) has {free_gib:.1f} GiB free, the profile requires "
            f"{profile.min_free_disk_gib:g} GiB",
            level=Level.WARN,
        )
    return passed(f"pool {p.name} ({p.type} {p.path}) active, {free_gib:.1f} GiB free")


def _size_text(n_bytes: float) -> str:
    return f"{n_bytes / 1024**3:.1f} GiB" if n_bytes >= 1024**3 else f"{n_bytes / 1024**2:.0f} MiB"


def first_vm_destination(facts: HostFacts) -> tuple[str, float | None, str]:
    """(where the first VM writes, its free bytes or None, why unknown): the pool its Workspace reuses (the
    first active dir pool kvmqa did not create), else /var/lib/libvirt/images, where it makes its own."""
    for p in facts.view(Libvirt).pools:
        if p.active and reusable_pool(p.name, p.type):
            return f"pool {p.name} ({p.path})", float(p.available), ""
    st = facts.view(Storage)
    where = (
        f"{POOL_BASE} (no active dir pool: the first VM creates its own there; measured at "
        f"{st.dir or POOL_BASE}, filesystem {st.path})"
    )
    if st.available_kib is None:
        return where, None, st.error or "no df output"
    return where, st.available_kib * 1024.0, ""


@CHECKS.check(
    "libvirt.first-vm-space",
    "The storage pool the first VM writes to has room for its volumes",
    hint="Free space in that pool's filesystem (the first VM removes its volumes after the stage), "
    "or give libvirt an active dir pool on a filesystem with room",
    requires=("libvirt.connect",),
)
def first_vm_space(facts: HostFacts, profile: Profile) -> Outcome:
    need = space_need(profile)
    where, free, unknown = first_vm_destination(facts)
    details: dict[str, Any] = {
        "where": where,
        "need_mib": need.total_mib,
        "disk_mib": need.disk_mib,
        "kit_mib": need.kit_mib,
        "margin_mib": need.margin_mib,
    }
    if free is None:
        return failed(
            f"the first VM needs {need.text()} in {where}, whose free space could not be read: "
            f"{unknown}; the first VM runs anyway",
            level=Level.WARN,
            **details,
        )
    details["free_mib"] = round(free / 1024**2)
    text = f"the first VM needs {need.text()} in {where}, which has {_size_text(free)} free"
    if free < need.total_mib * 1024**2:
        return failed(text, **details)
    return passed(text, **details)


# --- side by side with virt-host-validate
# ---------------------------------------------------------------------
KVM_ACCESS_WHY = (
    "virt-host-validate checks the user it runs as (root through sudo here); kvmqa's check is the login "
    "user's own access, which only qemu:///session needs, at the profile's session_kvm_access level; "
    "libvirt's system guests need the QEMU user's access (cpu.kvm-qemu-user-access)"
)
VHV_MAP = (  # (substring of the virt-host-validate line, our check id, why we may differ)
    ("hardware virtualization", "cpu.hw-virt", ""),
    ("'/dev/kvm' exists", "cpu.kvm-device", ""),
    ("/dev/kvm exists", "cpu.kvm-device", ""),
    ("'/dev/kvm' is accessible", "cpu.kvm-device-access", KVM_ACCESS_WHY),
    ("/dev/kvm is accessible", "cpu.kvm-device-access", KVM_ACCESS_WHY),
    ("/dev/vhost-net", "cpu.vhost-net", ""),
    ("/dev/net/tun", "cpu.tun", ""),
    (
        "cgroup '",
        "cpu.cgroups",
        "on cgroup v2 virt-host-validate flags devices/freezer/blkio, which v2 does not have as "
        "controllers (libvirt uses eBPF for devices); kvmqa checks the v2 controllers libvirt uses",
    ),
    (
        "device assignment IOMMU",
        "cpu.iommu-acpi",
        "without vmx/svm virt-host-validate cannot tell the vendor and says 'Unknown'; "
        "kvmqa falls back to the CPU vendor_id",
    ),
    ("IOMMU is enabled by kernel", "cpu.iommu-kernel", ""),
    (
        "secure guest",
        "cpu.sev",
        "virt-host-validate warns 'Unknown' on every non-SEV host; kvmqa reports SEV/TDX as "
        "information, since most hosts need neither",
    ),
)
VHV_OURS = {"PASS": {"pass"}, "FAIL": {"fail"}, "WARN": {"warn"}, "NOTE": {"info", "pass", "skip"}}


def compare_with_vhv(vhv_lines: Sequence[VhvLine], ours: dict[str, str]) -> list[dict[str, str]]:
    """Pair virt-host-validate's lines with kvmqa's verdicts; `ours` maps check id -> verdict."""
    rows = []
    for line in vhv_lines:
        mapping = next(((cid, why) for key, cid, why in VHV_MAP if key in line.check), None)
        if mapping is None:
            rows.append(
                {
                    "vhv_check": line.check,
                    "vhv": line.verdict,
                    "check_id": "",
                    "kvmqa": "",
                    "agree": "n/a",
                    "reason": "no kvmqa counterpart",
                }
            )
            continue
        cid, why = mapping
        verdict = ours.get(cid, "not run")
        agree = verdict in VHV_OURS.get(line.verdict, set())
        reason = "" if agree else (why or _default_reason(cid, line.verdict, verdict))
        rows.append(
            {
                "vhv_check": line.check,
                "vhv": line.verdict,
                "check_id": cid,
                "kvmqa": verdict,
                "agree": "yes" if agree else "no",
                "reason": reason,
            }
        )
    return rows


def _default_reason(cid: str, vhv: str, ours: str) -> str:
    if cid == "cpu.hw-virt" and ours == "warn":
        return "the profile lowers a missing hardware-virtualization flag to a warning"
    if ours == "info":
        return "kvmqa reports this as information under the profile"
    return f"levels differ: virt-host-validate {vhv}, kvmqa {ours}"


def vhv_comparison(facts: HostFacts, ours: dict[str, str]) -> Outcome:
    vhv = facts.view(VirtHostValidate)
    if not vhv.installed:
        return not_applicable("virt-host-validate is not installed on the target")
    rows = compare_with_vhv(vhv.lines, ours)
    disagree = [r for r in rows if r["agree"] == "no"]
    summary = f"virt-host-validate qemu: rc {vhv.rc}, {len(rows)} lines, {len(disagree)} disagreements"
    if disagree:
        summary += ": " + "; ".join(
            f"{r['vhv_check']}: vhv {r['vhv']} vs kvmqa {r['check_id']} {r['kvmqa']} ({r['reason']})"
            for r in disagree
        )
    return info(summary, rows=rows)


@CHECKS.check(
    "libvirt.virt-host-validate", "Where the real virt-host-validate and kvmqa disagree", level=Level.INFO
)
def virt_host_validate(facts: HostFacts, profile: Profile) -> Outcome:
    from kvmqa.core.gate import evaluate_stage
    from kvmqa.stages.cpu.checks import CHECKS as CPU

    ours = {f.check_id: f.verdict.value for f in evaluate_stage(CPU, "", facts, profile)}
    return vhv_comparison(facts, ours)


# -- defined guests against what the installed QEMU offers (after an upgrade: which will not start) -------
def _versioned(machines: Sequence[str], family: str) -> list[str]:
    """`family`'s versioned machines (pc-i440fx-7.1, ...) among `machines`, oldest first."""

    def number(m: str) -> tuple[int, ...]:
        return tuple(int(x) for x in m[len(family) :].split("."))

    return sorted((m for m in machines if re.fullmatch(re.escape(family) + r"\d+(\.\d+)*", m)), key=number)


def machine_advice(machine: str, offered: Sequence[MachineType]) -> str:
    """What to change a guest's machine type to: the oldest of its family this QEMU offers without deprecation
    (the nearest virtual hardware), and the newest."""
    family = m.group(1) if (m := re.match(r"(.*-)\d+(\.\d+)*$", machine)) else ""
    current = _versioned([t.name for t in offered if not t.deprecated], family) if family else []
    if not current:
        return "change its machine type (<os><type machine=...>) to one this QEMU offers (virsh capabilities)"
    oldest, newest = current[0], current[-1]
    both = f"{oldest} (the nearest virtual hardware)" + (f" or {newest}" if newest != oldest else "")
    return (
        f"change its machine type to {both}: virsh edit, <os><type machine='{oldest}'>; test the guest after"
    )


def _guest_state(g: DefinedGuest) -> str:
    return "running" if g.active else "shut off"


@CHECKS.check(
    "libvirt.guest-machine-types",
    "Every defined guest's machine type is one the installed QEMU offers, and not a deprecated one",
    hint="A guest whose machine type QEMU no longer offers will not start again (a running one keeps its old "
    "QEMU until it stops): change its machine type (virsh edit, <os><type machine=...>) to one listed by "
    "virsh capabilities, the oldest non-deprecated of its family for the nearest virtual hardware; a "
    "deprecated type still starts but will be removed by a later QEMU: plan the same change",
    requires=("libvirt.connect",),
)
def guest_machine_types(facts: HostFacts, profile: Profile) -> Outcome:
    lv = facts.view(Libvirt)
    qemu = f"QEMU {lv.hypervisor_version or '?'}"
    if not lv.guests:
        return passed("no guests defined: none that cannot start")
    offered = lv.capabilities.machine_types
    gone, old, fine = [], [], []
    for g in lv.guests:
        if not g.machine:
            fine.append(g.name)
            continue
        types = {t.name: t for t in offered.get(g.arch, ())}
        t = types.get(g.machine)
        if t is None:
            why = f"offers no {g.arch} guests at all" if g.arch not in offered else "no longer offers it"
            gone.append(
                f"guest {g.name} ({_guest_state(g)}): machine type {g.machine}: {qemu} {why}; "
                f"{'it runs on the QEMU it was started with and ' if g.active else ''}will not start again: "
                f"{machine_advice(g.machine, offered.get(g.arch, ()))}"
            )
        elif t.deprecated:
            old.append(
                f"guest {g.name} ({_guest_state(g)}): machine type {g.machine} is deprecated in {qemu} "
                f"(it starts, a later QEMU removes it): {machine_advice(g.machine, offered.get(g.arch, ()))}"
            )
        else:
            fine.append(g.name)
    details: dict[str, Any] = {"unstartable": gone, "deprecated": old, "fine": fine}
    if gone:
        return failed(f"{len(gone)} guest(s) will not start on {qemu}: " + "; ".join(gone + old), **details)
    if old:
        return failed(
            f"{len(old)} guest(s) on deprecated machine types: " + "; ".join(old), level=Level.WARN, **details
        )
    return passed(
        f"{len(fine)} guest(s), every machine type offered by {qemu} and none deprecated", **details
    )


@CHECKS.check(
    "libvirt.guest-cpu-models",
    "Every defined guest's custom CPU model is one the installed QEMU offers, and not a deprecated one",
    hint="A guest whose CPU model QEMU no longer offers will not start again: change its <cpu><model> (virsh "
    "edit) to one virsh domcapabilities lists as usable, or use host-model; a deprecated model still starts "
    "but will be removed by a later QEMU",
    requires=("libvirt.connect",),
)
def guest_cpu_models(facts: HostFacts, profile: Profile) -> Outcome:
    lv = facts.view(Libvirt)
    qemu = f"QEMU {lv.hypervisor_version or '?'}"
    custom = [g for g in lv.guests if g.cpu_mode == "custom" and g.cpu_model]
    if not custom:
        return passed(f"no guest with a custom CPU model ({len(lv.guests)} guest(s) defined)")
    gone, old, unknown, fine = [], [], [], []
    for g in custom:
        caps = lv.described(g.domain_type or "kvm")
        same_arch = lv.domcapabilities_arch.get(g.domain_type or "kvm", g.arch) == g.arch
        if caps is None or caps.cpu_models is None or not same_arch:
            unknown.append(f"guest {g.name}: {g.arch} {g.domain_type} CPU models not gathered")
            continue
        models = {m.name: m for m in caps.cpu_models}
        m = models.get(g.cpu_model)
        if m is None:
            usable = [n for n, x in models.items() if x.usable == "yes" and not x.deprecated]
            gone.append(
                f"guest {g.name} ({_guest_state(g)}): CPU model {g.cpu_model}: {qemu} no longer offers it; "
                f"will not start again: change <cpu><model> to a usable one "
                f"({', '.join(usable[:6]) or 'none usable'}{', ...' if len(usable) > 6 else ''}) "
                "or host-model"
            )
        elif m.deprecated:
            old.append(f"guest {g.name} ({_guest_state(g)}): CPU model {g.cpu_model} is deprecated in {qemu}")
        else:
            fine.append(g.name)
    details: dict[str, Any] = {"unstartable": gone, "deprecated": old, "not_gathered": unknown, "fine": fine}
    if gone:
        return failed(f"{len(gone)} guest(s) will not start on {qemu}: " + "; ".join(gone + old), **details)
    if old:
        return failed(
            f"{len(old)} guest(s) on deprecated CPU models: " + "; ".join(old), level=Level.WARN, **details
        )
    if not fine:
        return undecided("; ".join(unknown), **details)
    note = f" ({'; '.join(unknown)})" if unknown else ""
    return passed(f"{len(fine)} guest(s) with custom CPU models, each offered by {qemu}{note}", **details)
