"""The cpu stage's probe sections (this folder's probe.sh) -> its facts: the CPU, kernel modules, device
nodes, KVM's parameters, cgroups, IOMMU, secure guests, memory and huge pages, the QEMU user libvirt runs,
firmware, vulnerabilities, KSM and the functional /dev/kvm probe (as root, the login user and the QEMU user).

    >>> parse({"kvm_params": (0, "/sys/module/kvm_intel/parameters/nested=Y")})["kvm_params"]
    {'kvm_intel.nested': 'Y'}

The checks read these sections as the typed views declared at the end (`facts.view(CpuInfo).flags`).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar, overload

from kvmqa.core.facts import WHOLE
from kvmqa.core.stage import Sections
from kvmqa.gather.facts import body_of, key_values


def parse(sections: Sections) -> dict[str, Any]:
    def body(name: str) -> str:
        return body_of(sections, name)

    facts: dict[str, Any] = {
        "cpu": _cpuinfo(body("cpuinfo")),
        "modules": _modules(body("modules")),
        "devices": _devices(body("devices")),
        "kvm_params": _kvm_params(body("kvm_params")),
        "cgroups": _cgroups(body("cgroups")),
        "iommu": _iommu(body("iommu")),
        "secure_guest": key_values(body("secure_guest")),
        "memory": _meminfo(body("meminfo")),
        "hugepages": _hugepages(body("hugepages")),
        "libvirt_conf": _libvirt_conf(body("libvirt_conf")),
        "kvm_probe": _kvm_probe(body("kvm_probe")),
        "firmware": _firmware(body("firmware")),
        "vulnerabilities": _sysfs_names(body("vulnerabilities")),
        "ksm": _sysfs_names(body("ksm")),
    }
    for extra in ("kvm_probe_user", "kvm_probe_qemu_user"):
        if extra in sections:
            facts[extra] = _kvm_probe(body(extra))
    return facts


def _cpuinfo(body: str) -> dict[str, Any]:
    fields: dict[str, str] = {}
    for line in body.splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            fields.setdefault(k.strip(), v.strip())
        elif line.startswith("processor_count="):
            fields["processor_count"] = line.split("=", 1)[1]
    flags = (fields.get("flags") or fields.get("Features") or fields.get("features") or "").split()
    return {
        "model_name": fields.get("model name", fields.get("cpu", "")),
        "vendor_id": fields.get("vendor_id", ""),
        "family": fields.get("cpu family", ""),
        "model": fields.get("model", ""),
        "flags": sorted(set(flags)),
        "count": int(fields.get("processor_count", "0") or 0),
        # Linux >= 5.6 lists the VMX features it can use; the line is missing when the firmware locked VMX off
        "vmx_flags": fields.get("vmx flags"),
        "microcode": fields.get("microcode", ""),
    }


def _modules(body: str) -> dict[str, Any]:
    loaded: list[str] = []
    sysmod: list[str] = []
    source = "none"
    target = loaded
    for line in body.splitlines():
        if line.startswith("source="):
            source = line.split("=", 1)[1]
        elif line == "@sysmodule":
            target = sysmod
        elif line.strip():
            target.append(line.strip())
    # /sys/module lists loaded modules and built-ins with parameters; /proc/modules only loadable ones.
    return {
        "source": source,
        "loaded": sorted(set(loaded)),
        "sys_module": sorted(set(sysmod)),
        "present": sorted(set(loaded) | set(sysmod)),
    }


def _devices(body: str) -> dict[str, Any]:
    devices: dict[str, Any] = {}
    for line in body.splitlines():
        parts = line.split("|")
        if len(parts) == 2 and parts[1] == "missing":
            devices[parts[0]] = {"exists": False}
        elif len(parts) == 5:
            devices[parts[0]] = {
                "exists": True,
                "type": parts[1],
                "mode": parts[2],
                "owner": parts[3],
                "group": parts[4],
            }
    return devices


def _kvm_params(body: str) -> dict[str, str]:
    out = {}
    for k, v in key_values(body).items():
        # /sys/module/kvm_intel/parameters/nested -> kvm_intel.nested
        m = re.match(r"/sys/module/(\w+)/parameters/(\w+)", k)
        if m:
            out[f"{m.group(1)}.{m.group(2)}"] = v
    return out


def _cgroups(body: str) -> dict[str, Any]:
    mounts = []
    v1_controllers: set[str] = set()
    v2_controllers: list[str] = []
    fstype = ""
    proc_cgroups: dict[str, bool] = {}
    in_proc = False
    for line in body.splitlines():
        if line == "@proc_cgroups":
            in_proc = True
            continue
        if in_proc:
            parts = line.split()
            if len(parts) >= 4 and not line.startswith("#"):
                proc_cgroups[parts[0]] = parts[3] == "1"
            continue
        if line.startswith("fstype="):
            fstype = line.split("=", 1)[1]
        elif line.startswith("mount="):
            typ, mnt, opts = line.split("=", 1)[1].split("|")
            mounts.append({"type": typ, "path": mnt, "options": opts})
            if typ == "cgroup":
                v1_controllers.update(
                    o for o in opts.split(",") if o in proc_cgroups or o in KNOWN_CONTROLLERS
                )
        elif "cgroup.controllers=" in line:
            k, v = line.split("=", 1)
            if k == "/sys/fs/cgroup/cgroup.controllers" or not v2_controllers:
                v2_controllers = v.split()
    if fstype == "cgroup2fs":
        version = "v2"
    elif any(m["type"] == "cgroup2" for m in mounts) and v1_controllers:
        version = "hybrid"
    elif v1_controllers:
        version = "v1"
    else:
        version = "none"
    return {
        "version": version,
        "fstype": fstype,
        "v1_controllers": sorted(v1_controllers),
        "v2_controllers": v2_controllers,
        "mounts": mounts,
        "enabled": proc_cgroups,
    }


KNOWN_CONTROLLERS = {
    "cpu",
    "cpuacct",
    "cpuset",
    "memory",
    "devices",
    "freezer",
    "blkio",
    "pids",
    "io",
    "hugetlb",
    "net_cls",
    "perf_event",
}


def _iommu(body: str) -> dict[str, Any]:
    kv = key_values(body)
    groups = kv.get("iommu_groups", "absent")
    return {
        "acpi_tables": kv.get("acpi_tables", "").split(),
        "iommu_groups": None if groups == "absent" else int(groups or 0),
        "pci_devices": int(kv.get("pci_devices", "0") or 0),
        "class_iommu": kv.get("class_iommu", "").split(),  # dmar0, ivhd0, smmu3.0x..., ...
    }


def _meminfo(body: str) -> dict[str, Any]:
    values: dict[str, int] = {}
    for line in body.splitlines():
        m = re.match(r"^(\S+):\s+(\d+)", line)
        if m:
            values[m.group(1)] = int(m.group(2))
    return {
        "total_kib": values.get("MemTotal", 0),
        "available_kib": values.get("MemAvailable", 0),
        "hugepages_total": values.get("HugePages_Total", 0),
        "hugepages_free": values.get("HugePages_Free", 0),
        "hugepage_size_kib": values.get("Hugepagesize", 0),
    }


def _hugepages(body: str) -> dict[str, Any]:
    thp = ""
    pools: dict[str, int] = {}
    for k, v in key_values(body).items():
        if k.endswith("transparent_hugepage/enabled"):
            m = re.search(r"\[(\w+)\]", v)
            thp = m.group(1) if m else v
        else:
            m = re.search(r"hugepages-(\d+kB)/nr_hugepages", k)
            if m:
                pools[m.group(1)] = int(v or 0)
    return {"thp": thp, "pools": pools}


def _kvm_probe(body: str) -> dict[str, Any]:
    kv = key_values(body)
    result: dict[str, Any] = dict(kv)
    if kv.get("method", "none") == "none":
        result["measured"] = False
        result["reason"] = kv.get("reason", "no probe result")
    else:
        result["measured"] = True
    if "api_version" in kv and kv["api_version"].isdigit():
        result["api_version"] = int(kv["api_version"])
    return result


# qemu.conf's settings the checks read (the cluster stage: the migration ports and address a peer connects to)
QEMU_CONF_LINE = re.compile(
    r"^\s*(user|group|namespaces|dynamic_ownership"
    r"|migration_port_min|migration_port_max|migration_address)\s*=\s*(.+)$"
)


def _libvirt_conf(body: str) -> dict[str, Any]:
    conf: dict[str, str] = {}
    users: dict[str, str] = {}
    groups: dict[str, list[str]] = {}
    for line in body.splitlines():
        m = QEMU_CONF_LINE.match(line)
        if m:
            conf[m.group(1)] = m.group(2).strip().strip('"')
            continue
        m = re.match(r"^(libvirt-qemu|qemu): (.*)$", line)
        if m:
            users[m.group(1)] = m.group(2)
            continue
        parts = line.split(":")
        if len(parts) == 4:
            groups[parts[0]] = [u for u in parts[3].split(",") if u]
    qemu_user = conf.get("user") or next(iter(users), "")
    return {
        "qemu_conf": conf,
        "qemu_user": qemu_user,
        "qemu_user_id": users.get(qemu_user, ""),
        "groups": groups,
    }


def _firmware(body: str) -> dict[str, Any]:
    """Xen underneath, the MSR read (or why not) and the kernel's own words about the firmware lock."""
    out: dict[str, Any] = {"dmesg_lines": []}
    for line in body.splitlines():
        key, _, value = line.partition("=")
        if key == "dmesg_line":
            out["dmesg_lines"].append(value.strip())
        elif key == "xen_capabilities":
            out["xen_capabilities"] = value.rsplit("|", 1)[0].strip()
        elif key == "/sys/hypervisor/type":
            out["hypervisor_type"] = value.strip()
        elif key == "/sys/hypervisor/guest_type":
            out["hypervisor_guest_type"] = value.strip()
        elif key in ("msr_register", "msr_module", "msr_value", "dmesg"):
            out[key] = value.strip()
        elif key == "msr":
            state, _, why = value.partition(":")
            out["msr"] = state
            out["msr_reason"] = why.strip()
    if "msr_value" in out:
        try:
            out["msr_int"] = int(out["msr_value"], 16)
        except ValueError:
            out["msr"], out["msr_reason"] = "read-error", f"unparsable value {out['msr_value']!r}"
    return out


def _sysfs_names(body: str) -> dict[str, str]:
    """`grep -H` lines `/sys/.../vulnerabilities/mds:Not affected` (or an earlier probe's `path=value`) as
    {"mds": "Not affected"}: sysfs paths hold neither ':' nor '='."""
    out: dict[str, str] = {}
    for line in body.splitlines():
        match = re.match(r"^(/sys/[^:=]+)[:=](.*)$", line)
        if match:
            out[match.group(1).rsplit("/", 1)[-1]] = match.group(2).strip()
    return out


# --- typed views: what the checks read (kvmqa.core.facts.view_of builds them from the sections above) ------


def _raw(key: str, default: Any = None) -> Any:
    """A field read from a raw key that is not a Python name (`kvm_amd.sev`, `/dev/kvm`)."""
    return field(default=default, metadata={"key": key})


class _ByRawKey:
    @overload
    def value(self, key: str) -> str | None: ...
    @overload
    def value(self, key: str, default: str) -> str: ...

    def value(self, key: str, default: str | None = None) -> str | None:
        """The field read from raw key `key` (tables of raw names); `default` when None or undeclared."""
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            if f.metadata.get("key", f.name) == key:
                got = getattr(self, f.name)
                return default if got is None else str(got)
        return default


@dataclass(frozen=True)
class CpuInfo:
    """/proc/cpuinfo's first processor, its flags and how many processors there are."""

    SECTION: ClassVar[str] = "cpu"
    model_name: str = ""
    vendor_id: str = ""
    family: str = ""
    model: str = ""
    flags: frozenset[str] = frozenset()
    count: int = 0
    vmx_flags: str | None = None  # Linux >= 5.6; missing when the firmware locked VMX off
    microcode: str = ""


@dataclass(frozen=True)
class Modules:
    """Kernel modules: loaded (/proc/modules, `source`) and present (also /sys/module: built-ins)."""

    SECTION: ClassVar[str] = "modules"
    source: str = "none"
    loaded: tuple[str, ...] = ()
    sys_module: tuple[str, ...] = ()
    present: tuple[str, ...] = ()


@dataclass(frozen=True)
class Device:
    """A device node: missing, or its file type, octal mode, owner and group."""

    exists: bool = False
    type: str | None = None
    mode: str | None = None
    owner: str | None = None
    group: str | None = None


@dataclass(frozen=True)
class Devices:
    SECTION: ClassVar[str] = "devices"
    kvm: Device = _raw("/dev/kvm", Device())
    vhost_net: Device = _raw("/dev/vhost-net", Device())
    tun: Device = _raw("/dev/net/tun", Device())
    sev: Device = _raw("/dev/sev", Device())
    vhost_vsock: Device = _raw("/dev/vhost-vsock", Device())


@dataclass(frozen=True)
class KvmParams(_ByRawKey):
    """KVM's module parameters as the kernel prints them (Y/N, 1/0); None: module or parameter absent."""

    SECTION: ClassVar[str] = "kvm_params"
    kvm_nested: str | None = _raw("kvm.nested")
    intel_nested: str | None = _raw("kvm_intel.nested")
    intel_ept: str | None = _raw("kvm_intel.ept")
    intel_unrestricted_guest: str | None = _raw("kvm_intel.unrestricted_guest")
    intel_tdx: str | None = _raw("kvm_intel.tdx")
    amd_nested: str | None = _raw("kvm_amd.nested")
    amd_sev: str | None = _raw("kvm_amd.sev")
    amd_sev_es: str | None = _raw("kvm_amd.sev_es")
    amd_sev_snp: str | None = _raw("kvm_amd.sev_snp")

    @property
    def nested(self) -> dict[str, str]:
        """kvm*.nested -> its value, for the modules that have one."""
        values = {
            "kvm.nested": self.kvm_nested,
            "kvm_intel.nested": self.intel_nested,
            "kvm_amd.nested": self.amd_nested,
        }
        return {k: v for k, v in values.items() if v is not None}


@dataclass(frozen=True)
class CgroupMount:
    type: str = ""
    path: str = ""
    options: str = ""


@dataclass(frozen=True)
class Cgroups:
    SECTION: ClassVar[str] = "cgroups"
    version: str = "none"  # v1 | v2 | hybrid | none
    fstype: str = ""
    v1_controllers: tuple[str, ...] = ()
    v2_controllers: tuple[str, ...] = ()
    mounts: tuple[CgroupMount, ...] = ()
    enabled: dict[str, bool] = field(default_factory=dict)  # /proc/cgroups


@dataclass(frozen=True)
class Iommu:
    SECTION: ClassVar[str] = "iommu"
    acpi_tables: tuple[str, ...] = ()
    iommu_groups: int | None = None  # None: /sys/kernel/iommu_groups absent
    pci_devices: int = 0
    class_iommu: tuple[str, ...] = ()  # dmar0, ivhd0, smmu3.0x..., ...


@dataclass(frozen=True)
class SecureGuest(_ByRawKey):
    """TDX firmware, /dev/sev and the misc cgroup's capacity (ASIDs / TDX keys) per secure-guest type."""

    SECTION: ClassVar[str] = "secure_guest"
    tdx_firmware: str | None = None  # "present"
    tdx_version: str | None = _raw("/sys/firmware/tdx/version")
    dev_sev: str | None = None
    dev_tdx_guest: str | None = None
    misc_file: str | None = None  # the misc.capacity file read; None: no misc cgroup
    misc_sev: str | None = _raw("misc.sev")
    misc_sev_es: str | None = _raw("misc.sev_es")
    misc_tdx: str | None = _raw("misc.tdx")


@dataclass(frozen=True)
class Memory:
    """/proc/meminfo's totals (KiB) and its hugepage pool of the default size."""

    SECTION: ClassVar[str] = "memory"
    total_kib: int = 0
    available_kib: int = 0
    hugepages_total: int = 0
    hugepages_free: int = 0
    hugepage_size_kib: int = 0


@dataclass(frozen=True)
class Hugepages:
    SECTION: ClassVar[str] = "hugepages"
    thp: str = "?"  # transparent hugepages: always | madvise | never; "?" when not reported
    pools: dict[str, int] = field(default_factory=dict)  # "2048kB" -> nr_hugepages


@dataclass(frozen=True)
class QemuConf:
    """/etc/libvirt/qemu.conf's settings kvmqa reads (None: not set there)."""

    user: str | None = None
    group: str | None = None
    namespaces: str | None = None
    dynamic_ownership: str | None = None


@dataclass(frozen=True)
class LibvirtConf:
    """The user libvirt runs QEMU as (qemu.conf, else libvirt-qemu or qemu), its `id`, groups kvm, libvirt."""

    SECTION: ClassVar[str] = "libvirt_conf"
    qemu_conf: QemuConf = QemuConf()
    qemu_user: str = ""
    qemu_user_id: str = ""
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class Firmware:
    """Xen underneath, the firmware's virtualization lock MSR (or why not read) and the kernel's words."""

    SECTION: ClassVar[str] = "firmware"
    dmesg_lines: tuple[str, ...] | None = None  # None: no firmware section (an older probe)
    xen_capabilities: str | None = None  # None: no /proc/xen/capabilities
    hypervisor_type: str = ""
    hypervisor_guest_type: str = ""
    msr_register: str | None = None
    msr_module: str | None = None
    msr: str | None = None  # ok | not-x86 | not-root | no-device | read-error
    msr_reason: str | None = None
    msr_value: str | None = None
    msr_int: int | None = None
    dmesg: str | None = None  # ok | unreadable

    @property
    def reported(self) -> bool:
        """The probe reported firmware facts (an older probe has no such section)."""
        return self != Firmware()


@dataclass(frozen=True)
class Vulnerabilities:
    """/sys/devices/system/cpu/vulnerabilities: an open-ended set of names, read whole."""

    SECTION: ClassVar[str] = "vulnerabilities"
    by_name: dict[str, str] = field(default_factory=dict, metadata={"key": WHOLE})  # "mds" -> "Not affected"


@dataclass(frozen=True)
class Ksm:
    """/sys/kernel/mm/ksm (None: not reported: no CONFIG_KSM or an older probe)."""

    SECTION: ClassVar[str] = "ksm"
    run: str | None = None  # 0 stopped, 1 merging, 2 stopped and unmerged
    pages_sharing: str | None = None
    pages_shared: str | None = None


@dataclass(frozen=True)
class KvmProbe:
    """The functional /dev/kvm probe as root (python3, perl or QEMU): None where it did not get that far."""

    SECTION: ClassVar[str] = "kvm_probe"
    measured: bool = False
    reason: str | None = None  # why not measured
    method: str | None = None  # python3 | perl | qemu | none
    as_user: str | None = None
    user: str | None = None  # the euid it ran as
    open: str | None = None  # ok | error:<strerror>
    api_version: int | str | None = None  # 12, or why not (error:<errno>, not-measured:...)
    create_vm: str | None = None
    vcpu_run: str | None = None  # ok | failed | error:... | not-measured:...
    vcpu_exits: str | None = None
    io_port: str | None = None
    io_value: str | None = None
    mmio_addr: str | None = None  # aarch64: where the test code stored its byte (an MMIO exit)
    mmio_value: str | None = None
    system_event: str | None = None  # aarch64: the exit's event type (1: shutdown, PSCI SYSTEM_OFF)
    internal_suberror: str | None = None


@dataclass(frozen=True)
class KvmProbeUser(KvmProbe):
    """The same probe as the sudo login user (probe run as root under sudo only)."""

    SECTION: ClassVar[str] = "kvm_probe_user"


@dataclass(frozen=True)
class KvmProbeQemuUser(KvmProbe):
    """The same probe as the user libvirt runs QEMU as (probe run as root only)."""

    SECTION: ClassVar[str] = "kvm_probe_qemu_user"

    @property
    def reported(self) -> bool:
        return self != KvmProbeQemuUser()
