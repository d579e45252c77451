"""vdsm stage: pure checks over `facts["vdsm"]` (kvmqa.stages.vdsm.facts.parse_vdsm_sections) on ovirt-host
targets.

The checks read it as `facts.view(Vdsm)` (kvmqa.stages.vdsm.facts).

Profile settings (`vdsm` stage): `cluster_cpu_type` (e.g. "Intel Haswell Family") and `cluster_level`
(e.g. "4.8") name the CPU type whose flags vdsm's cpuFlags must carry; without them the engine's
cluster from the engine facts (`Engine`) is used when this host's facts hold one (all-in-one setups);
`vdsm.cluster-level` compares the same cluster level with getCapabilities' clusterLevels.
`strict_maybe: true` fails `vdsm.is-configured` for modules answering MAYBE (vdsm accepts them); the
former `accept_maybe: false` means the same, `accept_maybe: true` is the default.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kvmqa.core.checks import StageChecks
from kvmqa.core.model import Level, Outcome, failed, info, not_applicable, passed, undecided
from kvmqa.stages.ovirt_engine import cpu_list
from kvmqa.stages.ovirt_engine.facts import Engine
from kvmqa.stages.vdsm.facts import SERVICES, Vdsm, VdsmService

if TYPE_CHECKING:
    from kvmqa.config.profile import Profile
    from kvmqa.core.facts import HostFacts

CHECKS = StageChecks("vdsm")


def _vdsm(facts: HostFacts) -> Vdsm | None:
    v = facts.view(Vdsm)
    return v if v.present else None


def _absent() -> Outcome:
    return not_applicable("no vdsm probe sections in the facts (the vdsm snippet runs on ovirt-host targets)")


VdsmCheck = Callable[[Vdsm, "HostFacts", "Profile"], Outcome]


def on_vdsm(fn: VdsmCheck) -> Callable[[HostFacts, Profile], Outcome]:
    """Adapt `fn(vdsm_facts, facts, profile)` to a check; a host without vdsm sections is N/A."""

    @functools.wraps(fn)
    def check(facts: HostFacts, profile: Profile) -> Outcome:
        v = _vdsm(facts)
        return _absent() if v is None else fn(v, facts, profile)

    return check


@CHECKS.check(
    "vdsm.services",
    "vdsmd, supervdsmd, mom-vdsm and ovirt-imageio are active",
    hint="systemctl start vdsmd (it starts supervdsmd, mom-vdsm and ovirt-imageio); if it will not "
    "start, journalctl -u vdsmd shows the failing pre-start task",
)
@on_vdsm
def services(v: Vdsm, facts: HostFacts, profile: Profile) -> Outcome:
    states = {unit: v.services.get(unit, VdsmService()).state for unit in SERVICES}
    bad = {u: s for u, s in states.items() if s != "active"}
    if bad:
        return failed(
            "not active: " + ", ".join(f"{u} ({s or 'unknown'})" for u, s in bad.items()), states=states
        )
    return passed("active: " + ", ".join(SERVICES), states=states)


@CHECKS.check(
    "vdsm.port",
    "vdsm listens on 54321",
    hint="vdsm's management_port is 54321 (JSON-RPC over STOMP over TLS); start vdsmd and open the "
    "firewalld 'vdsm' service",
)
@on_vdsm
def port(v: Vdsm, facts: HostFacts, profile: Profile) -> Outcome:
    p, record = v.port, v.port_record
    if p.listening:
        return passed(f"listening on {p.port} ({p.method})", **record)
    return failed(f"nothing listens on {p.port} ({p.method or p.error})", **record)


def _settings(profile: Profile | None) -> dict[str, Any]:
    return dict(profile.stage("vdsm") or {}) if profile is not None else {}


def strict_maybe(settings: dict[str, Any]) -> str | None:
    """The setting that makes MAYBE fail: `strict_maybe: true` (or the former `accept_maybe: false`)."""
    if "strict_maybe" in settings:
        return "vdsm.strict_maybe" if settings["strict_maybe"] else None
    return "vdsm.accept_maybe: false" if settings.get("accept_maybe") is False else None


# vdsm's configurators answer YES, NO or MAYBE ("configured before, configuration validity could not be
# determined", lib/vdsm/tool/configurators/__init__.py). `vdsm-tool is-configured` fails (rc 1) only for NO;
# vdsmd's start-up runs it (init/vdsmd_init_common.sh.in, task check_is_configured) and starts on MAYBE.
# libvirt's and passwd's isconfigured() can only answer MAYBE or NO: a strict reading fails every vdsm host.
@CHECKS.check(
    "vdsm.is-configured",
    "vdsm-tool is-configured: no vdsm module answers NO",
    hint="vdsm-tool configure --force (restarts the modules' services). A module answering MAYBE "
    "passes, as vdsm itself accepts it; `vdsm: {strict_maybe: true}` in the profile fails it",
)
@on_vdsm
def is_configured(v: Vdsm, facts: HostFacts, profile: Profile) -> Outcome:
    c, record = v.is_configured, v.is_configured_record
    if c.ok is None:
        return failed(
            f"vdsm-tool is-configured did not run: {c.error}", hint="install vdsm (ovirt-host)", **record
        )
    rc, maybe, warnings = c.rc, c.maybe, c.warnings
    if not c.ok:
        if c.not_configured:
            modules = ", ".join(c.not_configured)
            return failed(
                f"not configured for vdsm: {modules} (these modules answered NO; "
                f"vdsm-tool is-configured rc={rc}, vdsmd will not start)",
                **record,
            )
        what = "crashed" if c.crashed else "failed"
        return failed(
            f"vdsm-tool is-configured {what} (rc={rc}) without naming a module: {c.last_line}",
            hint="run vdsm-tool is-configured as root and read its output",
            **record,
        )
    setting = strict_maybe(_settings(profile))
    if maybe and setting:
        return failed(
            f"{', '.join(maybe)} answered MAYBE (configured before, validity not determined); vdsm "
            f"accepts that (rc=0), this profile does not: {setting} is the profile's choice",
            hint="check the module's files, then vdsm-tool configure --force --module <module>, or "
            "drop vdsm.strict_maybe from the profile",
            **record,
        )
    text = "no vdsm module answered NO (vdsm-tool is-configured rc=0)"
    if maybe:
        text += f"; MAYBE, accepted as vdsm accepts it: {', '.join(maybe)}"
    if warnings:
        return failed(
            f"{text}, but vdsm-tool warns: {' '.join(warnings)}",
            level=Level.WARN,
            hint="vdsm-tool warns of an unsupported configuration: fix the file it names",
            **record,
        )
    return passed(text, **record)


@CHECKS.check(
    "vdsm.api",
    "vdsm-client answers Host getCapabilities and getStats",
    hint="vdsm-client talks to localhost:54321 over TLS with /etc/pki/vdsm; check vdsmd and its "
    "certificates (vdsm-tool configure --module certificates)",
)
@on_vdsm
def api(v: Vdsm, facts: HostFacts, profile: Profile) -> Outcome:
    answers = (
        ("getCapabilities", v.capabilities.ok, v.capabilities.error),
        ("getStats", v.stats.ok, v.stats.error),
    )
    errors = [error or f"no {verb} answer in the facts" for verb, ok, error in answers if not ok]
    if errors:
        return failed("; ".join(errors))
    return passed("getCapabilities and getStats answered")


@CHECKS.check(
    "vdsm.kvm-enabled",
    "getCapabilities reports kvmEnabled true",
    requires=("vdsm.api",),
    hint="vdsm reports /dev/kvm missing: load kvm_intel/kvm_amd and enable VT-x/AMD-V in firmware "
    "(engine reason KVM_NOT_RUNNING)",
)
@on_vdsm
def kvm_enabled(v: Vdsm, facts: HostFacts, profile: Profile) -> Outcome:
    caps = v.capabilities
    if caps.kvm_enabled:
        return passed("kvmEnabled is true")
    return failed(f"kvmEnabled is {caps.kvm_enabled_raw!r}")


@CHECKS.check("vdsm.version", "vdsm version", level=Level.INFO, requires=("vdsm.api",))
@on_vdsm
def version(v: Vdsm, facts: HostFacts, profile: Profile) -> Outcome:
    caps = v.capabilities
    text = f"vdsm {caps.software_version}-{caps.software_revision}"
    return info(
        text,
        software_version=caps.software_version,
        software_revision=caps.software_revision,
        cluster_levels=caps.cluster_levels,
        supported_engines=caps.supported_engines,
    )


def _cluster_level(facts: HostFacts, profile: Profile) -> tuple[str | None, str]:
    """(the cluster's compatibility version, where it came from): profile vdsm.cluster_level, else the
    engine's only cluster in this host's facts."""
    level = _settings(profile).get("cluster_level")
    if level:
        return str(level), "profile vdsm.cluster_level"
    clusters = facts.view(Engine).clusters or []
    if len(clusters) == 1 and clusters[0].version:
        return str(clusters[0].version), f"engine cluster {clusters[0].name}"
    return None, f"the engine has {len(clusters)} clusters in these facts" if clusters else ""


def _major_minor(version: Any) -> tuple[int, ...] | None:
    try:
        return tuple(int(part) for part in str(version).split(".")[:2])
    except ValueError:
        return None


@CHECKS.check(
    "vdsm.cluster-level",
    "getCapabilities clusterLevels offer the cluster's compatibility version",
    requires=("vdsm.api",),
    hint="the engine sets this host NonOperational (CLUSTER_VERSION_INCOMPATIBLE_WITH_CLUSTER): "
    "update vdsm, libvirt and qemu-kvm on the host (vdsm offers 4.7 with libvirt >= 8.0 and "
    "4.8 with libvirt >= 10.10 and qemu-kvm >= 9.1), or move the host to a cluster of a level "
    "it offers",
)
@on_vdsm
def cluster_level(v: Vdsm, facts: HostFacts, profile: Profile) -> Outcome:
    # The engine's HandleVdsVersionCommand: the cluster's compatibility version must be one of the host's
    # clusterLevels (compared as major.minor versions); an empty or missing list supports none.
    offered = v.capabilities.cluster_levels
    level, source = _cluster_level(facts, profile)
    if level is None:
        why = f" ({source})" if source else ""
        return not_applicable(
            f"no cluster compatibility version known{why}: set vdsm.cluster_level in the profile",
            cluster_levels=offered,
        )
    details: dict[str, Any] = {"cluster_level": level, "source": source, "cluster_levels": offered}
    wanted = _major_minor(level)
    if wanted is None:
        return undecided(f"cluster level {level!r} ({source}) is not a major.minor version", **details)
    if wanted in {_major_minor(x) for x in offered or []}:
        return passed(f"clusterLevels {', '.join(offered or [])} include {level} ({source})", **details)
    listed = ", ".join(offered) if offered else "none (no clusterLevels in getCapabilities)"
    return failed(
        f"this vdsm offers cluster levels {listed}, not {level} ({source}): the engine refuses "
        "the host as CLUSTER_VERSION_INCOMPATIBLE_WITH_CLUSTER",
        **details,
    )


def _cluster_cpu(facts: HostFacts, profile: Profile) -> tuple[str | None, str | None, str]:
    """(CPU type name, cluster level, where it came from)."""
    settings = dict(profile.stage("vdsm") or {}) if profile is not None else {}
    if settings.get("cluster_cpu_type"):
        return settings["cluster_cpu_type"], settings.get("cluster_level"), "profile vdsm.cluster_cpu_type"
    clusters = facts.view(Engine).clusters or []
    if len(clusters) == 1:
        return clusters[0].cpu_type, clusters[0].version, f"engine cluster {clusters[0].name}"
    return None, None, ""


@CHECKS.check(
    "vdsm.cpu-model",
    "cpuFlags carry the cluster CPU type's flags and model_ entry",
    requires=("vdsm.api",),
    hint="libvirt does not mark the model usable on this CPU: lower the cluster CPU type or update "
    "the CPU microcode; `virsh domcapabilities` lists usable models",
)
@on_vdsm
def cpu_model(v: Vdsm, facts: HostFacts, profile: Profile) -> Outcome:
    name, level, source = _cluster_cpu(facts, profile)
    if not name:
        return not_applicable(
            "no cluster CPU type known: set vdsm.cluster_cpu_type (and cluster_level) in the profile",
            cpu_models=v.capabilities.cpu_models,
        )
    settings = dict(profile.stage("vdsm") or {}) if profile is not None else {}
    found = cpu_list.find(name, level, settings.get("server_cpu_list"))
    if found.cpu is None:  # a named type kvmqa cannot look up is undecided, never a pass nor N/A
        return undecided(
            f"cannot judge CPU type {name!r} at cluster level {level or 'not given'} ({source}): "
            f"{found.note}",
            cpu_type=name,
            cluster_level=level,
            source=source,
        )
    flags = set(v.capabilities.cpu_flags)
    missing = cpu_list.missing_flags(found.cpu.flags, flags)
    details: dict[str, Any] = {
        "cpu_type": name,
        "cluster_level": level,
        "source": source,
        "required": list(found.cpu.flags),
        "cpu_models": v.capabilities.cpu_models,
        "note": found.note or None,
    }
    if missing:
        return failed(
            f"cpuFlags lack {', '.join(missing)} required by {name!r} ({source})", missing=missing, **details
        )
    return passed(f"cpuFlags carry {', '.join(found.cpu.flags)} for {name!r} ({source})", **details)


# getStats momStatus (lib/vdsm/momIF.py::MomClient.getStatus): 'active' when MOM answers ping, else
# 'inactive', also when MOM cannot be reached at all; then getKsmStats() leaves out the KSM keys. vdsm-api.yml
# still lists 'disabled', which vdsm stopped returning in 2014 (commit aab9f1ff, "drop dead ksmtuned-related
# code").
@CHECKS.check(
    "vdsm.mom",
    "MOM is active (getStats momStatus)",
    requires=("vdsm.api",),
    hint="systemctl status mom-vdsm; see /var/log/vdsm/mom.log and 'MOM not available' in vdsm.log",
)
@on_vdsm
def mom(v: Vdsm, facts: HostFacts, profile: Profile) -> Outcome:
    status, missing = v.stats.mom_status, v.stats.ksm_missing
    details: dict[str, Any] = {"mom_status": status, "ksm_missing": missing}
    if status == "active":
        return passed("momStatus is active", **details)
    if status == "inactive":
        gone = f"; getStats lacks {', '.join(missing)}" if missing else ""
        return failed(
            "momStatus is 'inactive': vdsm cannot reach MOM (mom-vdsm on /run/vdsm/mom-vdsm.sock), "
            "so no balloon, KSM or CPU/IO tune policy is applied and KSM stats are missing"
            f"{gone}",
            **details,
        )
    return undecided(
        f"momStatus is {status!r}, which is not a vdsm state (vdsm answers 'active' or 'inactive')", **details
    )
