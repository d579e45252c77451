"""Stage cpu: CPU, kernel and device support for KVM guests.

Covers every QEMU check of virt-host-validate (without its cgroup v2 false alarms) and what it lacks:
kvm_intel/kvm_amd loaded, a functional /dev/kvm probe (open, API version, KVM_CREATE_VM, a vCPU run),
access for the QEMU user, nested state, hugepages, TDX and host size against the profile.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

from kvmqa.config.profile import Profile
from kvmqa.core.checks import StageChecks
from kvmqa.core.facts import HostFacts
from kvmqa.core.model import Level, Outcome, failed, info, not_applicable, passed
from kvmqa.gather.facts import HostInfo, Kernel, OsRelease, Probe
from kvmqa.gather.vendors import HW_KVM_MODULES, KVM_MODULE, VIRT_FLAG_VENDOR, vendor_of
from kvmqa.stages.cpu.facts import (
    Cgroups,
    CpuInfo,
    Device,
    Devices,
    Firmware,
    Hugepages,
    Iommu,
    Ksm,
    KvmParams,
    KvmProbe,
    KvmProbeQemuUser,
    KvmProbeUser,
    LibvirtConf,
    Memory,
    Modules,
    SecureGuest,
    Vulnerabilities,
)
from kvmqa.stages.host.facts import HostPackages
from kvmqa.stages.libvirt.facts import Libvirt

CHECKS = StageChecks("cpu")

HW_VIRT_FLAGS = {"vmx": "Intel VT-x", "svm": "AMD-V"}
VENDOR_MODULE = {flag: KVM_MODULE[vendor] for flag, vendor in VIRT_FLAG_VENDOR.items()}  # vmx -> kvm_intel


def cpu_vendor(facts: HostFacts) -> str:
    """intel / amd / unknown: from the virt flag like virt-host-validate, else from vendor_id."""
    cpu = facts.view(CpuInfo)
    for flag, vendor in VIRT_FLAG_VENDOR.items():
        if flag in cpu.flags:
            return vendor
    return vendor_of(cpu.vendor_id) or "unknown"


def kvm_backend_modules(facts: HostFacts) -> list[str]:
    present = set(facts.view(Modules).present)
    return sorted(m for m in present if m.startswith("kvm_") or m == "kvm")


NON_X86_KVM_BUILTIN = ("aarch64", "s390x")  # KVM is usually built in there: no kvm_intel/kvm_amd to load


def host_arch(facts: HostFacts) -> str:
    return facts.view(HostInfo).arch


def is_x86(facts: HostFacts) -> bool:
    return host_arch(facts) in ("", "x86_64", "i686", "i386")


def is_vm(facts: HostFacts) -> bool:
    """The CPU says it runs under a hypervisor (the `hypervisor` cpuinfo flag)."""
    return "hypervisor" in facts.view(CpuInfo).flags


def xen_role(facts: HostFacts) -> str | None:
    """'dom0' or 'PV guest' when Xen is underneath in a way KVM cannot use; None otherwise (virt-what's
    test)."""
    fw = facts.view(Firmware)
    caps = fw.xen_capabilities
    if caps is not None and "control_d" in caps:
        return "dom0"
    guest_type = fw.hypervisor_guest_type
    if caps is not None and guest_type not in ("HVM", "PVH"):
        return "PV guest"
    if fw.hypervisor_type == "xen" and guest_type == "PV":
        return "PV guest"
    return None


@dataclass(frozen=True)
class FirmwareLock:
    state: str  # locked | enabled | unknown | n/a
    text: str  # what was read and what it means
    source: str  # msr | kernel | none


def firmware_lock(facts: HostFacts) -> FirmwareLock:
    """Whether the firmware turned virtualization off and locked it: the MSR as root, else the kernel's
    report."""
    if not is_x86(facts):
        return FirmwareLock("n/a", f"architecture {host_arch(facts)} has no VT-x/AMD-V lock", "none")
    cpu = facts.view(CpuInfo)
    vendor = vendor_of(cpu.vendor_id)
    fw = facts.view(Firmware)
    if not fw.reported:
        return FirmwareLock("unknown", "the probe did not report firmware facts (an older probe)", "none")
    if fw.msr == "ok" and fw.msr_int is not None and vendor:
        return _lock_from_msr(vendor, fw.msr_int)
    attempt = "not attempted" if fw.msr is None else fw.msr
    why = f"MSR not read ({attempt}: {fw.msr_reason or 'no reason given'})"
    lines = fw.dmesg_lines or ()
    bad = [
        x for x in lines if re.search(r"disabled by bios|vmx \(outside txt\) disabled|svm disabled", x, re.I)
    ]
    if bad:
        return FirmwareLock("locked", f"{why}; the kernel's log says: {bad[-1]}", "kernel")
    flags = cpu.flags
    has_flag = bool(flags & set(HW_VIRT_FLAGS))
    if fw.dmesg == "ok":
        tail = "" if has_flag else "; the CPU lists no vmx/svm flag"
        return FirmwareLock(
            "enabled", f"{why}; used the kernel's log instead: no 'disabled by BIOS' message{tail}", "kernel"
        )
    module = KVM_MODULE.get(vendor, "")
    if module and module in kvm_backend_modules(facts):
        return FirmwareLock(
            "enabled",
            f"{why}; the kernel log is unreadable; used the loaded {module} instead: the kernel "
            "refuses to load it when the firmware disabled virtualization",
            "kernel",
        )
    if vendor == "intel" and "vmx" in flags and cpu.vmx_flags:
        return FirmwareLock(
            "enabled",
            f"{why}; the kernel log is unreadable; used /proc/cpuinfo instead: the kernel "
            "lists 'vmx flags', so VMX is usable",
            "kernel",
        )
    return FirmwareLock(
        "unknown",
        f"{why}; the kernel log is unreadable (dmesg_restrict? run as root) and /proc/cpuinfo "
        "does not settle it",
        "none",
    )


def _lock_from_msr(vendor: str, value: int) -> FirmwareLock:
    if vendor == "intel":
        locked, outside_smx = bool(value & 0x1), bool(value & 0x4)
        desc = (
            f"read IA32_FEATURE_CONTROL (MSR 0x3a) = {value:#x}: lock bit 0 {'set' if locked else 'clear'}, "
            f"VMX-outside-SMX bit 2 {'set' if outside_smx else 'clear'}"
        )
        if locked and not outside_smx:
            return FirmwareLock("locked", f"{desc}: VT-x is disabled and locked by the firmware", "msr")
        return FirmwareLock(
            "enabled", desc + (": VT-x enabled" if locked else ": unlocked, the kernel enables VT-x"), "msr"
        )
    svmdis, lock = bool(value & 0x10), bool(value & 0x8)
    desc = (
        f"read VM_CR (MSR 0xc0010114) = {value:#x}: SVMDIS bit 4 {'set' if svmdis else 'clear'}, "
        f"lock bit 3 {'set' if lock else 'clear'}"
    )
    if svmdis:
        return FirmwareLock("locked", f"{desc}: AMD-V is disabled by the firmware", "msr")
    return FirmwareLock("enabled", desc + ": AMD-V not disabled", "msr")


@CHECKS.check(
    "cpu.hw-virt",
    "CPU has hardware virtualization (vmx/svm) that KVM can use",
    hint="Enable VT-x/AMD-V in the BIOS/firmware; on a VM, expose it to the guest (nested virtualization, "
    "CPU mode host-passthrough)",
)
def hw_virt(facts: HostFacts, profile: Profile) -> Outcome:
    flags = facts.view(CpuInfo).flags
    found = [f"{f} ({HW_VIRT_FLAGS[f]})" for f in HW_VIRT_FLAGS if f in flags]
    arch = host_arch(facts)
    if arch == "s390x":
        if "sie" in flags:
            return passed("s390x: the CPU lists the SIE facility (sie)")
        return failed(
            "s390x: no 'sie' facility in /proc/cpuinfo features: this machine cannot run KVM guests",
            level=profile.kvm,
        )
    if not is_x86(facts):
        return not_applicable(
            f"architecture {arch}: no vmx/svm flag to look for (KVM is judged by cpu.kvm-module and "
            "the /dev/kvm probe)"
        )
    xen = xen_role(facts)
    if xen:
        return failed(
            f"this host is a Xen {xen}: {', '.join(found) or 'no vmx/svm'} in /proc/cpuinfo, but KVM cannot "
            "use hardware virtualization under Xen",
            level=profile.kvm,
            hint="Run KVM on bare metal or in an HVM guest with nested virtualization, not in a Xen dom0/PV "
            "guest",
        )
    if found:
        return passed(f"/proc/cpuinfo flags include {', '.join(found)}", flags=found)
    lock = firmware_lock(facts)
    model = facts.view(CpuInfo).model_name or "?"
    hint: str | None
    if lock.state == "locked":
        why, hint = (
            "turn it on in the firmware",
            "Enable VT-x/AMD-V in the BIOS/UEFI setup (it is disabled and locked)",
        )
    elif is_vm(facts):
        why = (
            "this is a VM without nested virtualization (the 'hypervisor' flag is set: this host is itself a "
            "virtual machine)"
        )
        hint = "Expose VT-x/AMD-V to this VM: nested=1 on its host and CPU mode host-passthrough"
    elif lock.state == "enabled":
        why, hint = "this CPU has none", "Use a CPU with VT-x or AMD-V"
    else:
        why, hint = (
            "this CPU has none, or the firmware turned it off (could not tell: see cpu.virt-firmware-lock)",
            None,
        )
    return failed(
        f"no vmx or svm flag in /proc/cpuinfo (CPU: {model}): {why}",
        level=profile.kvm,
        hint=hint,
        firmware_lock=lock.state,
    )


@CHECKS.check(
    "cpu.virt-firmware-lock",
    "Virtualization is not disabled and locked by the firmware",
    hint="Enable Intel VT-x / AMD SVM in the BIOS/UEFI setup and power-cycle; the kernel cannot undo the "
    "lock",
)
def virt_firmware_lock(facts: HostFacts, profile: Profile) -> Outcome:
    lock = firmware_lock(facts)
    if lock.state == "n/a":
        return not_applicable(lock.text)
    if lock.state == "locked":
        return failed(lock.text, level=profile.kvm, source=lock.source)
    if lock.state == "unknown":
        return not_applicable(f"could not tell: {lock.text}", source=lock.source)
    return passed(lock.text, source=lock.source)


@CHECKS.check(
    "cpu.kvm-module",
    "A KVM module for this CPU is loaded (kvm_intel/kvm_amd; kvm on aarch64/s390x)",
    hint="modprobe kvm_intel (Intel) or kvm_amd (AMD); if it fails, check dmesg and the BIOS virtualization "
    "setting",
)
def kvm_module(facts: HostFacts, profile: Profile) -> Outcome:
    modules = kvm_backend_modules(facts)
    hw = [m for m in modules if m in HW_KVM_MODULES]
    source = facts.view(Modules).source
    arch = host_arch(facts)
    if arch in NON_X86_KVM_BUILTIN:
        if "kvm" in modules or facts.view(Devices).kvm.exists:
            how = "listed in /sys/module" if "kvm" in modules else "/dev/kvm exists"
            return passed(
                f"{arch}: KVM is present ({how}; built in or loaded, no vendor module needed)",
                modules=modules,
            )
        return failed(
            f"{arch}: no kvm in /sys/module and no /dev/kvm",
            level=profile.kvm,
            modules=modules,
            hint="modprobe kvm, or use a kernel built with CONFIG_KVM",
        )
    if hw:
        return passed(f"{', '.join(hw)} loaded", modules=modules)
    others = [m for m in modules if m != "kvm"]
    extra = f"; the KVM backend present is {', '.join(others)}" if others else ""
    extra += (
        ""
        if source != "none"
        else " (no /proc/modules: module loading is disabled or not visible, read /sys/module)"
    )
    # Name what is missing: the vendor's module when the CPU flag says which, else both.
    wanted = next((VENDOR_MODULE[f] for f in VENDOR_MODULE if f in facts.view(CpuInfo).flags), "")
    vendor = (
        f"{wanted} (this CPU has {next(f for f in VENDOR_MODULE if VENDOR_MODULE[f] == wanted)})"
        if wanted
        else "neither kvm_intel nor kvm_amd"
    )
    if "kvm" not in modules:
        return failed(
            f"the kvm module is not loaded, nor {vendor}" + extra,
            level=profile.kvm,
            modules=modules,
            missing=["kvm", wanted] if wanted else ["kvm"],
        )
    if wanted:
        return failed(
            f"{vendor} is not loaded (kvm is)" + extra, level=profile.kvm, modules=modules, missing=[wanted]
        )
    return failed("neither kvm_intel nor kvm_amd is loaded" + extra, level=profile.kvm, modules=modules)


@CHECKS.check(
    "cpu.kvm-device",
    "Device /dev/kvm exists",
    hint="Load kvm and kvm_intel/kvm_amd and check that the BIOS has virtualization enabled",
)
def kvm_device(facts: HostFacts, profile: Profile) -> Outcome:
    dev = facts.view(Devices).kvm
    if not dev.exists:
        return failed("/dev/kvm does not exist", level=profile.kvm)
    if dev.type is not None and "character" not in dev.type:
        return failed(f"/dev/kvm is a {dev.type}, not a character device", level=profile.kvm)
    return passed(f"/dev/kvm exists ({_where(dev)})", **dataclasses.asdict(dev))


def _where(dev: Device) -> str:
    return f"mode {dev.mode}, {dev.owner}:{dev.group}"


def _can_access(dev: Device, uid_name: str, groups: list[str]) -> bool:
    mode = int("0" if dev.mode is None else dev.mode, 8)
    if uid_name == "root":
        return True
    if dev.owner == uid_name and mode & 0o600 == 0o600:
        return True
    if dev.group in groups and mode & 0o060 == 0o060:
        return True
    return mode & 0o006 == 0o006


SESSION_ONLY = (
    "; only qemu:///session guests run as the login user: libvirt's system guests run as the QEMU user "
    "(cpu.kvm-qemu-user-access)"
)


@CHECKS.check(
    "cpu.kvm-device-access",
    "/dev/kvm is readable and writable by the login user (qemu:///session)",
    hint="Needed only for qemu:///session guests: add the login user to the group owning /dev/kvm "
    "(usermod -aG kvm USER) or make /dev/kvm mode 0666 via udev; the profile's session_kvm_access sets "
    "how much it matters",
    requires=("cpu.kvm-device",),
)
def kvm_device_access(facts: HostFacts, profile: Profile) -> Outcome:
    """The login user's own access (the QEMU user's is cpu.kvm-qemu-user-access), at the profile's
    session_kvm_access level: reached as root it always holds."""
    dev = facts.view(Devices).kvm
    where = _where(dev)
    probe = facts.view(Probe)
    login = probe.sudo_user
    if login and login != "root":
        opened = facts.view(KvmProbeUser).open or ""
        if opened.startswith("error"):
            return failed(
                f"login user {login} cannot open /dev/kvm: {probe_error(opened)} ({where}){SESSION_ONLY}",
                level=profile.session_kvm_access,
                user=login,
            )
        if opened == "ok":
            return passed(f"login user {login} opened /dev/kvm")
    user, groups = probe.user, list(probe.groups)
    if _can_access(dev, user, groups):
        return passed(f"{user} can read and write /dev/kvm ({where})")
    return failed(
        f"{user} cannot read and write /dev/kvm ({where}, groups {' '.join(groups) or '-'}){SESSION_ONLY}",
        level=profile.session_kvm_access,
        user=user,
    )


@CHECKS.check(
    "cpu.kvm-qemu-user-access",
    "The QEMU user libvirt runs guests as can open /dev/kvm",
    hint="chgrp kvm /dev/kvm && chmod 0660 /dev/kvm, and persist it with a udev rule: "
    'KERNEL=="kvm", GROUP="kvm", MODE="0660" (the QEMU user must be in group kvm)',
    requires=("cpu.kvm-device",),
)
def kvm_qemu_user_access(facts: HostFacts, profile: Profile) -> Outcome:
    probe = facts.view(KvmProbeQemuUser)
    conf = facts.view(LibvirtConf)
    qemu_user = conf.qemu_user or probe.as_user
    if conf.qemu_conf.user == "root":
        return passed("qemu.conf runs QEMU as root")
    if not probe.reported:
        if not qemu_user:
            return not_applicable(
                "no QEMU user (libvirt-qemu/qemu) on the host: libvirt is probably not installed"
            )
        return not_applicable(
            f"not measured: the probe needs root and runuser to open /dev/kvm as {qemu_user}"
        )
    state = probe.open or ""
    if state == "ok":
        created = "?" if probe.create_vm is None else probe.create_vm
        return passed(f"{probe.as_user} opened /dev/kvm and created a VM ({created})")
    return failed(
        f"{probe.as_user} (QEMU's user) cannot open /dev/kvm: {probe_error(state)} "
        f"({_where(facts.view(Devices).kvm)}); KVM guests started by libvirt will fail",
        level=profile.kvm,
        qemu_user=probe.as_user,
    )


def probe_error(state: str) -> str:
    """The probe's 'error:Permission_denied' as 'Permission denied'."""
    return state.removeprefix("error:").replace("_", " ")


@CHECKS.check(
    "cpu.kvm-api-version",
    "KVM_GET_API_VERSION returns 12",
    hint="The kernel's KVM is broken or too old",
    requires=("cpu.kvm-device",),
)
def kvm_api_version(facts: HostFacts, profile: Profile) -> Outcome:
    p = facts.view(KvmProbe)
    if not p.measured:
        return not_applicable(f"not measured: {_not_measured(p)}")
    if p.open is not None and p.open.startswith("error"):
        return failed(f"opening /dev/kvm failed: {probe_error(p.open)} (as uid {p.user})", level=profile.kvm)
    version = p.api_version
    if isinstance(version, int):
        if version == 12:
            return passed(f"/dev/kvm opened; KVM_GET_API_VERSION = 12 (via {p.method})")
        return failed(f"KVM_GET_API_VERSION = {version}, expected 12", level=profile.kvm)
    return not_applicable(f"not measured via {p.method}: {version}")


def _not_measured(p: KvmProbe) -> str:
    return "no probe result" if p.reason is None else p.reason


@CHECKS.check(
    "cpu.kvm-create-vm",
    "KVM_CREATE_VM succeeds",
    hint="Check dmesg for KVM errors; the module may be loaded without hardware support",
    requires=("cpu.kvm-device",),
)
def kvm_create_vm(facts: HostFacts, profile: Profile) -> Outcome:
    p = facts.view(KvmProbe)
    if not p.measured:
        return not_applicable(f"not measured: {_not_measured(p)}")
    state = p.create_vm
    if state == "ok":
        return passed(f"KVM_CREATE_VM succeeded (via {p.method})")
    if state is None:
        return failed(f"KVM_CREATE_VM was not reached (open: {p.open})", level=profile.kvm)
    return failed(f"KVM_CREATE_VM failed: {state}", level=profile.kvm)


@CHECKS.check(
    "cpu.kvm-vcpu-run",
    "A vCPU runs guest code (KVM_RUN: OUT then HLT)",
    hint="KVM accepts VMs but cannot run guest code: check dmesg, the KVM backend module and firmware "
    "settings",
    requires=("cpu.kvm-create-vm",),
)
def kvm_vcpu_run(facts: HostFacts, profile: Profile) -> Outcome:
    p = facts.view(KvmProbe)
    state = p.vcpu_run or ""
    if state.startswith("not-measured") or not state:
        return not_applicable(f"not measured: {state.removeprefix('not-measured:') or 'no result'}")
    if state == "ok" and p.mmio_addr:
        return passed(
            f"a vCPU ran 6 AArch64 instructions: exits {p.vcpu_exits}, a byte {p.mmio_value} stored to "
            f"{p.mmio_addr} (MMIO) and PSCI SYSTEM_OFF (system event {p.system_event}) (this proves KVM runs "
            "trivial guest code, not that a full guest boots; the first_vm stage boots one)"
        )
    if state == "ok":
        return passed(
            f"a vCPU ran 5 bytes of real-mode code: exits {p.vcpu_exits}, port {p.io_port} value "
            f"{p.io_value} (this proves KVM runs trivial guest code, not that a full guest boots; "
            "the first_vm stage boots one)"
        )
    exits = "-" if p.vcpu_exits is None else p.vcpu_exits
    suberror = "-" if p.internal_suberror is None else p.internal_suberror
    return failed(
        f"KVM_RUN did not run the guest code as expected: {state} (exits {exits}, "
        f"internal suberror {suberror})",
        level=profile.kvm,
    )


@CHECKS.check("cpu.kvm-summary", "What KVM on this host is", level=Level.INFO)
def kvm_summary(facts: HostFacts, profile: Profile) -> Outcome:
    """One line a person can read: flags, modules and the functional probe, side by side."""
    flags = facts.view(CpuInfo).flags
    hw = [f for f in HW_VIRT_FLAGS if f in flags]
    p = facts.view(KvmProbe)
    parts = [
        f"hardware virtualization flag: {', '.join(hw) if hw else 'none'}",
        f"KVM modules: {', '.join(kvm_backend_modules(facts)) or 'none'}",
        f"/dev/kvm: {'present' if facts.view(Devices).kvm.exists else 'missing'}",
        *(
            f"{name}: {'not measured' if value is None else value}"
            for name, value in (("open", p.open), ("KVM_CREATE_VM", p.create_vm), ("vCPU run", p.vcpu_run))
        ),
    ]
    qemu = facts.view(KvmProbeQemuUser)
    if qemu.reported:
        parts.append(f"as {qemu.as_user}: {qemu.open}")
    if not is_x86(facts) and p.create_vm == "ok":
        # no vmx/svm to expect there: KVM runs at EL2 (aarch64) or as the platform provides it
        parts.append(f"{host_arch(facts)}: KVM without x86 virtualization flags, as expected there")
    elif not hw and p.create_vm == "ok":
        parts.append(
            "KVM is provided without hardware virtualization flags: whether full guests run is only "
            "proven by "
            "the first_vm stage"
        )
    return info("; ".join(parts))


@CHECKS.check(
    "cpu.nested",
    "Nested virtualization state",
    level=Level.INFO,
    hint="Set options kvm_intel nested=1 (or kvm_amd nested=1) in /etc/modprobe.d and reload the module",
)
def nested(facts: HostFacts, profile: Profile) -> Outcome:
    values = facts.view(KvmParams).nested
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


@CHECKS.check(
    "cpu.vhost-net",
    "Device /dev/vhost-net exists",
    level=Level.WARN,
    hint="Load the 'vhost_net' module to improve performance of virtio networking",
)
def vhost_net(facts: HostFacts, profile: Profile) -> Outcome:
    exists = facts.view(Devices).vhost_net.exists
    return passed("/dev/vhost-net exists") if exists else failed("/dev/vhost-net does not exist")


@CHECKS.check(
    "cpu.tun", "Device /dev/net/tun exists", hint="Load the 'tun' module to enable networking for QEMU guests"
)
def tun(facts: HostFacts, profile: Profile) -> Outcome:
    exists = facts.view(Devices).tun.exists
    return passed("/dev/net/tun exists") if exists else failed("/dev/net/tun does not exist")


V1_CONTROLLERS = ("memory", "cpu", "cpuacct", "cpuset", "devices", "blkio")
# cgroup v2 has no devices, freezer, cpuacct or blkio controllers: devices is eBPF, cpuacct is in cpu, blkio
# is io.
V2_CONTROLLERS = ("memory", "cpu", "cpuset", "io")


@CHECKS.check(
    "cpu.cgroups",
    "cgroup controllers libvirt uses are available",
    level=Level.WARN,
    hint="Enable the missing controllers in the kernel config or mount/enable them (cgroup v2: "
    "cgroup.subtree_control)",
)
def cgroups(facts: HostFacts, profile: Profile) -> Outcome:
    cg = facts.view(Cgroups)
    version = cg.version
    if version == "none":
        return failed("no cgroup filesystem is mounted")
    if version == "v2":
        have = set(cg.v2_controllers)
        missing = [c for c in V2_CONTROLLERS if c not in have]
        note = (
            " (cgroup v2: devices, freezer, cpuacct and blkio are not v2 controllers; their absence is not a "
            "problem)"
        )
        if missing:
            return failed(f"cgroup v2 lacks controllers {', '.join(missing)}{note}", missing=missing)
        return passed(f"cgroup v2 with {', '.join(V2_CONTROLLERS)}{note}")
    have = set(cg.v1_controllers)
    missing = [c for c in V1_CONTROLLERS if c not in have]
    if missing:
        return failed(f"cgroup {version} lacks controllers {', '.join(missing)}", missing=missing)
    return passed(f"cgroup {version} with {', '.join(V1_CONTROLLERS)} mounted")


@CHECKS.check(
    "cpu.iommu-acpi",
    "Firmware exposes an IOMMU (ACPI DMAR/IVRS; IORT with an SMMU on ARM) for device assignment",
    level=Level.WARN,
    hint="Enable VT-d / AMD-Vi (IOMMU) in the BIOS/firmware",
)
def iommu_acpi(facts: HostFacts, profile: Profile) -> Outcome:
    level = Level.FAIL if profile.iommu == "required" else Level.WARN
    iommu = facts.view(Iommu)
    tables = set(iommu.acpi_tables)
    arch = host_arch(facts)
    if arch == "aarch64":
        smmus = [d for d in iommu.class_iommu if "smmu" in d.lower()]
        if "IORT" in tables and smmus:
            return passed(f"ACPI IORT table present, SMMU: {', '.join(smmus)}")
        if "IORT" in tables:
            return failed(
                "ACPI IORT table present but no SMMU found (/sys/class/iommu has no smmu)",
                level=level,
                hint="Enable the SMMU in the firmware and load arm-smmu / arm-smmu-v3",
            )
        if smmus:
            return passed(f"no ACPI IORT table (device-tree platform); SMMU: {', '.join(smmus)}")
        return failed(
            "No ACPI IORT table found and no SMMU in /sys/class/iommu",
            level=level,
            hint="Enable the SMMU (IOMMU) in the firmware",
        )
    if arch == "s390x":
        if iommu.pci_devices > 0:
            return passed(f"s390x: {iommu.pci_devices} PCI devices online (zPCI)")
        return not_applicable("s390x: no PCI devices are online")
    if arch.startswith("ppc64"):
        return passed(f"{arch}: the platform provides the IOMMU")
    vendor = cpu_vendor(facts)
    table = {"intel": "DMAR", "amd": "IVRS"}.get(vendor)
    if table is None:
        return failed("unknown CPU vendor: cannot tell which ACPI table (DMAR/IVRS) to expect", level=level)
    if table in tables:
        return passed(f"ACPI {table} table present ({vendor} IOMMU)")
    return failed(
        f"no ACPI {table} table: IOMMU disabled in firmware or not supported by this platform", level=level
    )


@CHECKS.check(
    "cpu.iommu-kernel",
    "The kernel has IOMMU groups (IOMMU enabled by the kernel)",
    level=Level.WARN,
    hint="Add intel_iommu=on (Intel) to the kernel command line; AMD enables it by default (amd_iommu=on is "
    "not a valid value)",
)
def iommu_kernel(facts: HostFacts, profile: Profile) -> Outcome:
    level = Level.FAIL if profile.iommu == "required" else Level.WARN
    groups = facts.view(Iommu).iommu_groups
    cmdline = facts.view(Kernel).cmdline
    if groups is None:
        return failed(
            "IOMMU support is not compiled into the kernel (/sys/kernel/iommu_groups absent)", level=level
        )
    if groups > 0:
        passthrough = (
            " (iommu=pt: passthrough mode for host devices)" if "iommu=pt" in cmdline.split() else ""
        )
        return passed(f"{groups} IOMMU groups{passthrough}")
    return failed("IOMMU appears disabled in the kernel: no IOMMU groups", level=level, cmdline=cmdline)


@CHECKS.check(
    "cpu.sev",
    "AMD SEV / SEV-ES / SEV-SNP (confidential guests)",
    level=Level.INFO,
    hint="Enable SEV in the firmware and load kvm_amd with sev=1 (sev_es=1, sev_snp=1)",
)
def sev(facts: HostFacts, profile: Profile) -> Outcome:
    if cpu_vendor(facts) != "amd":
        return not_applicable("not an AMD host")
    params = facts.view(KvmParams)
    flags = facts.view(CpuInfo).flags
    state = {k: params.value(f"kvm_amd.{k}", "absent") for k in ("sev", "sev_es", "sev_snp")}
    dev = facts.view(Devices).sev.exists
    desc = (
        ", ".join(f"{k}={v}" for k, v in state.items())
        + f", /dev/sev {'present' if dev else 'absent'}, "
        + f"cpu flags: {' '.join(f for f in ('sev', 'sev_es', 'sev_snp') if f in flags) or 'none'}"
    )
    return info(desc, **state)


@CHECKS.check(
    "cpu.tdx",
    "Intel TDX (confidential guests)",
    level=Level.INFO,
    hint="Enable TDX in the firmware and load kvm_intel with tdx=Y (kernel 6.16 or newer)",
)
def tdx(facts: HostFacts, profile: Profile) -> Outcome:
    if cpu_vendor(facts) != "intel":
        return not_applicable("not an Intel host")
    param = facts.view(KvmParams).intel_tdx or "absent"
    firmware = facts.view(SecureGuest).tdx_firmware or "absent"
    flags = facts.view(CpuInfo).flags
    return info(
        f"kvm_intel.tdx={param}, /sys/firmware/tdx {firmware}, cpu flag tdx_host_platform "
        f"{'present' if 'tdx_host_platform' in flags else 'absent'}"
    )


@CHECKS.check(
    "cpu.hugepages",
    "Hugepages for guest memory",
    level=Level.INFO,
    hint="Reserve hugepages: sysctl vm.nr_hugepages=N (persist in /etc/sysctl.d) or hugepages=N on the "
    "kernel command line",
)
def hugepages(facts: HostFacts, profile: Profile) -> Outcome:
    mem = facts.view(Memory)
    thp = facts.view(Hugepages).thp
    total, free, size = mem.hugepages_total, mem.hugepages_free, mem.hugepage_size_kib
    desc = f"{total} hugepages of {size} KiB reserved ({free} free); transparent hugepages: {thp}"
    if profile.hugepages_min:
        if total >= profile.hugepages_min:
            return Outcome(True, desc, level=Level.FAIL)
        return failed(f"{desc}; the profile requires {profile.hugepages_min}", level=Level.FAIL)
    return info(desc)


@CHECKS.check(
    "cpu.host-cpus",
    "Host has enough CPUs for the profile",
    hint="Use a bigger host or lower min_cpus in the profile",
)
def host_cpus(facts: HostFacts, profile: Profile) -> Outcome:
    count = facts.view(CpuInfo).count
    if count >= profile.min_cpus:
        return passed(f"{count} CPUs (profile minimum {profile.min_cpus})")
    return failed(f"{count} CPUs, the profile requires at least {profile.min_cpus}")


@CHECKS.check(
    "cpu.host-memory",
    "Host has enough memory for the profile",
    hint="Use a bigger host or lower min_memory_gib in the profile",
)
def host_memory(facts: HostFacts, profile: Profile) -> Outcome:
    gib = facts.view(Memory).total_kib / 1024 / 1024
    if gib >= profile.min_memory_gib:
        return passed(f"{gib:.1f} GiB memory (profile minimum {profile.min_memory_gib:g} GiB)")
    return failed(f"{gib:.1f} GiB memory, the profile requires at least {profile.min_memory_gib:g} GiB")


def _param_on(value: str | None) -> bool:
    return value in ("Y", "y", "1")


@CHECKS.check(
    "cpu.guest-features",
    "CPU features KVM guests need (lm, sse4_1; on Intel EPT and unrestricted guest)",
    hint="Use a CPU with these features; on Intel load kvm_intel with ept=1 unrestricted_guest=1 (on a VM, "
    "give it CPU mode host-passthrough)",
)
def guest_features(facts: HostFacts, profile: Profile) -> Outcome:
    if not is_x86(facts):
        return not_applicable(f"architecture {host_arch(facts)}: the x86 feature list does not apply")
    flags = facts.view(CpuInfo).flags
    missing = [f for f in ("lm", "sse4_1") if f not in flags]
    if missing:
        return failed(
            f"the CPU lacks {', '.join(missing)} (64-bit mode / SSE4.1): modern guests will not run",
            missing=missing,
        )
    notes = ["lm and sse4_1 present"]
    if cpu_vendor(facts) == "intel":
        params = facts.view(KvmParams)
        if params.intel_ept is None and params.intel_unrestricted_guest is None:
            notes.append("kvm_intel not loaded: EPT and unrestricted guest not measured")
            return passed("; ".join(notes))
        off = [p for p in ("ept", "unrestricted_guest") if not _param_on(params.value(f"kvm_intel.{p}"))]
        if off:
            where = (
                "a VM host (warning: the hypervisor above does not pass them)"
                if is_vm(facts)
                else "bare metal"
            )
            desc = ", ".join(f"kvm_intel.{p}={params.value(f'kvm_intel.{p}', 'absent')}" for p in off)
            return failed(
                f"{desc} on {where}: guests run slowly or not at all",
                level=Level.WARN if is_vm(facts) else None,
                off=off,
            )
        notes.append("kvm_intel ept=Y unrestricted_guest=Y")
    return passed("; ".join(notes))


MICROCODE_PACKAGES = {
    ("debian", "intel"): ("intel-microcode",),
    ("debian", "amd"): ("amd64-microcode",),
    ("el", "intel"): ("microcode_ctl",),
    ("el", "amd"): ("linux-firmware",),
}


@CHECKS.check(
    "cpu.microcode",
    "The CPU microcode package is installed",
    level=Level.WARN,
    hint="Install intel-microcode / amd64-microcode (Debian, non-free-firmware) or microcode_ctl / "
    "linux-firmware (EL) and reboot",
)
def microcode(facts: HostFacts, profile: Profile) -> Outcome:
    if not is_x86(facts):
        return not_applicable(f"architecture {host_arch(facts)}: no x86 microcode package")
    cpu = facts.view(CpuInfo)
    revision = cpu.microcode or "unknown"
    if is_vm(facts):
        return not_applicable(
            f"a virtual machine: microcode is loaded by the hypervisor's host (revision {revision})"
        )
    vendor = {"GenuineIntel": "intel", "AuthenticAMD": "amd"}.get(cpu.vendor_id)
    pk = facts.view(HostPackages)
    family = facts.view(OsRelease).family
    names = MICROCODE_PACKAGES.get((family or "", vendor or ""))
    if not names or (pk.manager or "none") == "none":
        return not_applicable(f"no microcode package known for {family or '?'} on {vendor or 'this CPU'}")
    found = {n: pk.installed[n] for n in names if n in pk.installed}
    if found:
        return passed(", ".join(f"{n} {v}" for n, v in found.items()) + f" (running revision {revision})")
    return failed(f"{' or '.join(names)} is not installed (running revision {revision})")


@CHECKS.check(
    "cpu.vulnerabilities",
    "The kernel reports no CPU vulnerability as Vulnerable",
    level=Level.WARN,
    hint="Update the CPU microcode and the kernel; check the mitigations= kernel argument",
)
def vulnerabilities(facts: HostFacts, profile: Profile) -> Outcome:
    vulns = facts.view(Vulnerabilities).by_name
    if not vulns:
        return not_applicable(
            "no /sys/devices/system/cpu/vulnerabilities (an older kernel or an older probe)"
        )
    bad = {k: v for k, v in sorted(vulns.items()) if v.startswith("Vulnerable")}
    if bad:
        return failed(
            f"{len(bad)} of {len(vulns)} vulnerable: " + "; ".join(f"{k}: {v}" for k, v in bad.items()),
            vulnerable=bad,
        )
    return passed(f"none of {len(vulns)} is Vulnerable (mitigated or not affected)")


KSM_STATES = {"0": "stopped", "1": "merging", "2": "stopped and unmerged"}


@CHECKS.check(
    "cpu.ksm",
    "KSM (kernel same-page merging) state against the lab's policy",
    level=Level.INFO,
    hint="The profile's ksm policy: echo 0 > /sys/kernel/mm/ksm/run (off: no cross-guest side channel) or "
    "echo 1 (on: memory density); persist it with ksmtuned or a tmpfiles.d entry",
)
def ksm(facts: HostFacts, profile: Profile) -> Outcome:
    k = facts.view(Ksm)
    if k.run is None:
        return not_applicable("no /sys/kernel/mm/ksm (kernel built without CONFIG_KSM, or an older probe)")
    state = KSM_STATES.get(k.run, f"run={k.run}")
    desc = f"KSM {state} (run={k.run}, pages_sharing={'?' if k.pages_sharing is None else k.pages_sharing})"
    if profile.ksm == "any":
        return info(desc + "; the profile sets no ksm policy")
    on = k.run == "1"
    if on == (profile.ksm == "on"):
        return Outcome(True, f"{desc}, as the profile's ksm: {profile.ksm} wants", level=Level.FAIL)
    return failed(f"{desc}, but the profile's ksm policy is {profile.ksm}", level=Level.FAIL)


SECURE_TYPES = {"amd": ("sev", "sev-es", "sev-snp"), "intel": ("tdx",)}


def secure_guest_state(facts: HostFacts) -> dict[str, dict[str, Any]]:
    """Per type: usable (CPU + firmware + kernel) and capacity (misc cgroup ASIDs / keys), with the
    reasons."""
    flags = facts.view(CpuInfo).flags
    params = facts.view(KvmParams)
    sg = facts.view(SecureGuest)
    misc_known = sg.misc_file is not None
    sev_dev = facts.view(Devices).sev.exists or sg.dev_sev == "present"
    # per confidential-guest type: the CPU flag, the kernel parameter, the misc capacity key, one more
    # requirement
    spec = {
        "sev": ("sev", "kvm_amd.sev", "misc.sev", ("/dev/sev", sev_dev)),
        "sev-es": ("sev_es", "kvm_amd.sev_es", "misc.sev_es", ("/dev/sev", sev_dev)),
        "sev-snp": (
            "sev_snp",
            "kvm_amd.sev_snp",
            "misc.sev_es",
            ("/dev/sev", sev_dev),
        ),  # SNP guests use SEV-ES ASIDs
        "tdx": (
            "tdx_host_platform",
            "kvm_intel.tdx",
            "misc.tdx",
            ("/sys/firmware/tdx", sg.tdx_firmware == "present"),
        ),
    }
    out: dict[str, dict[str, Any]] = {}
    for name, (flag, param, misc, (extra_name, extra_ok)) in spec.items():
        why = []
        if flag not in flags:
            why.append(f"no CPU flag {flag}")
        if not _param_on(params.value(param)):
            why.append(f"{param}={params.value(param, 'absent')}")
        if not extra_ok:
            why.append(f"no {extra_name}")
        capacity: int | None = None
        if misc_known:
            raw = sg.value(misc, "")
            capacity = int(raw) if raw.isdigit() else 0
            if capacity == 0:
                why.append(
                    f"misc.capacity {misc.split('.', 1)[1]} is {raw or 'absent'}: no ASIDs/keys left for "
                    "guests"
                )
        out[name] = {"usable": not why, "capacity": capacity, "why": why, "capacity_known": misc_known}
    return out


@CHECKS.check(
    "cpu.secure-guest-capacity",
    "Confidential guests (SEV / SEV-ES / SEV-SNP / TDX): usable and with capacity",
    level=Level.INFO,
    hint="Enable SEV/SNP or TDX in the firmware (and its ASID/key split), load kvm_amd sev=1 sev_es=1 "
    "sev_snp=1 "
    "or kvm_intel tdx=1; /sys/fs/cgroup/misc.capacity shows how many guests fit",
)
def secure_guest_capacity(facts: HostFacts, profile: Profile) -> Outcome:
    vendor = cpu_vendor(facts)
    wanted = list(profile.secure_guests)
    types = SECURE_TYPES.get(vendor, ())
    if not types and not wanted:
        return not_applicable(f"{vendor} CPU: no SEV/TDX to look for")
    state = secure_guest_state(facts)
    parts = []
    if types and all(any(w.startswith("no CPU flag") for w in state[t]["why"]) for t in types):
        parts.append(f"this CPU offers none of {', '.join(types)} (no CPU flags)")
    for t in () if parts else (types or tuple(wanted)):
        s = state[t]
        cap = (
            f", capacity {s['capacity']}"
            if s["capacity"] is not None
            else ", capacity not known (no misc cgroup)"
        )
        parts.append(f"{t}: usable{cap}" if s["usable"] else f"{t}: not usable ({'; '.join(s['why'])})")
    dom = facts.view(Libvirt).domcapabilities.get("kvm")
    if dom is not None and dom.launch_security is not None:
        parts.append(f"libvirt launchSecurity: {', '.join(dom.launch_security) or 'none'}")
    text = "; ".join(parts)
    if not wanted:
        return info(text, state=state)
    missing = [t for t in wanted if not state[t]["usable"]]
    if missing:
        return failed(
            f"the profile requires {', '.join(wanted)}; not usable: {', '.join(missing)}. {text}",
            level=Level.FAIL,
            state=state,
        )
    return Outcome(
        True, f"the profile requires {', '.join(wanted)}: {text}", {"state": state}, level=Level.FAIL
    )
