"""The libvirt stage's probe sections (this folder's probe.sh) -> its facts: the init system and libvirt's
units, the running processes, libvirt's sockets and virt-host-validate's verdicts. What libvirt itself answers
over its connection is gather.py's (`facts["libvirt"]`); parsed here from libvirt's XML: `machine_types`,
`defined_guest`.

    >>> parse({"sockets": (0, "/run/libvirt/libvirt-sock|666|root|root")})["sockets"]
    {'/run/libvirt/libvirt-sock': {'mode': '666', 'owner': 'root', 'group': 'root'}}
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Any

from kvmqa.core.stage import Sections
from kvmqa.gather.facts import body_of, key_values

NOT_RUN = (127, "")  # no virt_host_validate section: as if it were not installed


def parse(sections: Sections) -> dict[str, Any]:
    def body(name: str) -> str:
        return body_of(sections, name)

    return {
        "init": _init(body("init"), body("units")),
        "processes": sorted({p.strip() for p in body("processes").splitlines() if p.strip()}),
        "sockets": _sockets(body("sockets")),
        "virt_host_validate": parse_virt_host_validate(*sections.get("virt_host_validate", NOT_RUN)),
    }


VHV_LINE = re.compile(
    r"^\s*(?P<driver>\w+): (?P<check>.+?)\s*: (?P<verdict>PASS|FAIL|WARN|NOTE)(?: \((?P<hint>.*)\))?\s*$"
)


def _init(body: str, units_body: str) -> dict[str, Any]:
    kv = key_values(body)
    units: dict[str, dict[str, str]] = {}
    for line in units_body.splitlines():
        parts = line.split("|")
        if len(parts) == 3:
            units[parts[0]] = {"active": parts[1], "enabled": parts[2]}
    systemd = kv.get("systemd_running") == "yes"
    return {
        "system": "systemd" if systemd else (kv.get("pid1_comm") or "unknown"),
        "systemd": systemd,
        "pid1_comm": kv.get("pid1_comm", ""),
        "units": units,
    }


def _sockets(body: str) -> dict[str, Any]:
    out = {}
    for line in body.splitlines():
        parts = line.split("|")
        if len(parts) == 4:
            out[parts[0]] = {"mode": parts[1], "owner": parts[2], "group": parts[3]}
    return out


def parse_virt_host_validate(rc: int, body: str) -> dict[str, Any]:
    lines = []
    for line in body.splitlines():
        m = VHV_LINE.match(line)
        if m:
            lines.append(
                {
                    "driver": m.group("driver"),
                    "check": m.group("check").strip(),
                    "verdict": m.group("verdict"),
                    "hint": m.group("hint") or "",
                }
            )
    installed = rc != 127
    return {"installed": installed, "rc": rc, "lines": lines, "raw_tail": body[-2000:] if not lines else ""}


def machine_types(capabilities: ET.Element) -> dict[str, list[dict[str, Any]]]:
    """Each guest architecture's machine types as libvirt reports them (`<guest><arch name=...><machine>`):
    the name, the machine an alias stands for (`pc` -> `pc-i440fx-7.2`; a versioned machine is its own),
    the most vCPUs it takes and whether QEMU deprecates it; sorted by name.

        {"x86_64": [{"name": "pc", "canonical": "pc-i440fx-7.2", "max_cpus": 255, "deprecated": False}, ...]}
    """
    arches: dict[str, dict[str, dict[str, Any]]] = {}
    for arch in capabilities.findall("./guest/arch"):
        machines = arches.setdefault(arch.get("name", ""), {})
        # older libvirt lists machines under a domain type too
        for m in (*arch.findall("machine"), *arch.findall("domain/machine")):
            name = (m.text or "").strip()
            if name and name not in machines:
                machines[name] = {
                    "name": name,
                    "canonical": m.get("canonical") or name,
                    "max_cpus": int(m.get("maxCpus") or 0),
                    "deprecated": m.get("deprecated") == "yes",
                }
    return {arch: sorted(found.values(), key=lambda m: m["name"]) for arch, found in arches.items()}


NETWORK_SOURCES = "./devices/interface[@type='network']/source"
POOL_SOURCES = "./devices/disk[@type='volume']/source"


def defined_guest(domain: ET.Element) -> dict[str, Any]:
    """What a defined guest needs of a host it runs on, from its domain XML: its architecture and machine type
    (as defined: `pc-q35-7.2`, or an alias), the libvirt networks its NICs use and the pools its disks use.

        {"name": "web1", "arch": "x86_64", "machine": "pc-q35-7.2", "networks": ["default"], "pools": []}
    """
    os_type = domain.find("./os/type")
    return {
        "name": domain.findtext("name", ""),
        "arch": os_type.get("arch", "") if os_type is not None else "",
        "machine": os_type.get("machine", "") if os_type is not None else "",
        "networks": sorted({s.get("network", "") for s in domain.findall(NETWORK_SOURCES)} - {""}),
        "pools": sorted({s.get("pool", "") for s in domain.findall(POOL_SOURCES)} - {""}),
    }
