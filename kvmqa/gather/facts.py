"""Facts: the probe's raw sections turned into plain data (JSON-serialisable), one dict per host.

Parsing is pure: `parse_probe(text, parsers)` is tested on recorded probe outputs in `fixtures/facts/`. This module
parses what every stage reads (the host, its tools, os-release, the kernel); each stage parses its own sections
(`kvmqa/stages/<stage>/facts.py`, handed down as the run's `Registry.probe_parsers()`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from kvmqa.core.facts import HostFacts
from kvmqa.core.stage import ProbeParser, Sections
from kvmqa.gather.distro import RPM_KERNELS, UnknownDistroError, family_of, rpm_kernel_unames

SECTION_RE = re.compile(r"^@@kvmqa:(?P<name>[\w.-]+) rc=(?P<rc>-?\d+)$", re.M)

VHV_LINE = re.compile(r"^\s*(?P<driver>\w+): (?P<check>.+?)\s*: (?P<verdict>PASS|FAIL|WARN|NOTE)(?: \((?P<hint>.*)\))?\s*$")


def split_sections(text: str) -> dict[str, tuple[int, str]]:
    sections: dict[str, tuple[int, str]] = {}
    matches = list(SECTION_RE.finditer(text))
    for i, m in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        body = text[m.end() + 1 : end].rstrip("\n")
        sections[m.group("name")] = (int(m.group("rc")), body)
    return sections


def body_of(sections: Sections, name: str) -> str:
    """A section's text ('' when the probe printed no such section)."""
    return sections.get(name, (0, ""))[1]


def key_values(body: str) -> dict[str, str]:
    """`key=value` lines as a dict (other lines ignored)."""
    out: dict[str, str] = {}
    for line in body.splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            out[k.strip()] = v.strip()
    return out


def _os_release(body: str) -> dict[str, Any]:
    raw = {k: v.strip('"').strip("'") for k, v in key_values(body).items()}
    info: dict[str, Any] = {
        "id": raw.get("ID", ""),
        "id_like": raw.get("ID_LIKE", ""),
        "version_id": raw.get("VERSION_ID", ""),
        "pretty_name": raw.get("PRETTY_NAME", ""),
    }
    try:
        info["family"] = family_of(info["id"], info["id_like"])
    except UnknownDistroError as exc:
        info["family"] = None
        info["error"] = str(exc)
    return info


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
    return {"source": source, "loaded": sorted(set(loaded)), "sys_module": sorted(set(sysmod)),
            "present": sorted(set(loaded) | set(sysmod))}


def _devices(body: str) -> dict[str, Any]:
    devices: dict[str, Any] = {}
    for line in body.splitlines():
        parts = line.split("|")
        if len(parts) == 2 and parts[1] == "missing":
            devices[parts[0]] = {"exists": False}
        elif len(parts) == 5:
            devices[parts[0]] = {"exists": True, "type": parts[1], "mode": parts[2], "owner": parts[3], "group": parts[4]}
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
                v1_controllers.update(o for o in opts.split(",") if o in proc_cgroups or o in KNOWN_CONTROLLERS)
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
    return {"version": version, "fstype": fstype, "v1_controllers": sorted(v1_controllers),
            "v2_controllers": v2_controllers, "mounts": mounts, "enabled": proc_cgroups}


KNOWN_CONTROLLERS = {"cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids", "io", "hugetlb", "net_cls", "perf_event"}


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


def _packages(rc: int, body: str) -> dict[str, Any]:
    manager = "none"
    installed: dict[str, str] = {}
    absent: list[str] = []
    for line in body.splitlines():
        if line.startswith("manager="):
            manager = line.split("=", 1)[1]
            continue
        parts = line.split("|")
        if len(parts) == 3:
            name, version, status = parts
            if status.strip().startswith("ii") and version:
                installed[name] = version.replace("(none):", "")
            else:
                absent.append(name)
            continue
        m = re.search(r"no packages found matching (\S+)|package (\S+) is not installed", line)
        if m:
            absent.append(m.group(1) or m.group(2))
    return {"manager": manager, "installed": installed, "absent": sorted(set(absent))}


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


def _init(body: str, units_body: str) -> dict[str, Any]:
    kv = key_values(body)
    units: dict[str, dict[str, str]] = {}
    for line in units_body.splitlines():
        parts = line.split("|")
        if len(parts) == 3:
            units[parts[0]] = {"active": parts[1], "enabled": parts[2]}
    systemd = kv.get("systemd_running") == "yes"
    return {"system": "systemd" if systemd else (kv.get("pid1_comm") or "unknown"), "systemd": systemd,
            "pid1_comm": kv.get("pid1_comm", ""), "units": units}


def _sockets(body: str) -> dict[str, Any]:
    out = {}
    for line in body.splitlines():
        parts = line.split("|")
        if len(parts) == 4:
            out[parts[0]] = {"mode": parts[1], "owner": parts[2], "group": parts[3]}
    return out


def _libvirt_conf(body: str) -> dict[str, Any]:
    conf: dict[str, str] = {}
    users: dict[str, str] = {}
    groups: dict[str, list[str]] = {}
    for line in body.splitlines():
        m = re.match(r"^\s*(user|group|namespaces|dynamic_ownership)\s*=\s*(.+)$", line)
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
    return {"qemu_conf": conf, "qemu_user": qemu_user, "qemu_user_id": users.get(qemu_user, ""), "groups": groups}


def _storage(body: str) -> dict[str, Any]:
    lines = body.strip().splitlines()
    asked = lines[0].split("=", 1)[1] if lines and lines[0].startswith("dir=") else "/var/lib/libvirt/images"
    parts = lines[-1].split() if lines else []
    if len(parts) >= 6 and parts[3].isdigit():
        return {"path": parts[5], "dir": asked, "available_kib": int(parts[3]), "size_kib": int(parts[1])}
    return {"path": None, "dir": asked, "error": body.strip()[:200]}


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


RPM_ARCHES = ("x86_64", "aarch64", "ppc64le", "s390x", "i686", "noarch")


def _rpm_kernel(name: str, evr: str, arch: str) -> dict[str, Any]:
    """An rpm kernel package: its EVR without the arch (compared rpm's way), the `uname -r` strings it boots
    as, and its line (`kernel-uek-core` and `kernel-uek` are one line: newer and older UEKs, not RHCKs)."""
    if not arch:  # an earlier probe: VERSION-RELEASE.ARCH in one field
        head, _, tail = evr.rpartition(".")
        evr, arch = (head, tail) if tail in RPM_ARCHES else (evr, "")
    evr = evr.replace("(none):", "")
    unames = rpm_kernel_unames(name, evr.split(":", 1)[-1], arch)
    return {"package": name, "release": unames[0], "version": evr, "unames": unames,
            "line": name.removesuffix("-core")}


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
        if name.startswith("linux-image-") and name[len("linux-image-"):][:1].isdigit():
            release = name[len("linux-image-"):].removesuffix("-unsigned")
            if not release.endswith("-dbg"):
                kernels.append({"package": name, "release": release, "version": version, "unames": [release],
                                "line": "linux-image"})
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
    return {"manager": meta.get("manager", "none"), "installed": installed, "kernels": list(booted.values()),
            "reboot_required_file": meta.get("reboot_required_file") == "present"}


def _stale_binaries(body: str) -> dict[str, Any]:
    """proc=PID|comm, exe=PID|target, maps=PID (read), deleted=PID|path, guest=PID|name lines (and an earlier
    probe's one-line proc=PID|comm|exe|libs|maps|guest)."""
    procs: dict[str, dict[str, Any]] = {}
    guests: dict[str, str] = {}
    root = None
    for line in body.splitlines():
        key, _, value = line.partition("=")
        parts = value.split("|")
        if key == "root":
            root = value == "yes"
        elif key == "proc" and len(parts) >= 6:  # the earlier one-line format
            pid, comm, exe, libs, maps, guest = parts[:6]
            procs[pid] = {"comm": comm, "exe": exe, "deleted_libs": [x.removesuffix(" (deleted)") for x in libs.split(";") if x],
                          "maps_readable": maps == "maps", "guest": guest}
        elif key == "proc" and len(parts) == 2:
            procs.setdefault(parts[0], {"comm": parts[1], "exe": "", "deleted_libs": [], "maps_readable": False, "guest": ""})
        elif key == "exe" and len(parts) >= 2 and parts[0] in procs:
            procs[parts[0]]["exe"] = "|".join(parts[1:])
        elif key == "maps" and value in procs:
            procs[value]["maps_readable"] = True
        elif key == "deleted" and len(parts) >= 2 and parts[0] in procs:
            procs[parts[0]]["deleted_libs"].append("|".join(parts[1:]))
        elif key == "guest" and len(parts) >= 2:
            guests[parts[0]] = "|".join(parts[1:])
    out = []
    for pid, p in procs.items():
        p["guest"] = p.get("guest") or guests.get(pid, "")
        out.append({"pid": int(pid) if pid.isdigit() else pid, **p, "exe_deleted": p["exe"].endswith(" (deleted)")})
    return {"root": root, "processes": out, "measured": root is not None}


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
    return {"hostname": kv.get("hostname", ""), "fqdn": kv.get("fqdn", ""), "resolved": sorted(set(resolved)),
            "local": local, "measured": bool(body.strip())}


def _time_sync(body: str, clock: str) -> dict[str, Any]:
    kv = {**key_values(body), **key_values(clock)}
    adj = kv.get("adjtimex", "")
    return {"adjtimex": int(adj) if adj.lstrip("-").isdigit() else None, "adjtimex_raw": adj,
            "ntp_synchronized": kv.get("NTPSynchronized", kv.get("ntp_synchronized")),
            "ntp_enabled": kv.get("NTP", kv.get("ntp_enabled")),
            "chrony_leap": kv.get("chrony_leap")}


def parse_virt_host_validate(rc: int, body: str) -> dict[str, Any]:
    lines = []
    for line in body.splitlines():
        m = VHV_LINE.match(line)
        if m:
            lines.append({"driver": m.group("driver"), "check": m.group("check").strip(), "verdict": m.group("verdict"),
                          "hint": m.group("hint") or ""})
    installed = rc != 127
    return {"installed": installed, "rc": rc, "lines": lines, "raw_tail": body[-2000:] if not lines else ""}


def parse_probe(text: str, parsers: Sequence[ProbeParser]) -> HostFacts:
    """Turn one probe output into HostFacts: the shared sections here, then each stage's (`parsers`)."""
    sec = split_sections(text)

    def body(name: str) -> str:
        return sec.get(name, (0, ""))[1]

    env = key_values(body("probe_env"))
    tools = {k[5:]: v for k, v in env.items() if k.startswith("tool.") and v}
    facts = HostFacts(
        probe={"sections": sorted(sec), "user": env.get("user", ""), "euid": env.get("euid", ""),
               "sudo_user": env.get("sudo_user", ""), "groups": env.get("groups", "").split(), "date": env.get("date", "")},
        host={"hostname": env.get("hostname", ""), "arch": env.get("arch", "")},
        tools=tools,
        os=_os_release(body("os_release")),
        cpu=_cpuinfo(body("cpuinfo")),
        kernel={"release": env.get("kernel", ""), "cmdline": body("cmdline").strip()},
        modules=_modules(body("modules")),
        devices=_devices(body("devices")),
        kvm_params=_kvm_params(body("kvm_params")),
        cgroups=_cgroups(body("cgroups")),
        iommu=_iommu(body("iommu")),
        secure_guest={**key_values(body("secure_guest"))},
        memory=_meminfo(body("meminfo")),
        hugepages=_hugepages(body("hugepages")),
        init=_init(body("init"), body("units")),
        processes=sorted({p.strip() for p in body("processes").splitlines() if p.strip()}),
        sockets=_sockets(body("sockets")),
        libvirt_conf=_libvirt_conf(body("libvirt_conf")),
        storage=_storage(body("storage")),
        security=key_values(body("security")),
        packages=_packages(*sec.get("packages", (3, "manager=none"))),
        kvm_probe=_kvm_probe(body("kvm_probe")),
        virt_host_validate=parse_virt_host_validate(*sec.get("virt_host_validate", (127, ""))),
        firmware=_firmware(body("firmware")),
        vulnerabilities=_sysfs_names(body("vulnerabilities")),
        ksm=_sysfs_names(body("ksm")),
        host_packages=_host_packages(body("host_packages")),
        stale_binaries=_stale_binaries(body("stale_binaries")),
        hostname=_hostname(body("hostname")),
        time_sync=_time_sync(body("time_sync"), body("clock")),
    )
    for extra in ("kvm_probe_user", "kvm_probe_qemu_user"):
        if extra in sec:
            facts[extra] = _kvm_probe(body(extra))
    for name, (rc, text) in sec.items():  # site snippets: section "acme.ntp" -> facts["acme"]["ntp"]
        if "." in name:
            stage, _, key = name.partition(".")
            facts.setdefault(stage, {})[key] = {"rc": rc, "out": text}
    for parse in parsers:
        facts.update(parse(sec))
    return facts
