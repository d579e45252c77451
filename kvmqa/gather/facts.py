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
        kernel={"release": env.get("kernel", ""), "cmdline": body("cmdline").strip()},
        init=_init(body("init"), body("units")),
        processes=sorted({p.strip() for p in body("processes").splitlines() if p.strip()}),
        sockets=_sockets(body("sockets")),
        storage=_storage(body("storage")),
        security=key_values(body("security")),
        packages=_packages(*sec.get("packages", (3, "manager=none"))),
        virt_host_validate=parse_virt_host_validate(*sec.get("virt_host_validate", (127, ""))),
        host_packages=_host_packages(body("host_packages")),
        stale_binaries=_stale_binaries(body("stale_binaries")),
        hostname=_hostname(body("hostname")),
        time_sync=_time_sync(body("time_sync"), body("clock")),
    )
    for name, (rc, text) in sec.items():  # site snippets: section "acme.ntp" -> facts["acme"]["ntp"]
        if "." in name:
            stage, _, key = name.partition(".")
            facts.setdefault(stage, {})[key] = {"rc": rc, "out": text}
    for parse in parsers:
        facts.update(parse(sec))
    return facts
