"""Stage cpu: CPU, kernel and device support for KVM guests.

Covers every QEMU check of virt-host-validate (without its cgroup v2 false alarms) and what it lacks:
kvm_intel/kvm_amd loaded, a functional /dev/kvm probe (open, API version, KVM_CREATE_VM, a vCPU run),
access for the QEMU user, nested state, hugepages, TDX and host size against the profile.
"""

from __future__ import annotations

from typing import Any

from kvmqa.checks.base import StageChecks
from kvmqa.facts import HostFacts
from kvmqa.model import Level, Outcome, failed, info, not_applicable, passed
from kvmqa.profile import Profile

CHECKS = StageChecks("cpu")

HW_VIRT_FLAGS = {"vmx": "Intel VT-x", "svm": "AMD-V"}
VENDOR_MODULE = {"vmx": "kvm_intel", "svm": "kvm_amd"}


def cpu_vendor(facts: HostFacts) -> str:
    """intel / amd / unknown: from the virt flag like virt-host-validate, else from vendor_id."""
    flags = facts.cpu_flags
    if "vmx" in flags:
        return "intel"
    if "svm" in flags:
        return "amd"
    vendor = facts.get("cpu", {}).get("vendor_id", "")
    return {"GenuineIntel": "intel", "AuthenticAMD": "amd"}.get(vendor, "unknown")


def kvm_backend_modules(facts: HostFacts) -> list[str]:
    present = set(facts.get("modules", {}).get("present", []))
    return sorted(m for m in present if m.startswith("kvm_") or m == "kvm")


@CHECKS.check("cpu.hw-virt", "CPU has hardware virtualization (vmx/svm)",
              hint="Enable VT-x/AMD-V in the BIOS/firmware; on a VM, expose it to the guest (nested virtualization, CPU mode host-passthrough)")
def hw_virt(facts: HostFacts, profile: Profile) -> Outcome:
    flags = facts.cpu_flags
    found = [f"{f} ({HW_VIRT_FLAGS[f]})" for f in HW_VIRT_FLAGS if f in flags]
    arch = facts.get("host", {}).get("arch", "")
    if arch and arch not in ("x86_64", "i686"):
        return not_applicable(f"architecture {arch}: no vmx/svm flag to look for")
    if found:
        return passed(f"/proc/cpuinfo flags include {', '.join(found)}", flags=found)
    guest = " The 'hypervisor' flag is set: this host is itself a virtual machine without nested virtualization exposed." \
        if "hypervisor" in flags else ""
    return failed(
        f"no vmx or svm flag in /proc/cpuinfo (CPU: {facts.get('cpu', {}).get('model_name') or '?'}).{guest}",
        level=profile.kvm,
    )


@CHECKS.check("cpu.kvm-module", "A hardware KVM module (kvm_intel or kvm_amd) is loaded",
              hint="modprobe kvm_intel (Intel) or kvm_amd (AMD); if it fails, check dmesg and the BIOS virtualization setting")
def kvm_module(facts: HostFacts, profile: Profile) -> Outcome:
    modules = kvm_backend_modules(facts)
    hw = [m for m in modules if m in ("kvm_intel", "kvm_amd")]
    source = facts.get("modules", {}).get("source", "none")
    if hw:
        return passed(f"{', '.join(hw)} loaded", modules=modules)
    others = [m for m in modules if m != "kvm"]
    extra = f"; the KVM backend present is {', '.join(others)}" if others else ""
    extra += "" if source != "none" else " (no /proc/modules: module loading is disabled or not visible, read /sys/module)"
    # Name what is missing: the vendor's module when the CPU flag says which, else both.
    wanted = next((VENDOR_MODULE[f] for f in VENDOR_MODULE if f in facts.cpu_flags), "")
    vendor = f"{wanted} (this CPU has {next(f for f in VENDOR_MODULE if VENDOR_MODULE[f] == wanted)})" if wanted \
        else "neither kvm_intel nor kvm_amd"
    if "kvm" not in modules:
        return failed(f"the kvm module is not loaded, nor {vendor}" + extra, level=profile.kvm, modules=modules,
                      missing=["kvm", wanted] if wanted else ["kvm"])
    if wanted:
        return failed(f"{vendor} is not loaded (kvm is)" + extra, level=profile.kvm, modules=modules, missing=[wanted])
    return failed("neither kvm_intel nor kvm_amd is loaded" + extra, level=profile.kvm, modules=modules)


@CHECKS.check("cpu.kvm-device", "Device /dev/kvm exists",
              hint="Load kvm and kvm_intel/kvm_amd and check that the BIOS has virtualization enabled")
def kvm_device(facts: HostFacts, profile: Profile) -> Outcome:
    dev = facts.device("/dev/kvm")
    if not dev.get("exists"):
        return failed("/dev/kvm does not exist", level=profile.kvm)
    if "character" not in dev.get("type", "character"):
        return failed(f"/dev/kvm is a {dev.get('type')}, not a character device", level=profile.kvm)
    return passed(f"/dev/kvm exists (mode {dev.get('mode')}, {dev.get('owner')}:{dev.get('group')})", **dev)


def _can_access(dev: dict[str, Any], uid_name: str, groups: list[str]) -> bool:
    mode = int(dev.get("mode", "0"), 8)
    if uid_name == "root":
        return True
    if dev.get("owner") == uid_name and mode & 0o600 == 0o600:
        return True
    if dev.get("group") in groups and mode & 0o060 == 0o060:
        return True
    return mode & 0o006 == 0o006


SESSION_ONLY = ("; only qemu:///session guests run as the login user: libvirt's system guests run as the QEMU user "
                "(cpu.kvm-qemu-user-access)")


@CHECKS.check("cpu.kvm-device-access", "/dev/kvm is readable and writable by the login user (qemu:///session)",
              hint="Needed only for qemu:///session guests: add the login user to the group owning /dev/kvm "
                   "(usermod -aG kvm USER) or make /dev/kvm mode 0666 via udev; the profile's session_kvm_access sets "
                   "how much it matters",
              requires=("cpu.kvm-device",))
def kvm_device_access(facts: HostFacts, profile: Profile) -> Outcome:
    """The login user's own access (the QEMU user's is cpu.kvm-qemu-user-access), at the profile's
    session_kvm_access level: reached as root it always holds."""
    dev = facts.device("/dev/kvm")
    where = f"mode {dev.get('mode')}, {dev.get('owner')}:{dev.get('group')}"
    probe = facts.get("probe", {})
    login = probe.get("sudo_user")
    if login and login != "root":
        user_probe = facts.get("kvm_probe_user", {})
        if user_probe.get("open", "").startswith("error"):
            return failed(f"login user {login} cannot open /dev/kvm: {probe_error(user_probe['open'])} ({where}){SESSION_ONLY}",
                          level=profile.session_kvm_access, user=login)
        if user_probe.get("open") == "ok":
            return passed(f"login user {login} opened /dev/kvm")
    user, groups = probe.get("user", ""), probe.get("groups", [])
    if _can_access(dev, user, groups):
        return passed(f"{user} can read and write /dev/kvm ({where})")
    return failed(f"{user} cannot read and write /dev/kvm ({where}, groups {' '.join(groups) or '-'}){SESSION_ONLY}",
                  level=profile.session_kvm_access, user=user)


@CHECKS.check("cpu.kvm-qemu-user-access", "The QEMU user libvirt runs guests as can open /dev/kvm",
              hint="chgrp kvm /dev/kvm && chmod 0660 /dev/kvm, and persist it with a udev rule: "
                   "KERNEL==\"kvm\", GROUP=\"kvm\", MODE=\"0660\" (the QEMU user must be in group kvm)",
              requires=("cpu.kvm-device",))
def kvm_qemu_user_access(facts: HostFacts, profile: Profile) -> Outcome:
    probe = facts.get("kvm_probe_qemu_user")
    dev = facts.device("/dev/kvm")
    conf = facts.get("libvirt_conf", {})
    qemu_user = conf.get("qemu_user") or (probe or {}).get("as_user")
    if conf.get("qemu_conf", {}).get("user") == "root":
        return passed("qemu.conf runs QEMU as root")
    if not probe:
        if not qemu_user:
            return not_applicable("no QEMU user (libvirt-qemu/qemu) on the host: libvirt is probably not installed")
        return not_applicable(f"not measured: the probe needs root and runuser to open /dev/kvm as {qemu_user}")
    state = probe.get("open", "")
    if state == "ok":
        return passed(f"{probe.get('as_user')} opened /dev/kvm and created a VM ({probe.get('create_vm', '?')})")
    return failed(f"{probe.get('as_user')} (QEMU's user) cannot open /dev/kvm: {probe_error(state)} "
                  f"(mode {dev.get('mode')}, {dev.get('owner')}:{dev.get('group')}); KVM guests started by libvirt will fail",
                  level=profile.kvm, qemu_user=probe.get("as_user"))


def probe_error(state: str) -> str:
    """The probe's 'error:Permission_denied' as 'Permission denied'."""
    return state.removeprefix("error:").replace("_", " ")


def _kvm_probe_state(facts: HostFacts) -> dict[str, Any]:
    return facts.get("kvm_probe", {})


@CHECKS.check("cpu.kvm-api-version", "KVM_GET_API_VERSION returns 12", hint="The kernel's KVM is broken or too old",
              requires=("cpu.kvm-device",))
def kvm_api_version(facts: HostFacts, profile: Profile) -> Outcome:
    p = _kvm_probe_state(facts)
    if not p.get("measured"):
        return not_applicable(f"not measured: {p.get('reason', 'no probe result')}")
    if p.get("open", "").startswith("error"):
        return failed(f"opening /dev/kvm failed: {probe_error(p['open'])} (as uid {p.get('user')})", level=profile.kvm)
    version = p.get("api_version")
    if isinstance(version, int):
        if version == 12:
            return passed(f"/dev/kvm opened; KVM_GET_API_VERSION = 12 (via {p.get('method')})")
        return failed(f"KVM_GET_API_VERSION = {version}, expected 12", level=profile.kvm)
    return not_applicable(f"not measured via {p.get('method')}: {version}")


@CHECKS.check("cpu.kvm-create-vm", "KVM_CREATE_VM succeeds", hint="Check dmesg for KVM errors; the module may be loaded without hardware support",
              requires=("cpu.kvm-device",))
def kvm_create_vm(facts: HostFacts, profile: Profile) -> Outcome:
    p = _kvm_probe_state(facts)
    if not p.get("measured"):
        return not_applicable(f"not measured: {p.get('reason', 'no probe result')}")
    state = p.get("create_vm")
    if state == "ok":
        return passed(f"KVM_CREATE_VM succeeded (via {p.get('method')})")
    if state is None:
        return failed(f"KVM_CREATE_VM was not reached (open: {p.get('open')})", level=profile.kvm)
    return failed(f"KVM_CREATE_VM failed: {state}", level=profile.kvm)


@CHECKS.check("cpu.kvm-vcpu-run", "A vCPU runs guest code (KVM_RUN: OUT then HLT)",
              hint="KVM accepts VMs but cannot run guest code: check dmesg, the KVM backend module and firmware settings",
              requires=("cpu.kvm-create-vm",))
def kvm_vcpu_run(facts: HostFacts, profile: Profile) -> Outcome:
    p = _kvm_probe_state(facts)
    state = str(p.get("vcpu_run", ""))
    if state.startswith("not-measured") or not state:
        return not_applicable(f"not measured: {state.removeprefix('not-measured:') or 'no result'}")
    if state == "ok":
        return passed(f"a vCPU ran 5 bytes of real-mode code: exits {p.get('vcpu_exits')}, port {p.get('io_port')} "
                      f"value {p.get('io_value')} (this proves KVM runs trivial guest code, not that a full guest boots; "
                      "the first_vm stage boots one)")
    return failed(f"KVM_RUN did not run the guest code as expected: {state} (exits {p.get('vcpu_exits', '-')}, "
                  f"internal suberror {p.get('internal_suberror', '-')})", level=profile.kvm)


@CHECKS.check("cpu.kvm-summary", "What KVM on this host is", level=Level.INFO)
def kvm_summary(facts: HostFacts, profile: Profile) -> Outcome:
    """One line a person can read: flags, modules and the functional probe, side by side."""
    flags = facts.cpu_flags
    hw = [f for f in HW_VIRT_FLAGS if f in flags]
    p = _kvm_probe_state(facts)
    parts = [
        f"hardware virtualization flag: {', '.join(hw) if hw else 'none'}",
        f"KVM modules: {', '.join(kvm_backend_modules(facts)) or 'none'}",
        f"/dev/kvm: {'present' if facts.device('/dev/kvm').get('exists') else 'missing'}",
        f"open: {p.get('open', 'not measured')}",
        f"KVM_CREATE_VM: {p.get('create_vm', 'not measured')}",
        f"vCPU run: {p.get('vcpu_run', 'not measured')}",
    ]
    qemu = facts.get("kvm_probe_qemu_user")
    if qemu:
        parts.append(f"as {qemu.get('as_user')}: {qemu.get('open')}")
    if not hw and p.get("create_vm") == "ok":
        parts.append("KVM is provided without hardware virtualization flags: whether full guests run is only proven by "
                     "the first_vm stage")
    return info("; ".join(parts))


@CHECKS.check("cpu.nested", "Nested virtualization state", level=Level.INFO,
              hint="Set options kvm_intel nested=1 (or kvm_amd nested=1) in /etc/modprobe.d and reload the module")
def nested(facts: HostFacts, profile: Profile) -> Outcome:
    params = facts.get("kvm_params", {})
    values = {k: v for k, v in params.items() if k.endswith(".nested")}
    level = Level.FAIL if profile.nested == "required" else Level.INFO
    if not values:
        msg = "no nested parameter (kvm_intel/kvm_amd not loaded)"
        return failed(msg, level=level) if profile.nested == "required" else info(msg)
    on = {k: v for k, v in values.items() if v in ("Y", "1", "y")}
    desc = ", ".join(f"{k}={v}" for k, v in sorted(values.items()))
    if on:
        if level == Level.FAIL:
            return Outcome(True, f"nested virtualization enabled ({desc})", level=Level.FAIL)
        return info(f"enabled ({desc})")
    return failed(f"nested virtualization disabled ({desc})", level=level)


@CHECKS.check("cpu.vhost-net", "Device /dev/vhost-net exists", level=Level.WARN,
              hint="Load the 'vhost_net' module to improve performance of virtio networking")
def vhost_net(facts: HostFacts, profile: Profile) -> Outcome:
    dev = facts.device("/dev/vhost-net")
    return passed("/dev/vhost-net exists") if dev.get("exists") else failed("/dev/vhost-net does not exist")


@CHECKS.check("cpu.tun", "Device /dev/net/tun exists", hint="Load the 'tun' module to enable networking for QEMU guests")
def tun(facts: HostFacts, profile: Profile) -> Outcome:
    dev = facts.device("/dev/net/tun")
    return passed("/dev/net/tun exists") if dev.get("exists") else failed("/dev/net/tun does not exist")


V1_CONTROLLERS = ("memory", "cpu", "cpuacct", "cpuset", "devices", "blkio")
# cgroup v2 has no devices, freezer, cpuacct or blkio controllers: devices is eBPF, cpuacct is in cpu, blkio is io.
V2_CONTROLLERS = ("memory", "cpu", "cpuset", "io")


@CHECKS.check("cpu.cgroups", "cgroup controllers libvirt uses are available", level=Level.WARN,
              hint="Enable the missing controllers in the kernel config or mount/enable them (cgroup v2: cgroup.subtree_control)")
def cgroups(facts: HostFacts, profile: Profile) -> Outcome:
    cg = facts.get("cgroups", {})
    version = cg.get("version", "none")
    if version == "none":
        return failed("no cgroup filesystem is mounted")
    if version == "v2":
        have = set(cg.get("v2_controllers", []))
        missing = [c for c in V2_CONTROLLERS if c not in have]
        note = " (cgroup v2: devices, freezer, cpuacct and blkio are not v2 controllers; their absence is not a problem)"
        if missing:
            return failed(f"cgroup v2 lacks controllers {', '.join(missing)}{note}", missing=missing)
        return passed(f"cgroup v2 with {', '.join(V2_CONTROLLERS)}{note}")
    have = set(cg.get("v1_controllers", []))
    missing = [c for c in V1_CONTROLLERS if c not in have]
    if missing:
        return failed(f"cgroup {version} lacks controllers {', '.join(missing)}", missing=missing)
    return passed(f"cgroup {version} with {', '.join(V1_CONTROLLERS)} mounted")


@CHECKS.check("cpu.iommu-acpi", "Firmware exposes an IOMMU (ACPI DMAR/IVRS) for device assignment", level=Level.WARN,
              hint="Enable VT-d / AMD-Vi (IOMMU) in the BIOS/firmware")
def iommu_acpi(facts: HostFacts, profile: Profile) -> Outcome:
    level = Level.FAIL if profile.iommu == "required" else Level.WARN
    tables = set(facts.get("iommu", {}).get("acpi_tables", []))
    vendor = cpu_vendor(facts)
    table = {"intel": "DMAR", "amd": "IVRS"}.get(vendor)
    if table is None:
        return failed("unknown CPU vendor: cannot tell which ACPI table (DMAR/IVRS) to expect", level=level)
    if table in tables:
        return passed(f"ACPI {table} table present ({vendor} IOMMU)")
    return failed(f"no ACPI {table} table: IOMMU disabled in firmware or not supported by this platform", level=level)


@CHECKS.check("cpu.iommu-kernel", "The kernel has IOMMU groups (IOMMU enabled by the kernel)", level=Level.WARN,
              hint="Add intel_iommu=on (Intel) to the kernel command line; AMD enables it by default (amd_iommu=on is not a valid value)")
def iommu_kernel(facts: HostFacts, profile: Profile) -> Outcome:
    level = Level.FAIL if profile.iommu == "required" else Level.WARN
    groups = facts.get("iommu", {}).get("iommu_groups")
    cmdline = facts.get("kernel", {}).get("cmdline", "")
    if groups is None:
        return failed("IOMMU support is not compiled into the kernel (/sys/kernel/iommu_groups absent)", level=level)
    if groups > 0:
        passthrough = " (iommu=pt: passthrough mode for host devices)" if "iommu=pt" in cmdline.split() else ""
        return passed(f"{groups} IOMMU groups{passthrough}")
    return failed("IOMMU appears disabled in the kernel: no IOMMU groups", level=level, cmdline=cmdline)


@CHECKS.check("cpu.sev", "AMD SEV / SEV-ES / SEV-SNP (confidential guests)", level=Level.INFO,
              hint="Enable SEV in the firmware and load kvm_amd with sev=1 (sev_es=1, sev_snp=1)")
def sev(facts: HostFacts, profile: Profile) -> Outcome:
    if cpu_vendor(facts) != "amd":
        return not_applicable("not an AMD host")
    params = facts.get("kvm_params", {})
    flags = facts.cpu_flags
    state = {k: params.get(f"kvm_amd.{k}", "absent") for k in ("sev", "sev_es", "sev_snp")}
    dev = facts.device("/dev/sev").get("exists", False)
    desc = ", ".join(f"{k}={v}" for k, v in state.items()) + f", /dev/sev {'present' if dev else 'absent'}, " + \
        f"cpu flags: {' '.join(f for f in ('sev', 'sev_es', 'sev_snp') if f in flags) or 'none'}"
    return info(desc, **state)


@CHECKS.check("cpu.tdx", "Intel TDX (confidential guests)", level=Level.INFO,
              hint="Enable TDX in the firmware and load kvm_intel with tdx=Y (kernel 6.16 or newer)")
def tdx(facts: HostFacts, profile: Profile) -> Outcome:
    if cpu_vendor(facts) != "intel":
        return not_applicable("not an Intel host")
    param = facts.get("kvm_params", {}).get("kvm_intel.tdx", "absent")
    firmware = facts.get("secure_guest", {}).get("tdx_firmware", "absent")
    flags = facts.cpu_flags
    return info(f"kvm_intel.tdx={param}, /sys/firmware/tdx {firmware}, cpu flag tdx_host_platform "
                f"{'present' if 'tdx_host_platform' in flags else 'absent'}")


@CHECKS.check("cpu.hugepages", "Hugepages for guest memory", level=Level.INFO,
              hint="Reserve hugepages: sysctl vm.nr_hugepages=N (persist in /etc/sysctl.d) or hugepages=N on the kernel command line")
def hugepages(facts: HostFacts, profile: Profile) -> Outcome:
    mem = facts.get("memory", {})
    thp = facts.get("hugepages", {}).get("thp", "?")
    total, free, size = mem.get("hugepages_total", 0), mem.get("hugepages_free", 0), mem.get("hugepage_size_kib", 0)
    desc = f"{total} hugepages of {size} KiB reserved ({free} free); transparent hugepages: {thp}"
    if profile.hugepages_min:
        if total >= profile.hugepages_min:
            return Outcome(True, desc, level=Level.FAIL)
        return failed(f"{desc}; the profile requires {profile.hugepages_min}", level=Level.FAIL)
    return info(desc)


@CHECKS.check("cpu.host-cpus", "Host has enough CPUs for the profile", hint="Use a bigger host or lower min_cpus in the profile")
def host_cpus(facts: HostFacts, profile: Profile) -> Outcome:
    count = facts.get("cpu", {}).get("count", 0)
    if count >= profile.min_cpus:
        return passed(f"{count} CPUs (profile minimum {profile.min_cpus})")
    return failed(f"{count} CPUs, the profile requires at least {profile.min_cpus}")


@CHECKS.check("cpu.host-memory", "Host has enough memory for the profile", hint="Use a bigger host or lower min_memory_gib in the profile")
def host_memory(facts: HostFacts, profile: Profile) -> Outcome:
    gib = facts.get("memory", {}).get("total_kib", 0) / 1024 / 1024
    if gib >= profile.min_memory_gib:
        return passed(f"{gib:.1f} GiB memory (profile minimum {profile.min_memory_gib:g} GiB)")
    return failed(f"{gib:.1f} GiB memory, the profile requires at least {profile.min_memory_gib:g} GiB")
