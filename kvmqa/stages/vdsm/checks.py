"""vdsm stage: pure checks over `facts["vdsm"]` (kvmqa.stages.vdsm.client.parse_vdsm_sections) on ovirt-host targets.

Profile settings (`vdsm` stage): `cluster_cpu_type` (e.g. "Intel Haswell Family") and `cluster_level`
(e.g. "4.8") name the CPU type whose flags vdsm's cpuFlags must carry; without them the engine's
cluster from `facts["engine"]` is used when this host's facts hold one (all-in-one setups).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kvmqa.core.checks import StageChecks
from kvmqa.core.model import Level, Outcome, failed, info, not_applicable, passed
from kvmqa.stages.ovirt_engine import cpu_list
from kvmqa.stages.vdsm.client import SERVICES

if TYPE_CHECKING:
    from kvmqa.config.profile import Profile
    from kvmqa.core.facts import HostFacts

CHECKS = StageChecks("vdsm")


def _vdsm(facts: HostFacts) -> dict[str, Any] | None:
    v = facts.get("vdsm")
    return v if isinstance(v, dict) and v.get("present") else None


def _absent() -> Outcome:
    return not_applicable("no vdsm probe sections in the facts (the vdsm snippet runs on ovirt-host targets)")


VdsmCheck = Callable[[dict[str, Any], "HostFacts", "Profile"], Outcome]


def on_vdsm(fn: VdsmCheck) -> Callable[[HostFacts, Profile], Outcome]:
    """Adapt `fn(vdsm_facts, facts, profile)` to a check; a host without vdsm sections is N/A."""

    @functools.wraps(fn)
    def check(facts: HostFacts, profile: Profile) -> Outcome:
        v = _vdsm(facts)
        return _absent() if v is None else fn(v, facts, profile)

    return check


@CHECKS.check("vdsm.services", "vdsmd, supervdsmd, mom-vdsm and ovirt-imageio are active",
              hint="systemctl start vdsmd (it starts supervdsmd, mom-vdsm and ovirt-imageio); if it will not "
                   "start, journalctl -u vdsmd shows the failing pre-start task")
@on_vdsm
def services(v: dict[str, Any], facts: HostFacts, profile: Profile) -> Outcome:
    states = {unit: (v["services"].get(unit) or {}).get("state") for unit in SERVICES}
    bad = {u: s for u, s in states.items() if s != "active"}
    if bad:
        return failed("not active: " + ", ".join(f"{u} ({s or 'unknown'})" for u, s in bad.items()), states=states)
    return passed("active: " + ", ".join(SERVICES), states=states)


@CHECKS.check("vdsm.port", "vdsm listens on 54321",
              hint="vdsm's management_port is 54321 (JSON-RPC over STOMP over TLS); start vdsmd and open the "
                   "firewalld 'vdsm' service")
@on_vdsm
def port(v: dict[str, Any], facts: HostFacts, profile: Profile) -> Outcome:
    p = v["port"]
    if p.get("listening"):
        return passed(f"listening on {p['port']} ({p.get('method')})", **p)
    return failed(f"nothing listens on {p['port']} ({p.get('method') or p.get('error')})", **p)


# vdsm's configurators print "<module> is already configured for vdsm" when they answer MAYBE (configured
# before, validity not determined: e.g. libvirt's, whose files may have been edited since); YES modules say
# "<module> is configured for vdsm". vdsm-tool exits 0 for MAYBE; a strict acceptance does not.
MAYBE_LINE = re.compile(r"^(?P<module>\S+) is already configured for vdsm\s*$", re.M)


def maybe_modules(output: str) -> list[str]:
    return sorted({m.group("module") for m in MAYBE_LINE.finditer(output or "")})


@CHECKS.check("vdsm.is-configured", "vdsm-tool is-configured (a module in state MAYBE counts as not configured)",
              hint="vdsm-tool configure --force (restarts the modules' services); to accept modules vdsm reports as "
                   "MAYBE after checking their files, set `vdsm: {accept_maybe: true}` in the profile")
@on_vdsm
def is_configured(v: dict[str, Any], facts: HostFacts, profile: Profile) -> Outcome:
    c = v["is_configured"]
    if c.get("ok") is None:
        return failed(f"vdsm-tool is-configured did not run: {c.get('error')}", hint="install vdsm (ovirt-host)", **c)
    maybe = maybe_modules(c.get("output", ""))
    accept = bool(dict(profile.stage("vdsm") or {}).get("accept_maybe", False)) if profile is not None else False
    if c["ok"] and (not maybe or accept):
        note = f" (MAYBE accepted by the profile: {', '.join(maybe)})" if maybe else ""
        return passed(f"all vdsm modules are configured{note}", maybe=maybe, **c)
    if c["ok"]:
        return failed(f"vdsm-tool is-configured exits 0, but {', '.join(maybe)} answered MAYBE (\"is already configured "
                      "for vdsm\": configured before, validity not determined); a strict acceptance treats that as not "
                      "configured", maybe=maybe, **c)
    modules = ", ".join(c.get("not_configured") or []) or "some modules"
    return failed(f"not configured for vdsm: {modules} (rc={c.get('rc')})", maybe=maybe, **c)


@CHECKS.check("vdsm.api", "vdsm-client answers Host getCapabilities and getStats",
              hint="vdsm-client talks to localhost:54321 over TLS with /etc/pki/vdsm; check vdsmd and its "
                   "certificates (vdsm-tool configure --module certificates)")
@on_vdsm
def api(v: dict[str, Any], facts: HostFacts, profile: Profile) -> Outcome:
    errors = [x["error"] for x in (v["capabilities"], v["stats"]) if not x.get("ok")]
    if errors:
        return failed("; ".join(errors))
    return passed("getCapabilities and getStats answered")


@CHECKS.check("vdsm.kvm-enabled", "getCapabilities reports kvmEnabled true", requires=("vdsm.api",),
              hint="vdsm reports /dev/kvm missing: load kvm_intel/kvm_amd and enable VT-x/AMD-V in firmware "
                   "(engine reason KVM_NOT_RUNNING)")
@on_vdsm
def kvm_enabled(v: dict[str, Any], facts: HostFacts, profile: Profile) -> Outcome:
    caps = v["capabilities"]
    if caps.get("kvm_enabled"):
        return passed("kvmEnabled is true")
    return failed(f"kvmEnabled is {caps.get('kvm_enabled_raw')!r}")


@CHECKS.check("vdsm.version", "vdsm version", level=Level.INFO, requires=("vdsm.api",))
@on_vdsm
def version(v: dict[str, Any], facts: HostFacts, profile: Profile) -> Outcome:
    caps = v["capabilities"]
    text = f"vdsm {caps.get('software_version')}-{caps.get('software_revision')}"
    return info(text, software_version=caps.get("software_version"), software_revision=caps.get("software_revision"),
                cluster_levels=caps.get("cluster_levels"), supported_engines=caps.get("supported_engines"))


def _cluster_cpu(facts: HostFacts, profile: Profile) -> tuple[str | None, str | None, str]:
    """(CPU type name, cluster level, where it came from)."""
    settings = dict(profile.stage("vdsm") or {}) if profile is not None else {}
    if settings.get("cluster_cpu_type"):
        return settings["cluster_cpu_type"], settings.get("cluster_level"), "profile vdsm.cluster_cpu_type"
    engine = facts.get("engine") or {}
    clusters = engine.get("clusters") or []
    if len(clusters) == 1:
        return clusters[0].get("cpu_type"), clusters[0].get("version"), f"engine cluster {clusters[0].get('name')}"
    return None, None, ""


@CHECKS.check("vdsm.cpu-model", "cpuFlags carry the cluster CPU type's flags and model_ entry",
              requires=("vdsm.api",),
              hint="libvirt does not mark the model usable on this CPU: lower the cluster CPU type or update "
                   "the CPU microcode; `virsh domcapabilities` lists usable models")
@on_vdsm
def cpu_model(v: dict[str, Any], facts: HostFacts, profile: Profile) -> Outcome:
    name, level, source = _cluster_cpu(facts, profile)
    if not name:
        return not_applicable("no cluster CPU type known: set vdsm.cluster_cpu_type (and cluster_level) in the "
                              "profile", cpu_models=v["capabilities"].get("cpu_models"))
    settings = dict(profile.stage("vdsm") or {}) if profile is not None else {}
    found = cpu_list.find(name, level, settings.get("server_cpu_list"))
    if found.cpu is None:
        return not_applicable(found.note, cpu_type=name)
    flags = set(v["capabilities"].get("cpu_flags") or [])
    missing = cpu_list.missing_flags(found.cpu.flags, flags)
    details = {"cpu_type": name, "cluster_level": level, "source": source, "required": list(found.cpu.flags),
               "cpu_models": v["capabilities"].get("cpu_models"), "note": found.note or None}
    if missing:
        return failed(f"cpuFlags lack {', '.join(missing)} required by {name!r} ({source})", missing=missing,
                      **details)
    return passed(f"cpuFlags carry {', '.join(found.cpu.flags)} for {name!r} ({source})", **details)


@CHECKS.check("vdsm.mom", "MOM is active (getStats momStatus)", requires=("vdsm.api",),
              hint="systemctl status mom-vdsm; see /var/log/vdsm/mom.log and 'MOM not available' in vdsm.log")
@on_vdsm
def mom(v: dict[str, Any], facts: HostFacts, profile: Profile) -> Outcome:
    status = v["stats"].get("mom_status")
    if status == "active":
        return passed("momStatus is active")
    meaning = {"disabled": "MOM is disabled", "inactive": "MOM has terminated"}.get(str(status), "unexpected value")
    return failed(f"momStatus is {status!r} ({meaning})", mom_status=status)
