"""vdsm probe sections (this folder's probe.sh) -> `facts["vdsm"]`.

`parse` is the stage's parser (kvmqa.core.stage.Stage.parser): `{"vdsm": ...}` when the output has vdsm's
sections.
`parse_vdsm_sections` takes the probe's sections as `{name: (rc, text)}` (all of them or only the
`vdsm.*` ones) and returns a JSON-serialisable dict. A host without the snippet's sections (not an
ovirt-host) gives `{"present": False}`. `Vdsm` is what the section holds, as the checks read it
(`facts.view(Vdsm)`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

from kvmqa.core.stage import Sections

SERVICES = ("vdsmd", "supervdsmd", "mom-vdsm", "ovirt-imageio")
PORT = 54321
MISSING_RC = 127
# vdsm-tool is-configured (oVirt/vdsm lib/vdsm/tool/configurator.py::isconfigured) prints
# "Modules <a>, <b> are not configured" for the modules whose isconfigured() answered NO, then raises
# InvalidRun, which static/usr/bin/vdsm-tool prints to stderr as "Error:  ...One of the modules is not
# configured to work with VDSM..." and exits 1. Modules answering YES or MAYBE do not count: it exits 0.
_NOT_CONFIGURED = re.compile(r"Modules? (?P<mods>.+?) (?:are|is) not configured")
# What a module prints when its isconfigured() answers MAYBE (lib/vdsm/tool/configurators/*.py). libvirt's
# starts at MAYBE and only drops to NO ("libvirt is not configured for vdsm yet"); sebool answers MAYBE when
# SELinux is disabled. passwd answers MAYBE (never YES) without printing anything, so it cannot be named here.
MAYBE_SIGNS = {"libvirt": "libvirt is already configured for vdsm", "sebool": "WARNING: SELinux is disabled!"}
_TRACEBACK = "Traceback (most recent call last)"
# Warnings a module prints while still answering YES (multipath.py: user_friendly_names and the like).
_WARNING_STARTS = ("WARNING:", "This configuration is not supported")
# getStats' KSM keys: vdsm (lib/vdsm/momIF.py::getKsmStats) adds them from MOM's statistics and leaves them
# out when MOM cannot be reached, the same time getStatus() answers 'inactive'.
KSM_KEYS = ("ksmState", "ksmPages", "ksmMergeAcrossNodes", "memShared", "ksmCpu")


@dataclass(frozen=True)
class VdsmService:
    """One of SERVICES: its state word ("active", "inactive", ...), None when it could not be read."""

    state: str | None = None
    method: str | None = None  # "systemctl" or "process"
    rc: int | None = None
    raw: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class VdsmPort:
    """Whether something listens on vdsm's PORT; `listening` None when the probe had no answer."""

    port: int = PORT
    listening: bool | None = None
    method: str | None = None  # "ss", "netstat" or "proc"
    lines: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass(frozen=True)
class IsConfigured:
    """`vdsm-tool is-configured`: `ok` None when it did not run, else whether it exited 0."""

    ok: bool | None = None
    rc: int | None = None
    error: str | None = None
    not_configured: list[str] = field(default_factory=list)  # modules that answered NO
    maybe: list[str] = field(default_factory=list)  # modules known to have answered MAYBE
    warnings: list[str] = field(default_factory=list)
    crashed: bool = False
    last_line: str = ""
    output: str = ""


@dataclass(frozen=True)
class VdsmCapabilities:
    """`vdsm-client Host getCapabilities`, the keys kvmqa keeps; `ok` False with `error` when it failed."""

    ok: bool = False
    error: str | None = None
    kvm_enabled: bool | None = None
    kvm_enabled_raw: Any = None  # what vdsm answered ("true", "false", a bool): reported as it came
    software_version: str | None = None
    software_revision: str | None = None
    cpu_model: str | None = None
    cpu_flags: list[str] = field(default_factory=list)
    cpu_models: list[str] | None = None  # the model_* entries of cpu_flags, without the prefix
    cluster_levels: list[str] | None = None
    supported_engines: list[str] | None = None
    operating_system: dict[str, Any] | None = None
    nested_virtualization: bool | None = None
    fips_enabled: bool | None = None
    hosted_engine_deployed: bool | None = None


@dataclass(frozen=True)
class VdsmStats:
    """`vdsm-client Host getStats`: MOM's status and the KSM keys it left out (the other kept keys stay in
    facts.json as vdsm named them)."""

    ok: bool = False
    error: str | None = None
    mom_status: str | None = None
    ksm_missing: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Vdsm:
    """`facts["vdsm"]`: `present` False on a host the snippet did not run on (not an ovirt-host)."""

    SECTION: ClassVar[str] = "vdsm"
    present: bool = False
    services: dict[str, VdsmService] = field(default_factory=dict)
    port: VdsmPort = field(default_factory=VdsmPort)
    is_configured: IsConfigured = field(default_factory=IsConfigured)
    capabilities: VdsmCapabilities = field(default_factory=VdsmCapabilities)
    stats: VdsmStats = field(default_factory=VdsmStats)
    # The port and is-configured records as gathered: their findings report them unchanged as details.
    port_record: dict[str, Any] = field(default_factory=dict, metadata={"key": "port"})
    is_configured_record: dict[str, Any] = field(default_factory=dict, metadata={"key": "is_configured"})


def parse(sections: Sections) -> dict[str, Any]:
    """The stage's fact section, only when the probe ran this folder's snippet (an ovirt-host)."""
    wanted = {k: v for k, v in sections.items() if k.startswith("vdsm")}
    return {"vdsm": parse_vdsm_sections(wanted)} if wanted else {}


def parse_vdsm_sections(sections: Sections) -> dict[str, Any]:
    mine = {k: v for k, v in sections.items() if k.startswith("vdsm.")}
    if not mine:
        return {"present": False}
    return {
        "present": True,
        "services": {unit: _service(mine.get(f"vdsm.svc.{unit}")) for unit in SERVICES},
        "port": _port(mine.get("vdsm.port")),
        "is_configured": _is_configured(mine.get("vdsm.is-configured")),
        "capabilities": _capabilities(mine.get("vdsm.caps")),
        "stats": _stats(mine.get("vdsm.stats")),
    }


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def _method_and_rest(text: str) -> tuple[str | None, list[str]]:
    lines = _lines(text)
    if lines and lines[0].startswith("method="):
        return lines[0].split("=", 1)[1], lines[1:]
    return None, lines


def _service(section: tuple[int, str] | None) -> dict[str, Any]:
    if section is None:
        return {"state": None, "method": None, "error": "section missing from the probe output"}
    rc, text = section
    method, rest = _method_and_rest(text)
    if rc == MISSING_RC and not method:
        return {"state": None, "method": None, "error": text.strip()}
    word = rest[-1].strip() if rest else ""
    if method == "process":
        state = "active" if rc == 0 else "inactive"
    else:  # systemctl is-active prints one state word; rc 0 only for active
        state = word if word else ("active" if rc == 0 else "unknown")
    return {"state": state, "method": method, "rc": rc, "raw": word}


def _port(section: tuple[int, str] | None) -> dict[str, Any]:
    if section is None:
        return {"port": PORT, "listening": None, "error": "section missing from the probe output"}
    rc, text = section
    method, rest = _method_and_rest(text)
    return {"port": PORT, "listening": rc == 0 and bool(rest), "method": method, "lines": rest[:10]}


def _is_configured(section: tuple[int, str] | None) -> dict[str, Any]:
    if section is None:
        return {"ok": None, "error": "section missing from the probe output"}
    rc, text = section
    if rc == MISSING_RC:
        return {"ok": None, "rc": rc, "error": text.strip()}
    found = _NOT_CONFIGURED.search(text)
    modules = [m.strip() for m in found.group("mods").split(",")] if found else []
    lines = [line.strip() for line in _lines(text)]
    return {
        "ok": rc == 0,
        "rc": rc,
        "not_configured": modules,
        "maybe": [m for m, sign in MAYBE_SIGNS.items() if sign in lines],
        "warnings": [ln for ln in lines if ln.startswith(_WARNING_STARTS) and ln not in MAYBE_SIGNS.values()],
        "crashed": _TRACEBACK in text,
        "last_line": lines[-1] if lines else "",
        "output": text.strip()[:2000],
    }


def _json_section(section: tuple[int, str] | None, verb: str) -> tuple[dict[str, Any] | None, str | None]:
    if section is None:
        return None, "section missing from the probe output"
    rc, text = section
    if rc != 0:
        return None, f"vdsm-client Host {verb} rc={rc}: {text.strip()[:500]}"
    try:
        data = json.loads(text)
    except ValueError as exc:
        return None, f"vdsm-client Host {verb} printed no JSON ({exc}): {text.strip()[:200]}"
    if not isinstance(data, dict):
        return None, f"vdsm-client Host {verb} printed {type(data).__name__}, not an object"
    return data, None


def _capabilities(section: tuple[int, str] | None) -> dict[str, Any]:
    caps, error = _json_section(section, "getCapabilities")
    if caps is None:
        return {"ok": False, "error": error}
    kvm = caps.get("kvmEnabled")
    flags = [f for f in str(caps.get("cpuFlags", "")).split(",") if f]
    return {
        "ok": True,
        "kvm_enabled": None if kvm is None else str(kvm).lower() == "true",
        "kvm_enabled_raw": kvm,
        "software_version": caps.get("software_version"),
        "software_revision": caps.get("software_revision"),
        "cpu_model": caps.get("cpuModel"),
        "cpu_flags": flags,
        "cpu_models": [f[len("model_") :] for f in flags if f.startswith("model_")],
        "cluster_levels": caps.get("clusterLevels"),
        "supported_engines": caps.get("supportedENGINEs"),
        "operating_system": caps.get("operatingSystem"),
        "nested_virtualization": caps.get("nestedVirtualization"),
        "fips_enabled": caps.get("fipsEnabled"),
        "hosted_engine_deployed": caps.get("hostedEngineDeployed"),
    }


def _stats(section: tuple[int, str] | None) -> dict[str, Any]:
    stats, error = _json_section(section, "getStats")
    if stats is None:
        return {"ok": False, "error": error}
    keep = ("thpState", "vmCount", "vmActive", "bootTime", "elapsedTime", "memFree", "cpuIdle", *KSM_KEYS)
    return {
        "ok": True,
        "mom_status": stats.get("momStatus"),
        **{k: stats.get(k) for k in keep},
        "ksm_missing": [k for k in KSM_KEYS if k not in stats],
    }
