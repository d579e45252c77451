"""oVirt engine stage: pure checks over `facts["engine"]` (gathered by
kvmqa.stages.ovirt_engine.client.gather_engine).

The checks read it as `facts.view(Engine)` (kvmqa.stages.ovirt_engine.facts).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kvmqa.core.checks import StageChecks
from kvmqa.core.model import Level, Outcome, failed, not_applicable, passed, undecided
from kvmqa.stages.ovirt_engine import cpu_list
from kvmqa.stages.ovirt_engine.facts import ApiError, Cluster, Engine, EngineHost, HealthReply, InventoryHost

if TYPE_CHECKING:
    from kvmqa.config.profile import Profile
    from kvmqa.core.facts import HostFacts

CHECKS = StageChecks("ovirt_engine")

HEALTHY_BODY = "DB Up!Welcome to Health Status!"
EVENTS_QUOTED = 3


def _engine(facts: HostFacts) -> Engine | None:
    return facts.view(Engine) if isinstance(facts.get(Engine.SECTION), dict) else None


def _settings(profile: Profile) -> dict[str, Any]:
    return dict(profile.stage("ovirt_engine") or {}) if profile is not None else {}


def _no_engine() -> Outcome:
    return not_applicable("no engine observation in the facts (the engine gatherer did not run)")


def _api_gap(obs: Engine, key: str) -> Outcome | None:
    """A failure naming the API error when `key` (hosts, clusters, datacenters) was never read, else None."""
    if getattr(obs, key) is not None:
        return None
    err = obs.api.error
    if err:
        return failed(
            f"the engine API failed before {key} could be read: {_api_error_text(err)}",
            api_error=dataclasses.asdict(err),
        )
    return failed(f"the engine API gave no {key}", hint="see ovirt_engine.api-version")


def _api_error_text(err: ApiError) -> str:
    if err.kind == "auth" or err.status == 401:
        return f"HTTP 401 at {err.step}: the token was rejected (expired or invalid) - {err.message}"
    return f"{err.kind} error at {err.step}: {err.message}"


EngineCheck = Callable[[Engine, "Profile"], Outcome]


def on_engine(needs: str | None = None) -> Callable[[EngineCheck], Callable[[HostFacts, Profile], Outcome]]:
    """Adapt `fn(observation, profile)` to a check: no observation is N/A; `needs` an API section read."""

    def wrap(fn: EngineCheck) -> Callable[[HostFacts, Profile], Outcome]:
        @functools.wraps(fn)
        def check(facts: HostFacts, profile: Profile) -> Outcome:
            obs = _engine(facts)
            if obs is None:
                return _no_engine()
            gap = _api_gap(obs, needs) if needs else None
            return gap or fn(obs, profile)

        return check

    return wrap


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in str(text).split(".")[:3] if p.isdigit())


@CHECKS.check(
    "ovirt_engine.tls",
    "Engine TLS verifies against the engine CA",
    hint="pass --engine-ca <file> with the engine's CA (from the engine host's "
    "/etc/pki/ovirt-engine/ca.pem), or fix the engine's apache certificate chain",
)
@on_engine()
def tls(obs: Engine, profile: Profile) -> Outcome:
    t, record = obs.tls, obs.tls_record
    if t.ok is None:
        return failed(
            f"engine {obs.url} not reachable: {t.error}",
            hint="check the engine URL and that ovirt-engine and httpd run",
            **record,
        )
    if not t.ok:
        return failed(f"TLS verification failed: {t.error}", **record)
    return passed(f"engine TLS verified by {t.verified_by}", **record)


@CHECKS.check(
    "ovirt_engine.ca",
    "Engine CA certificate downloads and is a CA",
    requires=("ovirt_engine.tls",),
    hint="compare /etc/pki/ovirt-engine/ca.pem on the engine with the --engine-ca you passed",
)
@on_engine()
def ca(obs: Engine, profile: Profile) -> Outcome:
    c, record = obs.ca, obs.ca_record
    if not c.ok:
        return failed(f"engine CA: {c.error}", **record)
    subject, sha256 = (c.certificate.subject, c.certificate.sha256) if c.certificate else (None, None)
    if c.trust == "tofu":
        return failed(
            f"engine CA {subject} (sha256 {sha256}) was trusted on first use, not verified",
            level=Level.WARN,
            hint="pass --engine-ca with the CA obtained out of band and drop ca_trust_on_first_use",
            **record,
        )
    match = " and matches --engine-ca" if c.matches_user_ca else ""
    return passed(f"engine CA {subject} is a CA certificate{match}", **record)


def _health_problem(scheme: str, h: HealthReply, ok: bool | None) -> str | None:
    if ok:
        return None
    if h.status is None:
        return f"{scheme} {h.url}: request failed: {h.error}"
    return f"{scheme} {h.url}: HTTP {h.status} {h.body!r} (expected 200 and exactly {HEALTHY_BODY!r})"


@CHECKS.check(
    "ovirt_engine.health",
    "Engine health status is exactly DB Up over HTTPS and HTTP",
    requires=("ovirt_engine.tls",),
    hint="on the engine: systemctl status ovirt-engine postgresql httpd; see "
    "/var/log/ovirt-engine/server.log; "
    "for plain HTTP check apache's ovirt-engine proxy config (or set ovirt_engine.http_url in the profile)",
)
@on_engine()
def health(obs: Engine, profile: Profile) -> Outcome:
    h, record = obs.health, obs.health_record
    if h is None:
        return failed("the health servlet was not called (an earlier step failed)")
    http = h.http
    https_ok = h.ok if h.https_ok is None else h.https_ok  # an older observation has only `ok`
    problems = [
        p
        for p in (
            _health_problem("HTTPS", h, https_ok),
            _health_problem("HTTP", http, http.ok) if http is not None else None,
        )
        if p
    ]
    if http is None:
        problems.append("plain HTTP was not asked (an older observation)")
    if problems or http is None:
        return failed("; ".join(problems), **record)
    return passed(f"health: {h.body!r} over HTTPS and HTTP ({http.url})", **record)


# An engine whose health servlet does not say "DB Up" cannot authenticate (aaa-jdbc reads the database) nor
# answer the API: SSO, and through it every API check, depends on health and is skipped naming it.
@CHECKS.check(
    "ovirt_engine.sso-login",
    "SSO issues a token (scope ovirt-app-api)",
    requires=("ovirt_engine.health",),
    hint="check the user (--engine-user) and the password file / KVMQA_ENGINE_PASSWORD; "
    "on the engine see /var/log/ovirt-engine/engine.log",
)
@on_engine()
def sso_login(obs: Engine, profile: Profile) -> Outcome:
    s, record = obs.sso, obs.sso_record
    if s is None:
        return failed("SSO was not attempted (an earlier step failed)")
    if s.ok:
        return passed(f"SSO token issued to {s.user}", **record)
    return failed(f"SSO login as {s.user} failed: {s.error}", **record)


@CHECKS.check(
    "ovirt_engine.api-version",
    "Engine API answers with major version 4 at or above the minimum",
    requires=("ovirt_engine.sso-login",),
    hint="upgrade the engine, or lower ovirt_engine.min_version in the profile",
)
@on_engine()
def api_version(obs: Engine, profile: Profile) -> Outcome:
    """The version decides; the product name (oVirt Engine, a rebranded build) is only reported."""
    api, record = obs.api, obs.api_record
    if not api.product_name and api.major is None:
        err = api.error
        text = _api_error_text(err) if err else "no product_info"
        hint = "get a fresh token: check the engine's SSO and clock" if err and err.status == 401 else None
        return failed(f"engine API root: {text}", hint=hint, **record)
    minimum = str(_settings(profile).get("min_version", obs.min_version))
    version = api.full_version or f"{api.major}.{api.minor}"
    product = f"{api.product_name or 'unnamed product'} {version}"
    problems = []
    if api.major != 4:
        problems.append(f"API major version {api.major} is not 4")
    if _version_tuple(version) < _version_tuple(minimum):
        problems.append(f"version {version} is below the profile's minimum {minimum}")
    if problems:
        return failed(f"{product}: {'; '.join(problems)}", minimum=minimum, **record)
    return passed(f"{product} (minimum {minimum})", minimum=minimum, **record)


def _inventory(obs: Engine) -> list[InventoryHost]:
    return list(obs.inventory_hosts)


def _hosts(obs: Engine) -> list[EngineHost]:
    return list(obs.hosts or [])


@CHECKS.check(
    "ovirt_engine.hosts-known",
    "Every inventory ovirt-host is known to the engine",
    requires=("ovirt_engine.api-version",),
    hint="add the host in the engine (Compute > Hosts > New) or fix its inventory address",
)
@on_engine("hosts")
def hosts_known(obs: Engine, profile: Profile) -> Outcome:
    inv = _inventory(obs)
    if not inv:
        return not_applicable(
            "the inventory has no ovirt-host targets", engine_hosts=[h.name for h in _hosts(obs)]
        )
    unknown = [i.target for i in inv if not i.engine_host]
    engine_hosts = [f"{h.name} ({h.address})" for h in _hosts(obs)]
    if unknown:
        return failed(
            f"not known to the engine: {', '.join(unknown)}; "
            f"engine hosts: {', '.join(engine_hosts) or 'none'}",
            unknown=unknown,
            engine_hosts=engine_hosts,
        )
    return passed(
        f"{len(inv)} inventory host(s) known to the engine", matched={i.target: i.engine_host for i in inv}
    )


def _quote_events(host: EngineHost) -> str:
    events = host.events
    if not events:
        return " (no warning/error events found)"
    quoted = "; ".join(f"[{e.severity} {e.code}] {e.description}" for e in events[:EVENTS_QUOTED])
    return f": {quoted}"


@CHECKS.check(
    "ovirt_engine.hosts-up",
    "Inventory ovirt-hosts are up in the engine",
    requires=("ovirt_engine.api-version",),
    hint="read the quoted events; for non_operational fix the cause and activate the host, for "
    "install_failed see /var/log/ovirt-engine/host-deploy/ on the engine",
)
@on_engine("hosts")
def hosts_up(obs: Engine, profile: Profile) -> Outcome:
    by_id = {h.id: h for h in _hosts(obs)}
    matched = [by_id[i.engine_host_id] for i in _inventory(obs) if i.engine_host_id in by_id]
    if not matched:
        return not_applicable("no inventory ovirt-host is known to the engine (see ovirt_engine.hosts-known)")
    window = f"{obs.settle.polls} polls {obs.settle.interval_s:g} s apart"

    def seen(h: EngineHost) -> list[str | None]:
        return list(h.status_history) or [h.status]

    flapping = [h for h in matched if len(set(seen(h))) > 1]
    down = [h for h in matched if h.status != "up" and h not in flapping]
    statuses = {h.name: h.status for h in matched}
    history = {h.name: seen(h) for h in matched}
    if down or flapping:
        text = [
            f"{h.name} is flapping: {' -> '.join(map(str, history[h.name]))} within {window}"
            f"{_quote_events(h)}"
            for h in flapping
        ]
        text += [f"{h.name} is {h.status}{_quote_events(h)}" for h in down]
        return failed(
            " | ".join(text),
            statuses=statuses,
            history=history,
            events={h.name: [dataclasses.asdict(e) for e in h.events] for h in down + flapping},
        )
    return passed(f"up and stable ({window}): {', '.join(statuses)}", statuses=statuses, history=history)


def _host_flags(inv: InventoryHost) -> tuple[set[str] | None, bool]:
    """The host's flags and whether they include vdsm's model_* tokens."""
    if inv.vdsm_cpu_flags:
        return set(inv.vdsm_cpu_flags) | set(inv.cpu_flags or ()), True
    if inv.cpu_flags:
        return set(inv.cpu_flags), False
    return None, False


def _cpu_verdict(inv: InventoryHost, cluster: Cluster, obs: Engine, table: str | None) -> tuple[str, str]:
    """('fail'|'pass'|'undecided', text) for one host in its cluster: the text names cluster, type, level."""
    name, version = cluster.cpu_type, cluster.version
    at = f"cluster {cluster.name}, level {version}"
    where = f"cluster {cluster.name}, CPU type {name!r}, level {version}"
    level = obs.cluster_levels.get(version) if version is not None else None
    offered = [t.name for t in level.cpu_types] if level else []
    if offered and name not in offered:
        return "fail", f"{name!r} is not offered by the engine at level {version} (cluster {cluster.name})"
    found = cpu_list.find(name, version, table)
    if found.cpu is None:
        return "undecided", f"{found.note} ({where})"
    flags, with_models = _host_flags(inv)
    if flags is None:
        return "undecided", f"no CPU flags known (cpu stage facts or vdsm cpuFlags) ({where})"
    required = found.cpu.flags if with_models else found.cpu.plain_flags
    missing = cpu_list.missing_flags(required, flags)
    if missing:
        return "fail", f"lacks {', '.join(missing)} required by {name!r} ({at})"
    unchecked = (
        "" if with_models else f"; {', '.join(found.cpu.model_flags)} not checked without vdsm cpuFlags"
    )
    return "pass", f"has {', '.join(required)} for {name!r} ({at}){unchecked}"


CPU_WORDS = {"fail": "fails", "undecided": "cannot be judged", "pass": "passes"}


@CHECKS.check(
    "ovirt_engine.cpu-compat",
    "Host CPUs provide the cluster CPU type's required flags",
    requires=("ovirt_engine.api-version",),
    hint="choose a lower cluster CPU type, update the host CPU microcode/firmware, or move the host to a "
    "cluster whose CPU type it supports (engine reason CPU_TYPE_INCOMPATIBLE_WITH_CLUSTER); "
    "a host that cannot be judged needs its cpu/vdsm facts, or a ServerCPUList for its level",
)
@on_engine("clusters")
def cpu_compat(obs: Engine, profile: Profile) -> Outcome:
    """The worst over every inventory host: a failing or undecided host is never hidden by another's pass."""
    table = _settings(profile).get("server_cpu_list")
    hosts = {h.id: h for h in _hosts(obs)}
    clusters = {c.id: c for c in obs.clusters or []}
    results: dict[str, Any] = {"fail": [], "undecided": [], "pass": []}  # lists of texts; Any: spread into **
    for inv in _inventory(obs):
        host = hosts.get(inv.engine_host_id)
        cluster = clusters.get(host.cluster_id) if host else None
        if cluster is None:
            verdict, text = "undecided", "not in an engine cluster (see ovirt_engine.hosts-known)"
        else:
            verdict, text = _cpu_verdict(inv, cluster, obs, table)
        results[verdict].append(f"{inv.target} {CPU_WORDS[verdict]}: {text}")
    line = "; ".join(results["fail"] + results["undecided"] + results["pass"])
    if results["fail"]:
        return failed(line, **results)
    if results["undecided"]:
        return undecided(line, **results)
    if results["pass"]:
        return passed(line, **results)
    return not_applicable("no inventory ovirt-host to compare", **results)


@CHECKS.check(
    "ovirt_engine.datacenters",
    "Data centers are up",
    requires=("ovirt_engine.api-version",),
    hint="an uninitialized data center needs a storage domain attached; a non-responsive or "
    "problematic one needs its SPM host and master storage domain back",
)
@on_engine("datacenters")
def datacenters(obs: Engine, profile: Profile) -> Outcome:
    dcs = obs.datacenters
    if not dcs:
        return failed("the engine has no data center")
    statuses = {dc.name: dc.status for dc in dcs}
    bad = {n: s for n, s in statuses.items() if s != "up"}
    if not bad:
        return passed(f"up: {', '.join(statuses)}", statuses=statuses)
    text = ", ".join(f"{n} is {s}" for n, s in bad.items())
    if set(bad.values()) == {"uninitialized"}:
        return failed(text, level=Level.WARN, statuses=statuses)
    return failed(text, statuses=statuses)


DOWN_DOMAIN = frozenset({"inactive", "unknown", "locked", "detaching", "mixed"})


@CHECKS.check(
    "ovirt_engine.storage-domains",
    "Each data center has an active master domain, none down",
    requires=("ovirt_engine.api-version",),
    hint="activate the domain (Storage > Domains > Data Center > Activate); check the storage server "
    "and the hosts' connections to it",
)
@on_engine("datacenters")
def storage_domains(obs: Engine, profile: Profile) -> Outcome:
    problems: list[str] = []
    warnings: list[str] = []
    dcs = obs.datacenters or []
    for dc in dcs:
        domains = dc.storage_domains
        master = [d for d in domains if d.master]
        if not master and dc.status != "uninitialized":
            problems.append(f"{dc.name}: no master storage domain attached")
        for d in domains:
            role = "master domain" if d.master else f"{d.type} domain"
            if d.status in DOWN_DOMAIN or (d.master and d.status != "active"):
                problems.append(f"{dc.name}: {role} {d.name} is {d.status}")
            elif d.status == "maintenance":
                warnings.append(f"{dc.name}: {role} {d.name} is in maintenance")
    unattached = [d.name for d in obs.storage_domains if d.status == "unattached"]
    attached = {dc.name: [dataclasses.asdict(d) for d in dc.storage_domains] for dc in dcs}
    details: dict[str, Any] = {"datacenters": attached, "unattached": unattached}
    if problems:
        return failed("; ".join(problems + warnings), **details)
    if warnings:
        return failed("; ".join(warnings), level=Level.WARN, **details)
    active = sum(len(dc.storage_domains) for dc in dcs)
    extra = f"; unattached: {', '.join(unattached)}" if unattached else ""
    return passed(f"{active} attached domain(s) active{extra}", **details)
