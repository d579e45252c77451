"""The libvirt stage's probe sections (this folder's probe.sh) -> its facts: the init system and libvirt's
units, the running processes, libvirt's sockets and virt-host-validate's verdicts. What libvirt itself answers
over its connection is gather.py's (`facts["libvirt"]`); parsed here from libvirt's XML:
`machine_types`, `defined_guest`.
What the checks read of them are the typed views below (`facts.view(Libvirt)`, `processes(facts)`, ...).

    >>> parse({"sockets": (0, "/run/libvirt/libvirt-sock|666|root|root")})["sockets"]
    {'/run/libvirt/libvirt-sock': {'mode': '666', 'owner': 'root', 'group': 'root'}}
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from kvmqa.core.facts import view_of
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


# --- typed views: what the checks read ----------------------------------------------------------------------
@dataclass(frozen=True)
class Unit:
    """A systemd unit's state, as `systemctl show` puts it."""

    active: str = ""  # active, inactive, failed, ...
    enabled: str = ""  # enabled, disabled, static, indirect, ...


@dataclass(frozen=True)
class Init:
    """facts["init"]: the init system and libvirt's units."""

    SECTION: ClassVar[str] = "init"
    system: str = "unknown"  # systemd, or PID 1's command
    systemd: bool = False
    pid1_comm: str = ""
    units: dict[str, Unit] = field(default_factory=dict)


@dataclass(frozen=True)
class Processes:
    """facts["processes"] (a list on disk, not a mapping: read it with `processes(facts)`)."""

    names: frozenset[str] = frozenset()


def processes(facts: Mapping[str, Any]) -> Processes:
    return view_of(Processes, {"names": facts.get("processes")})


@dataclass(frozen=True)
class Socket:
    mode: str = ""
    owner: str = ""
    group: str = ""


@dataclass(frozen=True)
class Sockets:
    """facts["sockets"] (keyed by path on disk: read it with `sockets(facts)`)."""

    by_path: dict[str, Socket] = field(default_factory=dict)


def sockets(facts: Mapping[str, Any]) -> Sockets:
    return view_of(Sockets, {"by_path": facts.get("sockets")})


@dataclass(frozen=True)
class VhvLine:
    """One line of virt-host-validate's output."""

    driver: str = ""
    check: str = ""
    verdict: str = ""  # PASS, FAIL, WARN, NOTE
    hint: str = ""


@dataclass(frozen=True)
class VirtHostValidate:
    """facts["virt_host_validate"]: the real virt-host-validate's verdicts on the target."""

    SECTION: ClassVar[str] = "virt_host_validate"
    installed: bool = False
    rc: int | None = None
    lines: tuple[VhvLine, ...] = ()
    raw_tail: str = ""  # its output's end when no line could be read


@dataclass(frozen=True)
class Guest:
    """A `<guest>` of libvirt's capabilities: an OS type and architecture, and the domain types it runs."""

    os_type: str = ""
    arch: str = ""
    domain_types: tuple[str, ...] = ()
    machines: tuple[str, ...] = ()
    emulator: str = ""


@dataclass(frozen=True)
class MachineType:
    name: str = ""
    canonical: str = ""  # the machine an alias stands for
    max_cpus: int = 0
    deprecated: bool = False


@dataclass(frozen=True)
class Capabilities:
    host_arch: str = ""
    host_cpu_model: str = ""
    host_cpu_features: tuple[str, ...] = ()
    guests: tuple[Guest, ...] = ()
    machine_types: dict[str, tuple[MachineType, ...]] = field(default_factory=dict)  # by architecture


@dataclass(frozen=True)
class DomainCapabilities:
    """What a guest of one virt type may use (`virsh domcapabilities`), or why libvirt could not say."""

    error: str | None = None
    domain: str = ""
    machine: str = ""
    emulator: str = ""
    max_vcpus: int = 0
    loader_supported: bool = False
    loader_values: tuple[str | None, ...] = ()
    cpu_modes: dict[str, bool] = field(default_factory=dict)  # mode -> supported
    usable_cpu_models: tuple[str, ...] = ()
    devices: tuple[str, ...] = ()
    features: tuple[str, ...] = ()
    launch_security: tuple[str, ...] | None = None  # sev, sev-snp, tdx, s390-pv; None: libvirt did not say
    cpu_models: tuple[CpuModel, ...] | None = (
        None  # every custom-mode model; None: not gathered (older facts)
    )


@dataclass(frozen=True)
class Network:
    name: str = ""
    active: bool = False
    autostart: bool = False
    persistent: bool = True
    bridge: str | None = ""
    forward: str = ""  # nat, route, ..., isolated
    address: str = ""


@dataclass(frozen=True)
class Pool:
    name: str = ""
    active: bool = False
    autostart: bool = False
    type: str = ""
    path: str = ""
    capacity: int = 0  # bytes
    available: int = 0  # bytes


@dataclass(frozen=True)
class CpuModel:
    """A CPU model of domcapabilities' custom mode: whether this host runs it, whether QEMU deprecates it."""

    name: str = ""
    usable: str = ""  # yes, no, unknown
    deprecated: bool = False


@dataclass(frozen=True)
class DefinedGuest:
    """A guest libvirt knows (facts["libvirt"]["guests"], from its XML: `defined_guest`)."""

    name: str = ""
    arch: str = ""
    machine: str = ""  # as defined: pc-i440fx-2.3, or an alias
    domain_type: str = ""  # kvm, qemu
    cpu_mode: str = ""  # custom, host-model, host-passthrough, maximum; "" without <cpu>
    cpu_model: str = ""
    active: bool = False
    persistent: bool = True
    networks: tuple[str, ...] = ()
    pools: tuple[str, ...] = ()


@dataclass(frozen=True)
class Libvirt:
    """facts["libvirt"]: what libvirt answers over one connection (gather.py), or why it did not."""

    SECTION: ClassVar[str] = "libvirt"
    connected: bool = False
    uri: str = ""
    error: str = "not attempted"
    stderr: str = ""
    lib_version: str | None = None
    hypervisor_version: str | None = None
    hypervisor_version_error: str = ""
    hostname: str = ""
    connect_s: float = 0.0
    capabilities: Capabilities = field(default_factory=Capabilities)
    domcapabilities: dict[str, DomainCapabilities] = field(default_factory=dict)  # by virt type: kvm, qemu
    domcapabilities_arch: dict[str, str] = field(default_factory=dict)  # virt type -> the arch asked for
    networks: tuple[Network, ...] = ()
    pools: tuple[Pool, ...] = ()
    domains: tuple[str, ...] = ()
    guests: tuple[DefinedGuest, ...] = ()

    def described(self, virt_type: str) -> DomainCapabilities | None:
        """What a `virt_type` guest may use, when libvirt described it (neither an error nor empty)."""
        caps = self.domcapabilities.get(virt_type)
        return caps if caps is not None and caps.error is None and caps != DomainCapabilities() else None

    def domcapabilities_error(self, virt_type: str, default: str) -> str:
        """Why libvirt could not describe a `virt_type` guest; `default` when its entry has no error."""
        caps = self.domcapabilities.get(virt_type)
        return default if caps is None or caps.error is None else caps.error

    def hvm_domain_types(self, arch: str) -> list[str]:
        """The domain types (kvm, qemu) libvirt offers for hvm guests of `arch`."""
        return next(
            (list(g.domain_types) for g in self.capabilities.guests if g.arch == arch and g.os_type == "hvm"),
            [],
        )


NETWORK_SOURCES = "./devices/interface[@type='network']/source"
POOL_SOURCES = "./devices/disk[@type='volume']/source"


def defined_guest(domain: ET.Element) -> dict[str, Any]:
    """What a defined guest needs of a host it runs on, from its domain XML: its architecture and machine type
    (as defined: `pc-q35-7.2`, or an alias), the libvirt networks its NICs use and the pools its disks use.

        {"name": "web1", "arch": "x86_64", "machine": "pc-q35-7.2", "networks": ["default"], "pools": [],
         "domain_type": "kvm", "cpu_mode": "custom", "cpu_model": "Westmere"}

    The gatherer adds whether it runs (`active`) and whether it is persistent, and reads a persistent guest's
    inactive XML: the definition it starts from next time.
    """
    os_type = domain.find("./os/type")
    cpu = domain.find("cpu")
    return {
        "name": domain.findtext("name", ""),
        "arch": os_type.get("arch", "") if os_type is not None else "",
        "machine": os_type.get("machine", "") if os_type is not None else "",
        "networks": sorted({s.get("network", "") for s in domain.findall(NETWORK_SOURCES)} - {""}),
        "pools": sorted({s.get("pool", "") for s in domain.findall(POOL_SOURCES)} - {""}),
        "domain_type": domain.get("type", ""),
        # a <cpu> without mode is custom; host-model/host-passthrough guests name no model to check
        "cpu_mode": (cpu.get("mode") or "custom") if cpu is not None else "",
        "cpu_model": (cpu.findtext("model") or "").strip() if cpu is not None else "",
    }
