"""oVirt engine client: gathers one JSON-serialisable observation of an engine (`facts["engine"]`).

Order of calls, each over TLS verified against one trust anchor:

1. CA download, `GET /ovirt-engine/services/pki-resource?resource=ca-certificate&format=X509-PEM-CA`.
   The anchor for this download is `--engine-ca` when given, else the system trust store, else
   (only if the profile says `ca_trust_on_first_use: true`) nothing, recorded as `trust: "tofu"`.
   The PEM must parse as a CA certificate; with `--engine-ca` the two must be the same certificate.
2. Every later call verifies against `--engine-ca` or the downloaded CA.
3. `GET /ovirt-engine/services/health` over HTTPS and over plain HTTP (OST checks both): 200 with exactly
   `DB Up!Welcome to Health Status!` on each. The HTTP URL is the profile's `http_url`, else `http://<engine
   host>`.
4. `POST /ovirt-engine/sso/oauth/token` (`scope=ovirt-app-api`) for a bearer token.
5. `ovirtsdk4.Connection(url=.../ovirt-engine/api, token=..., ca_file=...)`: API root, hosts,
   events of unhealthy hosts, clusters, cluster levels (`cpu_types`), data centers and their
   attached storage domains, and all storage domains. The host list is read `settle_polls` times,
   `settle_interval` seconds apart: a host whose status changes in that window is flapping (OST's wait).

The password (`RunOptions.engine_password`, a `Secret`) and the token never enter the
observation, a log record or an exception message kept in it.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from kvmqa.stages.ovirt_engine import web

log = logging.getLogger("kvmqa.stages.ovirt_engine.client")

HEALTHY_BODY = "DB Up!Welcome to Health Status!"
HEALTH_PATH = "/ovirt-engine/services/health"
CA_PATH = "/ovirt-engine/services/pki-resource?resource=ca-certificate&format=X509-PEM-CA"
TOKEN_PATH = "/ovirt-engine/sso/oauth/token"
API_PATH = "/ovirt-engine/api"
# Host states worth the events that explain them (HostStatus wire values).
EXPLAIN_STATUSES = frozenset({"non_operational", "install_failed", "error", "non_responsive", "down"})
EVENT_SEVERITIES = frozenset({"warning", "error", "alert"})


class EngineSession(Protocol):
    """What `gather_engine` needs from the plugin's HostSession."""

    options: Any  # kvmqa.config.options.RunOptions
    profile: Any  # kvmqa.config.profile.Profile: .stage(name) -> dict
    target: Any  # .name, .host, .roles, .vars

    @property
    def all_targets(self) -> Sequence[Any]: ...

    @property
    def facts(self) -> Mapping[str, Any]: ...


@dataclass
class Settings:
    """The `ovirt_engine` stage settings a profile may give."""

    min_version: str = "4.5"
    ca_trust_on_first_use: bool = False
    timeout: float = 30.0
    events_max: int = 20
    server_cpu_list: str | None = None
    http_url: str | None = None  # where the plain-HTTP health servlet is (default http://<engine host>)
    settle_polls: int = 3  # host list reads in the settling window (OST: 12 polls of 10 s)
    settle_interval: float = 2.0

    @classmethod
    def from_profile(cls, profile: Any) -> Settings:
        raw = dict(profile.stage("ovirt_engine") or {}) if profile is not None else {}
        known = {k: raw[k] for k in cls.__dataclass_fields__ if k in raw}
        return cls(**known)


@dataclass
class _Secrets:
    """Values that must never leave this module; `scrub` removes them from any text."""

    values: list[str] = field(default_factory=list)

    def add(self, value: str | None) -> None:
        if value:
            self.values.append(value)

    def scrub(self, text: str) -> str:
        for value in self.values:
            text = text.replace(value, "***")
            text = text.replace(urllib.parse.quote_plus(value), "***")
        return text


def base_url(session: EngineSession) -> str:
    """`https://engine.example` from `--engine-url` (with or without `/ovirt-engine/api`) or the target."""
    url = session.options.engine_url or session.target.vars.get("engine_url")
    if not url:
        host = getattr(session.target, "host", None) or session.target.name
        url = f"https://{host}"
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def gather_engine(session: EngineSession) -> dict[str, Any]:
    """The engine observation for `facts["engine"]`; every failure is recorded, not raised."""
    settings = Settings.from_profile(session.profile)
    secrets = _Secrets()
    password = session.options.engine_password
    secrets.add(password.reveal() if password else None)
    obs: dict[str, Any] = {
        "url": base_url(session),
        "user": session.options.engine_user,
        "min_version": settings.min_version,
    }
    with tempfile.TemporaryDirectory(prefix="kvmqa-engine-") as tmp:
        anchor = _ca_step(obs, session, settings, Path(tmp))
        if anchor is not None:
            _health_step(obs, anchor, settings)
            token = _sso_step(obs, session, anchor, settings, secrets)
            if token is not None:
                secrets.add(token)
                _api_step(obs, session, anchor, settings, token, secrets)
    return json.loads(secrets.scrub(json.dumps(obs)))


@dataclass(frozen=True)
class _Anchor:
    """The CA every call after the download verifies against."""

    ca_file: Path
    label: str

    def context(self) -> Any:
        return web.verified_context(self.ca_file)


def _ca_step(obs: dict[str, Any], session: EngineSession, settings: Settings, tmp: Path) -> _Anchor | None:
    url = obs["url"] + CA_PATH
    user_ca: Path | None = session.options.engine_ca
    ca: dict[str, Any] = {"url": url, "user_ca_file": str(user_ca) if user_ca else None}
    obs["ca"] = ca
    if not url.startswith("https://"):
        obs["tls"] = {
            "ok": False,
            "error": f"engine URL {obs['url']} is not https; kvmqa sends credentials only over TLS",
        }
        return None
    if user_ca is not None:
        ca["trust"] = "user-ca"
        if not Path(user_ca).is_file():
            obs["tls"] = {"ok": False, "ca_file": str(user_ca), "error": f"CA file {user_ca} does not exist"}
            return None
        context, label = web.verified_context(Path(user_ca)), f"CA file {user_ca}"
    elif settings.ca_trust_on_first_use:
        ca["trust"] = "tofu"
        context, label = web.unverified_context(), "nothing (trust on first use)"
    else:
        ca["trust"] = "system"
        context, label = web.verified_context(None), "the system trust store"
    try:
        reply = web.request(url, context, timeout=settings.timeout, trust_label=label)
    except web.TlsError as exc:
        hint = "" if user_ca else " (pass --engine-ca with the engine CA obtained out of band)"
        obs["tls"] = {"ok": False, "ca_file": str(user_ca) if user_ca else None, "error": f"{exc}{hint}"}
        return None
    except web.TransportError as exc:
        obs["tls"] = {"ok": None, "error": str(exc)}
        ca.update(ok=False, error=str(exc))
        return None
    obs["tls"] = {"ok": True, "ca_file": str(user_ca) if user_ca else "downloaded", "verified_by": label}
    if reply.status != 200:
        ca.update(ok=False, status=reply.status, error=f"HTTP {reply.status}: {reply.body[:200]}")
        return None
    try:
        info = web.parse_ca(reply.body.encode())
    except ValueError as exc:
        ca.update(ok=False, status=200, error=f"the pki-resource reply is not a PEM certificate: {exc}")
        return None
    ca.update(status=200, certificate=info.to_json(), ok=info.is_ca)
    if not info.is_ca:
        ca["error"] = (
            f"the downloaded certificate ({info.subject}) is not a CA (BasicConstraints CA:FALSE or absent)"
        )
    downloaded = tmp / "engine-ca.pem"
    downloaded.write_text(reply.body)
    if user_ca is not None:
        mine = web.parse_ca(Path(user_ca).read_bytes())
        ca["matches_user_ca"] = mine.sha256 == info.sha256
        if not ca["matches_user_ca"]:
            ca.update(
                ok=False,
                error=f"the engine's CA ({info.subject}, sha256 {info.sha256[:16]}…) differs from "
                f"--engine-ca {user_ca} ({mine.subject}, sha256 {mine.sha256[:16]}…)",
            )
        anchor = _Anchor(Path(user_ca), f"CA file {user_ca}")
    else:
        anchor = _Anchor(downloaded, f"the CA downloaded from {obs['url']}")
    log.info("engine CA %s (%s), trust %s", info.subject, info.sha256[:16], ca["trust"])
    return anchor


def _health_step(obs: dict[str, Any], anchor: _Anchor, settings: Settings) -> None:
    url = obs["url"] + HEALTH_PATH
    http = _http_health(obs, anchor, settings)
    try:
        reply = web.request(url, anchor.context(), timeout=settings.timeout, trust_label=anchor.label)
    except (web.TlsError, web.TransportError) as exc:
        obs["health"] = {"ok": False, "url": url, "error": str(exc), "http": http}
        _tls_failed_later(obs, exc)
        return
    https_ok = reply.status == 200 and reply.body == HEALTHY_BODY
    obs["health"] = {
        "ok": https_ok and bool(http.get("ok")),
        "https_ok": https_ok,
        "url": url,
        "status": reply.status,
        "body": reply.body[:500],
        "http": http,
    }


def _http_health(obs: dict[str, Any], anchor: _Anchor, settings: Settings) -> dict[str, Any]:
    """The same servlet over plain HTTP (no credentials are sent; a redirect to https verifies as the
    rest)."""
    base = settings.http_url or f"http://{urllib.parse.urlsplit(obs['url']).hostname}"
    url = base.rstrip("/") + HEALTH_PATH
    if not url.startswith("http://"):
        return {"ok": False, "url": url, "error": f"http_url {base} is not an http:// URL"}
    try:
        reply = web.request(url, anchor.context(), timeout=settings.timeout, trust_label=anchor.label)
    except (web.TlsError, web.TransportError) as exc:
        return {"ok": False, "url": url, "error": str(exc)}
    return {
        "ok": reply.status == 200 and reply.body == HEALTHY_BODY,
        "url": url,
        "status": reply.status,
        "body": reply.body[:500],
    }


def _tls_failed_later(obs: dict[str, Any], exc: Exception) -> None:
    """A verification failure after the CA step (e.g. the server cert is not issued by the engine CA)."""
    if isinstance(exc, web.TlsError):
        obs["tls"] = dict(obs.get("tls") or {}, ok=False, error=str(exc))


def _sso_step(
    obs: dict[str, Any], session: EngineSession, anchor: _Anchor, settings: Settings, secrets: _Secrets
) -> str | None:
    url = obs["url"] + TOKEN_PATH
    sso: dict[str, Any] = {"url": url, "user": session.options.engine_user, "scope": "ovirt-app-api"}
    obs["sso"] = sso
    password = session.options.engine_password
    if not password:
        sso.update(ok=False, error="no engine password: set KVMQA_ENGINE_PASSWORD or give a password file")
        return None
    form = urllib.parse.urlencode(
        {
            "grant_type": "password",
            "scope": "ovirt-app-api",
            "username": session.options.engine_user,
            "password": password.reveal(),
        }
    ).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
    try:
        reply = web.request(
            url,
            anchor.context(),
            data=form,
            headers=headers,
            timeout=settings.timeout,
            trust_label=anchor.label,
        )
    except (web.TlsError, web.TransportError) as exc:
        sso.update(ok=False, error=secrets.scrub(str(exc)))
        _tls_failed_later(obs, exc)
        return None
    sso["status"] = reply.status
    try:
        body = json.loads(reply.body)
    except ValueError:
        body = {}
    if reply.status == 200 and isinstance(body, dict) and body.get("access_token"):
        sso.update(ok=True, token_type=body.get("token_type"))
        log.info("SSO token issued for %s", session.options.engine_user)
        return str(body["access_token"])
    reason = body.get("error_description") or body.get("error") if isinstance(body, dict) else None
    sso.update(ok=False, error=secrets.scrub(f"HTTP {reply.status}: {reason or reply.body[:200]}"))
    return None


def _api_step(
    obs: dict[str, Any],
    session: EngineSession,
    anchor: _Anchor,
    settings: Settings,
    token: str,
    secrets: _Secrets,
) -> None:
    import ovirtsdk4 as sdk  # pycurl and libxml2 behind it: imported only when an engine is checked

    password = session.options.engine_password
    conn = sdk.Connection(
        url=obs["url"] + API_PATH,
        token=token,
        username=session.options.engine_user,
        password=password.reveal() if password else None,
        ca_file=str(anchor.ca_file),
        timeout=int(settings.timeout),
    )
    api: dict[str, Any] = {"url": obs["url"] + API_PATH}
    obs["api"] = api
    try:
        for name, step in _API_STEPS:
            try:
                step(obs, conn, session, settings)
            except sdk.AuthError as exc:
                api.update(
                    ok=False,
                    error={
                        "kind": "auth",
                        "status": getattr(exc, "code", None),
                        "step": name,
                        "message": secrets.scrub(str(exc)),
                    },
                )
                return
            except sdk.Error as exc:
                kind = "tls" if _looks_like_tls(str(exc)) else "api"
                api.update(
                    ok=False,
                    error={
                        "kind": kind,
                        "status": getattr(exc, "code", None),
                        "step": name,
                        "message": secrets.scrub(str(exc)),
                    },
                )
                if kind == "tls":
                    obs["tls"] = dict(
                        obs.get("tls") or {}, ok=False, error=f"{anchor.label}: {secrets.scrub(str(exc))}"
                    )
                return
        api["ok"] = True
    finally:
        try:
            conn.close(logout=True)
        except Exception as exc:  # noqa: BLE001 - a failed revoke must not hide the observation
            log.debug("token revoke failed: %s", secrets.scrub(str(exc)))


def _looks_like_tls(message: str) -> bool:
    lowered = message.lower()
    return "ssl" in lowered or "certificate" in lowered


def _enum(value: Any) -> str | None:
    return None if value is None else str(getattr(value, "value", value))


def _version_text(version: Any) -> str | None:
    if version is None or version.major is None:
        return None
    return f"{version.major}.{version.minor if version.minor is not None else 0}"


def _system(obs: dict[str, Any], conn: Any, session: EngineSession, settings: Settings) -> None:
    api = conn.system_service().get()
    info = api.product_info
    version = info.version if info else None
    obs["api"].update(
        product_name=info.name if info else None,
        vendor=info.vendor if info else None,
        full_version=version.full_version if version else None,
        major=version.major if version else None,
        minor=version.minor if version else None,
    )


def _hosts(obs: dict[str, Any], conn: Any, session: EngineSession, settings: Settings) -> None:
    hosts = _host_list(conn)
    polls = max(1, int(settings.settle_polls))
    for h in hosts:
        h["status_history"] = [h["status"]]
    for _ in range(polls - 1):  # the settling window: a host that changes state in it is flapping
        time.sleep(max(0.0, float(settings.settle_interval)))
        now = {h["id"]: h for h in _host_list(conn)}
        for h in hosts:
            if h["id"] in now:
                h["status_history"].append(now[h["id"]]["status"])
                h["status"] = now[h["id"]]["status"]
    obs["settle"] = {"polls": polls, "interval_s": float(settings.settle_interval)}
    obs["hosts"] = hosts
    obs["inventory_hosts"] = [_match_inventory(t, hosts, session) for t in _ovirt_host_targets(session)]
    events = conn.system_service().events_service()
    for h in hosts:
        if h["status"] in EXPLAIN_STATUSES or len(set(h["status_history"])) > 1:
            h["events"] = _host_events(events, h, settings)


def _host_list(conn: Any) -> list[dict[str, Any]]:
    hosts = []
    for h in conn.system_service().hosts_service().list():
        hosts.append(
            {
                "id": h.id,
                "name": h.name,
                "address": h.address,
                "status": _enum(h.status),
                "status_detail": h.status_detail,
                "cluster_id": h.cluster.id if h.cluster else None,
                "cpu_name": h.cpu.name if h.cpu else None,
                "cpu_type": h.cpu.type if h.cpu else None,
            }
        )
    return hosts


def _ovirt_host_targets(session: EngineSession) -> list[Any]:
    return [t for t in (session.all_targets or ()) if "ovirt-host" in tuple(t.roles)]


def _match_inventory(target: Any, hosts: list[dict[str, Any]], session: EngineSession) -> dict[str, Any]:
    keys = {str(k) for k in (getattr(target, "host", None), target.name) if k}
    match = next((h for h in hosts if h["address"] in keys or h["name"] in keys), None)
    entry: dict[str, Any] = {
        "target": target.name,
        "address": getattr(target, "host", None),
        "engine_host": match["name"] if match else None,
        "engine_host_id": match["id"] if match else None,
    }
    entry.update(_host_cpu_flags(session, target))
    return entry


def _host_cpu_flags(session: EngineSession, target: Any) -> dict[str, Any]:
    """The inventory host's CPU flags: cpu-stage flags and, when known, vdsm's cpuFlags (with model_*)."""
    facts: Mapping[str, Any] | None = None
    source = None
    if target.name == session.target.name:
        facts, source = session.facts, "this target's facts"
    else:
        getter: Callable[[str], Mapping[str, Any] | None] | None = getattr(session, "facts_of", None)
        if getter is not None:
            facts, source = getter(target.name), "the run's facts for that host"
        if not facts:
            from kvmqa.core.paths import safe_name  # the plugin's reports/<host>/ naming

            path = Path(session.options.reports_dir) / safe_name(target.name) / "facts.json"
            if path.is_file():
                facts, source = json.loads(path.read_text()), str(path)
    if not facts:
        return {"cpu_flags": None, "vdsm_cpu_flags": None, "flags_source": None}
    cpu_flags = (facts.get("cpu") or {}).get("flags")
    vdsm_flags = ((facts.get("vdsm") or {}).get("capabilities") or {}).get("cpu_flags")
    return {
        "cpu_flags": list(cpu_flags) if cpu_flags else None,
        "vdsm_cpu_flags": list(vdsm_flags) if vdsm_flags else None,
        "flags_source": source,
    }


def _host_events(events_service: Any, host: dict[str, Any], settings: Settings) -> list[dict[str, Any]]:
    found = events_service.list(search=f"host.name={host['name']}", max=settings.events_max)
    out = []
    for e in found:
        if e.host is not None and e.host.id not in (None, host["id"]):
            continue
        severity = _enum(e.severity)
        if severity not in EVENT_SEVERITIES:
            continue
        out.append(
            {
                "code": e.code,
                "severity": severity,
                "time": e.time.isoformat() if e.time else None,
                "description": e.description,
            }
        )
    return out


def _clusters(obs: dict[str, Any], conn: Any, session: EngineSession, settings: Settings) -> None:
    clusters = []
    for c in conn.system_service().clusters_service().list():
        clusters.append(
            {
                "id": c.id,
                "name": c.name,
                "cpu_type": c.cpu.type if c.cpu else None,
                "architecture": _enum(c.cpu.architecture) if c.cpu else None,
                "version": _version_text(c.version),
                "data_center_id": c.data_center.id if c.data_center else None,
            }
        )
    obs["clusters"] = clusters
    levels_service = conn.system_service().cluster_levels_service()
    levels: dict[str, Any] = {}
    for version in sorted({c["version"] for c in clusters if c["version"]}):
        level = levels_service.level_service(version).get()
        levels[version] = {
            "cpu_types": [
                {"name": t.name, "level": t.level, "architecture": _enum(t.architecture)}
                for t in (level.cpu_types or [])
            ]
        }
    obs["cluster_levels"] = levels


def _datacenters(obs: dict[str, Any], conn: Any, session: EngineSession, settings: Settings) -> None:
    dcs_service = conn.system_service().data_centers_service()
    dcs = []
    for dc in dcs_service.list():
        attached = dcs_service.data_center_service(dc.id).storage_domains_service().list()
        dcs.append(
            {
                "id": dc.id,
                "name": dc.name,
                "status": _enum(dc.status),
                "version": _version_text(dc.version),
                "storage_domains": [_domain(sd) for sd in attached],
            }
        )
    obs["datacenters"] = dcs


def _domain(sd: Any) -> dict[str, Any]:
    return {
        "id": sd.id,
        "name": sd.name,
        "type": _enum(sd.type),
        "status": _enum(sd.status),
        "master": bool(sd.master),
        "external_status": _enum(sd.external_status),
    }


def _storage_domains(obs: dict[str, Any], conn: Any, session: EngineSession, settings: Settings) -> None:
    obs["storage_domains"] = [_domain(sd) for sd in conn.system_service().storage_domains_service().list()]


_API_STEPS: tuple[tuple[str, Callable[[dict[str, Any], Any, EngineSession, Settings], None]], ...] = (
    ("system", _system),
    ("hosts", _hosts),
    ("clusters", _clusters),
    ("datacenters", _datacenters),
    ("storage_domains", _storage_domains),
)
