r"""The host stage's probe sections (this folder's probe.sh) -> its facts: kernel and microcode packages,
daemons running replaced binaries, the host name, time sync (with section clock, which the cpu stage's kvm
probe prints) and the free space where libvirt keeps images.

    >>> df = "dir=/var\nFilesystem 1024-blocks Used Available Capacity Mounted on\n/dev/vda1 100 40 60 40% /"
    >>> parse({"storage": (0, df)})["storage"]
    {'path': '/', 'dir': '/var', 'available_kib': 60, 'size_kib': 100}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from kvmqa.core.stage import Sections
from kvmqa.gather.distro import RPM_KERNELS, rpm_kernel_unames
from kvmqa.gather.facts import body_of, key_values


# --- typed views of this stage's sections -------------------------------------------------------------------
@dataclass(frozen=True)
class KernelPackage:
    """An installed kernel package, with the `uname -r` strings it boots as."""

    package: str = ""
    release: str = ""
    version: str = ""  # compared in the order of the host's package manager
    unames: tuple[str, ...] = ()
    line: str = ""  # its flavour's line: a newer kernel of another line is no reason to reboot


@dataclass(frozen=True)
class HostPackages:
    SECTION: ClassVar[str] = "host_packages"
    manager: str | None = None  # None: no host_packages section (an older probe)
    installed: dict[str, str] = field(default_factory=dict)  # microcode and firmware packages
    kernels: tuple[KernelPackage, ...] = ()
    reboot_required_file: bool = False  # /var/run/reboot-required


@dataclass(frozen=True)
class StaleProcess:
    """A libvirt daemon or QEMU process and what of its code is deleted on disk."""

    pid: int | str = ""
    comm: str = ""
    exe: str = ""  # /proc/PID/exe's target, " (deleted)" included
    deleted_libs: tuple[str, ...] = ()
    maps_readable: bool = False
    guest: str = ""  # the guest a QEMU process runs
    exe_deleted: bool = False


@dataclass(frozen=True)
class StaleBinaries:
    SECTION: ClassVar[str] = "stale_binaries"
    root: bool | None = None  # whether the probe ran as root (it reads maps only then)
    processes: tuple[StaleProcess, ...] = ()
    measured: bool = False
    started: dict[str, str] = field(default_factory=dict)  # guest -> the QEMU it was started with (its log)


@dataclass(frozen=True)
class LocalAddress:
    device: str = ""
    address: str = ""
    cidr: str = ""


@dataclass(frozen=True)
class Hostname:
    SECTION: ClassVar[str] = "hostname"
    hostname: str = ""
    fqdn: str = ""
    resolved: tuple[str, ...] = ()  # what the name resolves to (getent ahosts)
    local: tuple[LocalAddress, ...] = ()  # the host's own addresses
    measured: bool = False
    boot_id: str = ""  # /proc/sys/kernel/random/boot_id: two targets with one boot id are one machine


@dataclass(frozen=True)
class TimeSync:
    SECTION: ClassVar[str] = "time_sync"
    adjtimex: int | None = None  # the kernel clock's state (5: unsynchronised)
    adjtimex_raw: str | None = None  # None: no time facts (an older probe)
    ntp_synchronized: str | None = None  # timedatectl's yes or no
    ntp_enabled: str | None = None
    chrony_leap: str | None = None  # chronyc's leap status

    @property
    def measured(self) -> bool:
        return self.adjtimex_raw is not None


@dataclass(frozen=True)
class Storage:
    """The free space where libvirt keeps images (or of the nearest existing parent directory)."""

    SECTION: ClassVar[str] = "storage"
    path: str | None = None  # the filesystem's mount point
    dir: str = ""  # the directory asked about
    available_kib: int | None = None  # None: df could not tell
    size_kib: int | None = None
    error: str = ""


def parse(sections: Sections) -> dict[str, Any]:
    def body(name: str) -> str:
        return body_of(sections, name)

    return {
        "storage": _storage(body("storage")),
        "host_packages": _host_packages(body("host_packages")),
        "stale_binaries": _stale_binaries(body("stale_binaries")),
        "hostname": _hostname(body("hostname")),
        "time_sync": _time_sync(body("time_sync"), body("clock")),
    }


def _storage(body: str) -> dict[str, Any]:
    lines = body.strip().splitlines()
    asked = lines[0].split("=", 1)[1] if lines and lines[0].startswith("dir=") else "/var/lib/libvirt/images"
    parts = lines[-1].split() if lines else []
    if len(parts) >= 6 and parts[3].isdigit():
        return {"path": parts[5], "dir": asked, "available_kib": int(parts[3]), "size_kib": int(parts[1])}
    return {"path": None, "dir": asked, "error": body.strip()[:200]}


RPM_ARCHES = ("x86_64", "aarch64", "ppc64le", "s390x", "i686", "noarch")


def _rpm_kernel(name: str, evr: str, arch: str) -> dict[str, Any]:
    """An rpm kernel package: its EVR without the arch (compared rpm's way), the `uname -r` strings it boots
    as, and its line (`kernel-uek-core` and `kernel-uek` are one line: newer and older UEKs, not RHCKs)."""
    if not arch:  # an earlier probe: VERSION-RELEASE.ARCH in one field
        head, _, tail = evr.rpartition(".")
        evr, arch = (head, tail) if tail in RPM_ARCHES else (evr, "")
    evr = evr.replace("(none):", "")
    unames = rpm_kernel_unames(name, evr.split(":", 1)[-1], arch)
    return {
        "package": name,
        "release": unames[0],
        "version": evr,
        "unames": unames,
        "line": name.removesuffix("-core"),
    }


def _host_packages(body: str) -> dict[str, Any]:
    """Microcode packages and every installed kernel package, with the release(s) `uname -r` would show."""
    kv_lines = [line for line in body.splitlines() if "|" not in line]
    meta = key_values("\n".join(kv_lines))
    installed: dict[str, str] = {}
    kernels: list[dict[str, Any]] = []
    for line in body.splitlines():
        parts = [p.strip() for p in line.split("|")]
        if len(parts) not in (3, 4) or not parts[2].startswith("ii"):
            continue
        name, version = parts[0], parts[1]
        if name.startswith("linux-image-") and name[len("linux-image-") :][:1].isdigit():
            release = name[len("linux-image-") :].removesuffix("-unsigned")
            if not release.endswith("-dbg"):
                kernels.append(
                    {
                        "package": name,
                        "release": release,
                        "version": version,
                        "unames": [release],
                        "line": "linux-image",
                    }
                )
        elif name in RPM_KERNELS:
            kernels.append(_rpm_kernel(name, version, parts[3] if len(parts) == 4 else ""))
        else:
            installed[name] = version.replace("(none):", "")
    # EL8+: `kernel` is a meta package over `kernel-core` (so for each flavour): one entry per booted kernel
    booted: dict[tuple[str, str], dict[str, Any]] = {}
    for k in kernels:
        key = (k["line"], k["release"])
        if key not in booted or k["package"].endswith("-core"):
            booted[key] = k
    return {
        "manager": meta.get("manager", "none"),
        "installed": installed,
        "kernels": list(booted.values()),
        "reboot_required_file": meta.get("reboot_required_file") == "present",
    }


def _stale_binaries(body: str) -> dict[str, Any]:
    """proc=PID|comm, exe=PID|target, maps=PID (read), deleted=PID|path, guest=PID|name,
    started=NAME|QEMU version lines (and an earlier
    probe's one-line proc=PID|comm|exe|libs|maps|guest)."""
    procs: dict[str, dict[str, Any]] = {}
    guests: dict[str, str] = {}
    started: dict[str, str] = {}  # guest -> the QEMU version it was started with
    root = None
    for line in body.splitlines():
        key, _, value = line.partition("=")
        parts = value.split("|")
        if key == "root":
            root = value == "yes"
        elif key == "proc" and len(parts) >= 6:  # the earlier one-line format
            pid, comm, exe, libs, maps, guest = parts[:6]
            procs[pid] = {
                "comm": comm,
                "exe": exe,
                "deleted_libs": [x.removesuffix(" (deleted)") for x in libs.split(";") if x],
                "maps_readable": maps == "maps",
                "guest": guest,
            }
        elif key == "proc" and len(parts) == 2:
            procs.setdefault(
                parts[0],
                {"comm": parts[1], "exe": "", "deleted_libs": [], "maps_readable": False, "guest": ""},
            )
        elif key == "exe" and len(parts) >= 2 and parts[0] in procs:
            procs[parts[0]]["exe"] = "|".join(parts[1:])
        elif key == "maps" and value in procs:
            procs[value]["maps_readable"] = True
        elif key == "deleted" and len(parts) >= 2 and parts[0] in procs:
            procs[parts[0]]["deleted_libs"].append("|".join(parts[1:]))
        elif key == "guest" and len(parts) >= 2:
            guests[parts[0]] = "|".join(parts[1:])
        elif key == "started" and len(parts) >= 2:
            started[parts[0]] = "|".join(parts[1:]).strip()
    out = []
    for pid, p in procs.items():
        p["guest"] = p.get("guest") or guests.get(pid, "")
        out.append(
            {"pid": int(pid) if pid.isdigit() else pid, **p, "exe_deleted": p["exe"].endswith(" (deleted)")}
        )
    return {"root": root, "processes": out, "measured": root is not None, "started": started}


def _hostname(body: str) -> dict[str, Any]:
    resolved: list[str] = []
    local: list[dict[str, str]] = []
    kv: dict[str, str] = {}
    target: list[Any] | None = None
    for line in body.splitlines():
        if line == "@resolved":
            target = resolved
        elif line == "@local":
            target = local
        elif target is resolved and line.strip():
            resolved.append(line.strip())
        elif target is local:  # `ip -o addr`: "2: eth0    inet 192.0.2.2/24 brd ... scope global eth0"
            parts = line.split()
            if len(parts) >= 4 and parts[2] in ("inet", "inet6"):
                local.append({"device": parts[1], "address": parts[3].split("/")[0], "cidr": parts[3]})
            elif "|" in line:  # an earlier probe's "eth0|192.0.2.2/24"
                dev, addr = line.split("|", 1)
                local.append({"device": dev, "address": addr.split("/")[0], "cidr": addr})
        elif "=" in line and target is None:
            k, v = line.split("=", 1)
            kv[k] = v.strip()
    return {
        "hostname": kv.get("hostname", ""),
        "fqdn": kv.get("fqdn", ""),
        "boot_id": kv.get("boot_id", ""),
        "resolved": sorted(set(resolved)),
        "local": local,
        "measured": bool(body.strip()),
    }


def _time_sync(body: str, clock: str) -> dict[str, Any]:
    kv = {**key_values(body), **key_values(clock)}
    adj = kv.get("adjtimex", "")
    return {
        "adjtimex": int(adj) if adj.lstrip("-").isdigit() else None,
        "adjtimex_raw": adj,
        "ntp_synchronized": kv.get("NTPSynchronized", kv.get("ntp_synchronized")),
        "ntp_enabled": kv.get("NTP", kv.get("ntp_enabled")),
        "chrony_leap": kv.get("chrony_leap"),
    }
