"""Stage libvirt: the daemon, a connection, versions, capabilities, the default network and a storage pool,
and a side-by-side with the real virt-host-validate."""

from __future__ import annotations

from typing import Any

from kvmqa.config.profile import Profile
from kvmqa.core.checks import StageChecks
from kvmqa.core.facts import HostFacts
from kvmqa.core.model import Level, Outcome, failed, info, not_applicable, passed
from kvmqa.gather.distro import package_manager_of
from kvmqa.gather.versions import at_least
from kvmqa.stages.first_vm.space import POOL_BASE, reusable_pool, space_need

CHECKS = StageChecks("libvirt")

MODULAR = ("virtqemud", "virtnetworkd", "virtstoraged")


def daemon_layout(facts: HostFacts) -> dict[str, Any]:
    """Which libvirt daemons run, how they are started, and which sockets exist."""
    procs = set(facts.get("processes", []))
    units = facts.get("init", {}).get("units", {})
    sockets = facts.get("sockets", {})
    active_units = sorted(u for u, s in units.items() if s.get("active") == "active")
    monolithic = "libvirtd" in procs or any(u.startswith("libvirtd.") for u in active_units)
    modular = "virtqemud" in procs or "virtqemud.socket" in active_units or "virtqemud.service" in active_units
    return {
        "monolithic": monolithic, "modular": modular, "processes": sorted(p for p in procs if p.startswith(("libvirtd", "virt"))),
        "active_units": active_units, "sockets": sorted(sockets), "init": facts.get("init", {}).get("system", "unknown"),
    }


@CHECKS.check("libvirt.daemon", "A libvirt daemon for QEMU is running (libvirtd or virtqemud)",
              hint="Start it: systemctl enable --now libvirtd (monolithic) or the virtqemud/virtnetworkd/virtstoraged sockets "
                   "(modular); without systemd: libvirtd -d (after virtlogd -d); kvmqa --mode install does it")
def daemon(facts: HostFacts, profile: Profile) -> Outcome:
    layout = daemon_layout(facts)
    init = layout["init"]
    how = "systemd" if facts.get("init", {}).get("systemd") else f"no systemd (PID 1 is {init}): started by hand"
    if facts.get("init", {}).get("systemd"):
        daemon_sockets = [u for u in layout["active_units"] if u.endswith(".socket") and u.startswith(("libvirtd", "virtqemud"))]
        how += f", socket activation: {', '.join(daemon_sockets)}" if daemon_sockets else ", no socket activation"
    if layout["monolithic"]:
        return passed(f"monolithic libvirtd running ({how})", **layout)
    if layout["modular"]:
        missing = [d for d in MODULAR[1:] if d not in layout["processes"] and f"{d}.socket" not in layout["active_units"]]
        extra = f"; not running: {', '.join(missing)}" if missing else ""
        return passed(f"modular virtqemud running or socket-activated ({how}){extra}", **layout)
    return failed(f"neither libvirtd nor virtqemud is running or socket-activated ({how})", **layout)


@CHECKS.check("libvirt.socket", "The libvirt client socket exists", hint="The daemon is not listening: restart it and check its log",
              requires=("libvirt.daemon",))
def socket(facts: HostFacts, profile: Profile) -> Outcome:
    sockets = facts.get("sockets", {})
    for path in ("/run/libvirt/virtqemud-sock", "/run/libvirt/libvirt-sock"):
        if path in sockets:
            s = sockets[path]
            return passed(f"{path} (mode {s['mode']}, {s['owner']}:{s['group']})")
    return failed("no /run/libvirt/libvirt-sock or /run/libvirt/virtqemud-sock")


@CHECKS.check("libvirt.virtlogd", "virtlogd is running (QEMU's log handler)",
              hint="Start virtlogd (systemctl start virtlogd.socket, or virtlogd -d): without it domains fail to start",
              requires=("libvirt.daemon",))
def virtlogd(facts: HostFacts, profile: Profile) -> Outcome:
    units = facts.get("init", {}).get("units", {})
    if "virtlogd" in facts.get("processes", []):
        return passed("virtlogd running")
    if units.get("virtlogd.socket", {}).get("active") == "active":
        return passed("virtlogd.socket active (socket-activated)")
    return failed("virtlogd is neither running nor socket-activated")


@CHECKS.check("libvirt.connect", "libvirt-python connects to the QEMU driver",
              hint="Check the daemon's log; over SSH the user needs sudo or membership of the libvirt group",
              requires=("libvirt.daemon",))
def connect(facts: HostFacts, profile: Profile) -> Outcome:
    lv = facts.get("libvirt", {})
    if not lv.get("connected"):
        if lv.get("uri", "").startswith("qemu+ext"):  # the URI carries a local helper script's path: the error names the host
            return failed(lv.get("error", "not attempted"), stderr=lv.get("stderr", ""))
        return failed(f"cannot connect to {lv.get('uri', 'libvirt')}: {lv.get('error', 'not attempted')}")
    return passed(f"connected to {lv['uri']} (libvirt {lv.get('lib_version')}, QEMU {lv.get('hypervisor_version', '?')}) "
                  f"in {lv.get('connect_s', 0):.2f} s")


@CHECKS.check("libvirt.versions", "libvirt and QEMU versions meet the profile's floors (default: nova's)",
              hint="Upgrade libvirt/QEMU (the default floors are OpenStack nova's: libvirt >= 8.0.0 and QEMU >= 6.2.0 "
                   "required, >= 10.0.0 / 8.2.2 recommended); a profile's min_versions / warn_versions override them",
              requires=("libvirt.connect",))
def versions(facts: HostFacts, profile: Profile) -> Outcome:
    lv = facts.get("libvirt", {})
    have = {"libvirt": lv.get("lib_version", ""), "qemu": lv.get("hypervisor_version", "")}
    # libvirt's own x.y.z numbers, not package versions: both orders agree on them; the family's when known
    manager = package_manager_of(facts) or "rpm"

    def below(floors: dict[str, str]) -> list[str]:
        return [f"{k} {have[k]} < {floors[k]}" for k in have
                if floors.get(k) and have[k] and not at_least(have[k], floors[k], manager)]

    desc = f"libvirt {have['libvirt']}, QEMU {have['qemu'] or 'unknown'}"
    floors = ", ".join(f"{k} >= {v}" for k, v in sorted(profile.min_versions.items()) if k in have)
    low = below(profile.min_versions)
    if low:
        return failed(f"{desc}: below the profile's minimum: {'; '.join(low)}", level=Level.FAIL)
    soon = below(profile.warn_versions)
    if soon:
        return failed(f"{desc}: meets the minimum ({floors or 'none'}) but is below the recommended "
                      f"{'; '.join(soon)}", level=Level.WARN)
    return passed(f"{desc} (minimum {floors or 'none'})")


def kvm_arch(facts: HostFacts) -> str:
    """The architecture KVM guests have on this host: its own (libvirt's host arch, else uname -m)."""
    arch = facts.get("libvirt", {}).get("capabilities", {}).get("host_arch") or facts.get("host", {}).get("arch")
    return str(arch or "x86_64")


def _guest_types(facts: HostFacts, arch: str = "x86_64") -> list[str]:
    for g in facts.get("libvirt", {}).get("capabilities", {}).get("guests", []):
        if g.get("arch") == arch and g.get("os_type") == "hvm":
            return list(g.get("domain_types", []))
    return []


FIRST_VM_ARCH_NOTE = ("; note: the first_vm stage boots x86_64 guests only, so on this {arch} host it cannot prove "
                      "a KVM boot (an x86_64 guest here runs emulated at best)")


@CHECKS.check("libvirt.kvm-guest", "Capabilities offer <domain type='kvm'> for guests of the host's architecture",
              hint="libvirt sees no usable KVM: check the cpu stage (/dev/kvm, modules) and restart the daemon after fixing it",
              requires=("libvirt.connect",))
def kvm_guest(facts: HostFacts, profile: Profile) -> Outcome:
    arch = kvm_arch(facts)
    types = _guest_types(facts, arch)
    note = FIRST_VM_ARCH_NOTE.format(arch=arch) if arch != "x86_64" else ""
    if "kvm" in types:
        return passed(f"{arch} hvm guests: domain types {', '.join(types)}{note}")
    return failed(f"no <domain type='kvm'> for {arch} (domain types: {', '.join(types) or 'none'}): "
                  f"could not find capabilities for arch={arch} domaintype=kvm{note}", level=profile.kvm)


@CHECKS.check("libvirt.qemu-guest", "Capabilities offer emulated (TCG) x86_64 guests",
              hint="Install the QEMU system emulator (qemu-system-x86 / qemu-kvm)", level=Level.WARN,
              requires=("libvirt.connect",))
def qemu_guest(facts: HostFacts, profile: Profile) -> Outcome:
    types = _guest_types(facts)
    level = Level.FAIL if profile.allow_emulation else Level.WARN
    if "qemu" in types:
        return passed("x86_64 hvm guests can be emulated (domain type qemu)")
    return failed("no <domain type='qemu'> for x86_64", level=level)


@CHECKS.check("libvirt.domcapabilities", "Domain capabilities: machine, CPU modes, firmware",
              hint="libvirt cannot describe what a KVM guest may use: check the QEMU binary and libvirt's log",
              requires=("libvirt.connect",))
def domcapabilities(facts: HostFacts, profile: Profile) -> Outcome:
    caps = facts.get("libvirt", {}).get("domcapabilities", {})
    kvm = caps.get("kvm", {})
    if "error" in kvm or not kvm:
        qemu = caps.get("qemu", {})
        if "error" in qemu or not qemu:
            return failed(f"domcapabilities failed for kvm ({kvm.get('error', '?')}) and qemu ({qemu.get('error', '?')})")
        return failed(f"domcapabilities for kvm failed: {kvm.get('error', 'missing')}; TCG: machine {qemu.get('machine')}",
                      level=profile.kvm)
    modes = [m for m, ok in kvm.get("cpu_modes", {}).items() if ok]
    uefi = "UEFI loader available" if kvm.get("loader_supported") and kvm.get("loader_values") else "no UEFI loader"
    arch = facts.get("libvirt", {}).get("domcapabilities_arch", {}).get("kvm", "x86_64")
    secure = kvm.get("launch_security") or []
    return passed(f"kvm ({arch}): machine {kvm.get('machine')}, max {kvm.get('max_vcpus')} vCPUs, CPU modes "
                  f"{', '.join(modes)}, {uefi}, launch security: {', '.join(secure) or 'none'}",
                  cpu_modes=modes, usable_cpu_models=len(kvm.get("usable_cpu_models", [])), launch_security=secure)


@CHECKS.check("libvirt.default-network", "The default network is defined and active",
              hint="virsh net-start default && virsh net-autostart default (kvmqa --mode install does it)",
              requires=("libvirt.connect",))
def default_network(facts: HostFacts, profile: Profile) -> Outcome:
    nets = {n["name"]: n for n in facts.get("libvirt", {}).get("networks", [])}
    net = nets.get("default")
    if net is None:
        return failed(f"no network named default (networks: {', '.join(nets) or 'none'})")
    desc = f"default: {net['forward']} on {net['bridge'] or '?'} {net['address']}, autostart {'on' if net['autostart'] else 'off'}"
    if not net["active"]:
        return failed(desc + ", inactive")
    return passed(desc + ", active")


@CHECKS.check("libvirt.storage-pool", "An active storage pool exists",
              hint="virsh pool-define-as default dir --target /var/lib/libvirt/images && virsh pool-build default && "
                   "virsh pool-start default && virsh pool-autostart default (kvmqa --mode install does it)",
              requires=("libvirt.connect",))
def storage_pool(facts: HostFacts, profile: Profile) -> Outcome:
    pools = facts.get("libvirt", {}).get("pools", [])
    active = [p for p in pools if p["active"] and not p["name"].startswith("kvmqa-")]
    if not active:
        names = ", ".join(f"{p['name']} ({'active' if p['active'] else 'inactive'})" for p in pools) or "none"
        return failed(f"no active storage pool (pools: {names})")
    p = next((p for p in active if p["name"] == "default"), active[0])
    free_gib = p["available"] / 1024**3
    if free_gib < profile.min_free_disk_gib:
        return failed(f"pool {p['name']} ({p['type']} {p['path']}) has {free_gib:.1f} GiB free, the profile requires "
                      f"{profile.min_free_disk_gib:g} GiB", level=Level.WARN)
    return passed(f"pool {p['name']} ({p['type']} {p['path']}) active, {free_gib:.1f} GiB free")


def _size_text(n_bytes: float) -> str:
    return f"{n_bytes / 1024**3:.1f} GiB" if n_bytes >= 1024**3 else f"{n_bytes / 1024**2:.0f} MiB"


def first_vm_destination(facts: HostFacts) -> tuple[str, float | None, str]:
    """(where the first VM writes, its free bytes or None, why unknown): the pool its Workspace reuses (the
    first active dir pool kvmqa did not create), else /var/lib/libvirt/images, where it makes its own."""
    for p in facts.get("libvirt", {}).get("pools", []):
        if p.get("active") and reusable_pool(str(p.get("name", "")), str(p.get("type", ""))):
            return f"pool {p['name']} ({p.get('path')})", float(p.get("available", 0)), ""
    st = facts.get("storage", {})
    where = (f"{POOL_BASE} (no active dir pool: the first VM creates its own there; measured at "
             f"{st.get('dir') or POOL_BASE}, filesystem {st.get('path')})")
    if st.get("available_kib") is None:
        return where, None, str(st.get("error") or "no df output")
    return where, st["available_kib"] * 1024.0, ""


@CHECKS.check("libvirt.first-vm-space", "The storage pool the first VM writes to has room for its volumes",
              hint="Free space in that pool's filesystem (the first VM removes its volumes after the stage), "
                   "or give libvirt an active dir pool on a filesystem with room",
              requires=("libvirt.connect",))
def first_vm_space(facts: HostFacts, profile: Profile) -> Outcome:
    need = space_need(profile)
    where, free, unknown = first_vm_destination(facts)
    details: dict[str, Any] = {"where": where, "need_mib": need.total_mib, "disk_mib": need.disk_mib,
                               "kit_mib": need.kit_mib, "margin_mib": need.margin_mib}
    if free is None:
        return failed(f"the first VM needs {need.text()} in {where}, whose free space could not be read: "
                      f"{unknown}; the first VM runs anyway", level=Level.WARN, **details)
    details["free_mib"] = round(free / 1024**2)
    text = f"the first VM needs {need.text()} in {where}, which has {_size_text(free)} free"
    if free < need.total_mib * 1024**2:
        return failed(text, **details)
    return passed(text, **details)


# --- side by side with virt-host-validate ---------------------------------------------------------------------
KVM_ACCESS_WHY = ("virt-host-validate checks the user it runs as (root through sudo here); kvmqa's check is the login "
                  "user's own access, which only qemu:///session needs, at the profile's session_kvm_access level; "
                  "libvirt's system guests need the QEMU user's access (cpu.kvm-qemu-user-access)")
VHV_MAP = (  # (substring of the virt-host-validate line, our check id, why we may differ)
    ("hardware virtualization", "cpu.hw-virt", ""),
    ("'/dev/kvm' exists", "cpu.kvm-device", ""),
    ("/dev/kvm exists", "cpu.kvm-device", ""),
    ("'/dev/kvm' is accessible", "cpu.kvm-device-access", KVM_ACCESS_WHY),
    ("/dev/kvm is accessible", "cpu.kvm-device-access", KVM_ACCESS_WHY),
    ("/dev/vhost-net", "cpu.vhost-net", ""),
    ("/dev/net/tun", "cpu.tun", ""),
    ("cgroup '", "cpu.cgroups", "on cgroup v2 virt-host-validate flags devices/freezer/blkio, which v2 does not have as "
                                "controllers (libvirt uses eBPF for devices); kvmqa checks the v2 controllers libvirt uses"),
    ("device assignment IOMMU", "cpu.iommu-acpi", "without vmx/svm virt-host-validate cannot tell the vendor and says 'Unknown'; "
                                                  "kvmqa falls back to the CPU vendor_id"),
    ("IOMMU is enabled by kernel", "cpu.iommu-kernel", ""),
    ("secure guest", "cpu.sev", "virt-host-validate warns 'Unknown' on every non-SEV host; kvmqa reports SEV/TDX as "
                                "information, since most hosts need neither"),
)
VHV_OURS = {"PASS": {"pass"}, "FAIL": {"fail"}, "WARN": {"warn"}, "NOTE": {"info", "pass", "skip"}}


def compare_with_vhv(vhv_lines: list[dict[str, str]], ours: dict[str, str]) -> list[dict[str, str]]:
    """Pair virt-host-validate's lines with kvmqa's verdicts; `ours` maps check id -> verdict."""
    rows = []
    for line in vhv_lines:
        mapping = next(((cid, why) for key, cid, why in VHV_MAP if key in line["check"]), None)
        if mapping is None:
            rows.append({"vhv_check": line["check"], "vhv": line["verdict"], "check_id": "", "kvmqa": "",
                         "agree": "n/a", "reason": "no kvmqa counterpart"})
            continue
        cid, why = mapping
        verdict = ours.get(cid, "not run")
        agree = verdict in VHV_OURS.get(line["verdict"], set())
        reason = "" if agree else (why or _default_reason(cid, line["verdict"], verdict))
        rows.append({"vhv_check": line["check"], "vhv": line["verdict"], "check_id": cid, "kvmqa": verdict,
                     "agree": "yes" if agree else "no", "reason": reason})
    return rows


def _default_reason(cid: str, vhv: str, ours: str) -> str:
    if cid == "cpu.hw-virt" and ours == "warn":
        return "the profile lowers a missing hardware-virtualization flag to a warning"
    if ours == "info":
        return "kvmqa reports this as information under the profile"
    return f"levels differ: virt-host-validate {vhv}, kvmqa {ours}"


def vhv_comparison(facts: HostFacts, ours: dict[str, str]) -> Outcome:
    vhv = facts.get("virt_host_validate", {})
    if not vhv.get("installed"):
        return not_applicable("virt-host-validate is not installed on the target")
    rows = compare_with_vhv(vhv.get("lines", []), ours)
    disagree = [r for r in rows if r["agree"] == "no"]
    summary = f"virt-host-validate qemu: rc {vhv.get('rc')}, {len(rows)} lines, {len(disagree)} disagreements"
    if disagree:
        summary += ": " + "; ".join(f"{r['vhv_check']}: vhv {r['vhv']} vs kvmqa {r['check_id']} {r['kvmqa']} ({r['reason']})"
                                    for r in disagree)
    return info(summary, rows=rows)


@CHECKS.check("libvirt.virt-host-validate", "Where the real virt-host-validate and kvmqa disagree", level=Level.INFO)
def virt_host_validate(facts: HostFacts, profile: Profile) -> Outcome:
    from kvmqa.core.gate import evaluate_stage
    from kvmqa.stages.cpu.checks import CHECKS as CPU

    ours = {f.check_id: f.verdict.value for f in evaluate_stage(CPU, "", facts, profile)}
    return vhv_comparison(facts, ours)
