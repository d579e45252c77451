"""A stand-in oVirt engine: a real HTTPS server (stdlib http.server + ssl) on 127.0.0.1.

It serves what kvmqa's engine stage calls, in the documented shapes
(/work/shared/reference/ovirt-engine-and-vdsm.md sections 1 and 4, ovirt-engine-api-model types):

- `GET  /ovirt-engine/services/health` -> 200 `DB Up!Welcome to Health Status!` (text/html) or 500 `DB Down!`;
  also over plain HTTP on a second port (`http_url`), which serves nothing else
- `GET /ovirt-engine/api/hosts`: a host named in `status_walks` reports its next status on each listing
(flapping)
- `GET  /ovirt-engine/services/pki-resource?resource=ca-certificate&format=X509-PEM-CA` -> the CA PEM; bad
values 400
- `POST /ovirt-engine/sso/oauth/token` (form, `scope=ovirt-app-api` mandatory) -> JSON bearer token
- `POST /ovirt-engine/services/sso-logout` -> JSON (the SDK revokes its token on close)
- `GET
/ovirt-engine/api[/hosts|/events|/clusters|/clusterlevels/<v>|/datacenters|/datacenters/<id>/storagedomains|
  /storagedomains]` -> XML, `Authorization: Bearer` required; an expired token gives 401 with an empty body.

It is not an engine: it holds a fixed `Scenario` and answers from it. The real `ovirtsdk4` client parses
every API reply, so a shape mistake here fails the tests. A scenario may also carry bodies real engines
returned (`Scenario.recorded`, from tests/recorded/ovirt-engine/): those are served verbatim.
"""

from __future__ import annotations

import json
import secrets
import ssl
import threading
import urllib.parse
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.standins.pki import Pki

HEALTHY = (200, "DB Up!Welcome to Health Status!")
DB_DOWN = (500, "DB Down!")
API = "/ovirt-engine/api"


@dataclass
class Scenario:
    """What the stand-in engine reports. Lists hold plain dicts in the wire's snake_case."""

    name: str = "healthy"
    health: tuple[int, str] = HEALTHY
    http_health: tuple[int, str] | None = None  # the plain-HTTP servlet's answer (None: the same as `health`)
    # host name -> statuses successive GET /hosts listings report (the last one sticks): a flapping host
    status_walks: dict[str, list[str]] = field(default_factory=dict)
    user: str = "admin@internal"
    password: str = "s3cret-Engine-pw!"
    token_expired: bool = False  # every API call answers 401, as an expired token does
    full_version: str = "4.5.6-1.el9"
    product_name: str = "oVirt Engine"  # a rebranded build answers with its own name
    hosts: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    clusters: list[dict[str, Any]] = field(default_factory=list)
    cluster_levels: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    datacenters: list[dict[str, Any]] = field(default_factory=list)
    storage_domains: list[dict[str, Any]] = field(default_factory=list)  # each may carry `data_center`
    # Statuses a host added with POST /hosts reports on successive GETs (the last one sticks):
    # by default a deploy that flaps out of `up` once, as OST's wait_for_flapping_host expects.
    deploy_statuses: list[str] = field(
        default_factory=lambda: ["installing", "initializing", "up", "non_responsive", "up", "up", "up"]
    )
    # API path below /ovirt-engine/api ("" for the root, "hosts", "datacenters/<id>/storagedomains", ...) ->
    # an XML body a real engine returned, served as it is instead of the rendered one
    recorded: dict[str, str] = field(default_factory=dict)


DC_ID = "11111111-1111-1111-1111-111111111111"
CLUSTER_ID = "22222222-2222-2222-2222-222222222222"
HOST0_ID = "33333333-3333-3333-3333-333333333330"
HOST1_ID = "33333333-3333-3333-3333-333333333331"


def healthy() -> Scenario:
    """One data center and cluster (4.8, Intel Haswell Family), two hosts up, an active master domain."""
    return Scenario(
        hosts=[
            {
                "id": HOST0_ID,
                "name": "host0",
                "address": "192.0.2.10",
                "status": "up",
                "cpu_name": "Intel Core Processor (Haswell, no TSX)",
                "cpu_type": "Intel Haswell Family",
            },
            {
                "id": HOST1_ID,
                "name": "host1",
                "address": "192.0.2.11",
                "status": "up",
                "cpu_name": "Intel Core Processor (Haswell, no TSX)",
                "cpu_type": "Intel Haswell Family",
            },
        ],
        clusters=[
            {
                "id": CLUSTER_ID,
                "name": "Default",
                "cpu_type": "Intel Haswell Family",
                "architecture": "x86_64",
                "version": (4, 8),
                "data_center": DC_ID,
            }
        ],
        cluster_levels={
            "4.8": [
                {"name": "Intel Nehalem Family", "level": 1, "architecture": "x86_64"},
                {"name": "Intel Haswell Family", "level": 9, "architecture": "x86_64"},
                {"name": "Intel Skylake Server Family", "level": 15, "architecture": "x86_64"},
                {"name": "AMD EPYC", "level": 3, "architecture": "x86_64"},
            ]
        },
        datacenters=[{"id": DC_ID, "name": "Default", "status": "up", "version": (4, 8)}],
        storage_domains=[
            {
                "id": "44444444-4444-4444-4444-444444444440",
                "name": "nfs-data",
                "type": "data",
                "status": "active",
                "master": True,
                "data_center": DC_ID,
            },
            {
                "id": "44444444-4444-4444-4444-444444444441",
                "name": "iso",
                "type": "iso",
                "status": "unattached",
                "master": False,
            },
        ],
    )


def db_down() -> Scenario:
    return replace(healthy(), name="db-down", health=DB_DOWN)


def token_expired() -> Scenario:
    return replace(healthy(), name="token-expired", token_expired=True)


NONOP_TEXT = (
    "Host host1 moved to Non-Operational state as host CPU type is not supported in this cluster "
    "compatibility version or is not supported at all"
)
MISSING_FLAGS_TEXT = (
    "The host CPU does not match the Cluster CPU Type and is running in a degraded mode. "
    "It is missing the following CPU flags: model_Skylake-Server. Please update the host CPU "
    "microcode or change the Cluster CPU Type."
)


def host_non_operational() -> Scenario:
    """host1 is non_operational; the engine logged why (reference 4.2 wording)."""
    s = healthy()
    s.name = "host-non-operational"
    s.hosts[1]["status"] = "non_operational"
    s.events = [
        {
            "id": "9001",
            "code": 12,
            "severity": "error",
            "host": HOST1_ID,
            "host_name": "host1",
            "time": "2025-11-20T10:00:00.000+00:00",
            "description": NONOP_TEXT,
        },
        {
            "id": "9002",
            "code": 9000,
            "severity": "normal",
            "host": HOST1_ID,
            "host_name": "host1",
            "time": "2025-11-20T09:59:00.000+00:00",
            "description": "Status of host host1 was set to Up.",
        },
        {
            "id": "9003",
            "code": 12,
            "severity": "error",
            "host": HOST0_ID,
            "host_name": "host0",
            "time": "2025-11-20T09:00:00.000+00:00",
            "description": "unrelated event of host0",
        },
    ]
    return s


def cpu_type_skylake() -> Scenario:
    """The cluster asks for Intel Skylake Server Family; the inventory host is a Haswell."""
    s = healthy()
    s.name = "cpu-lacks-flag"
    s.clusters[0]["cpu_type"] = "Intel Skylake Server Family"
    return s


def storage_down() -> Scenario:
    s = healthy()
    s.name = "storage-down"
    s.storage_domains[0]["status"] = "inactive"
    return s


def http_health_wrong() -> Scenario:
    """HTTPS answers DB Up; plain HTTP answers with a trailing newline (not the exact body OST requires)."""
    return replace(healthy(), name="http-health-wrong", http_health=(200, HEALTHY[1] + "\n"))


def host_flapping() -> Scenario:
    """host1 reports up, non_responsive, up on three successive host listings, then stays up."""
    s = healthy()
    s.name = "host-flapping"
    s.status_walks = {"host1": ["up", "non_responsive", "up"]}
    return s


RECORDED = Path(__file__).resolve().parents[1] / "recorded" / "ovirt-engine"
# API path -> file in tests/recorded/ovirt-engine (README.md there names each file's source)
RECORDED_FILES = {
    "": "api.xml",
    "hosts": "hosts.xml",
    "clusters": "clusters.xml",
    "datacenters": "datacenters.xml",
    "storagedomains": "storagedomains.xml",
    **{
        f"datacenters/{dc}/storagedomains": f"datacenters-{dc[:8]}-storagedomains.xml"
        for dc in ("2812e1c2-fb19-4bf9-ac42-74c069a5e507", "944df9ee-3274-43c4-908f-8c35e59e483b")
    },
}


def recorded() -> Scenario:
    """Real engines' replies (an oVirt 4.1 API root; hosts, clusters, data centers and storage domains of an
    RHV 4.3 engine). Not recorded, so rendered: cluster levels 4.2 and 4.3, each offering the CPU types of the
    engine's ServerCPUList for that level (what /clusterlevels/<v> lists), and no events."""
    from kvmqa.stages.ovirt_engine import cpu_list

    levels = {
        v: [{"name": c.name, "level": c.level, "architecture": c.arch} for c in cpu_list.load()[v]]
        for v in ("4.2", "4.3")
    }
    bodies = {path: (RECORDED / name).read_text() for path, name in RECORDED_FILES.items()}
    return Scenario(name="recorded", cluster_levels=levels, recorded=bodies)


SCENARIOS = {
    f.__name__: f
    for f in (
        healthy,
        db_down,
        token_expired,
        host_non_operational,
        cpu_type_skylake,
        storage_down,
        http_health_wrong,
        host_flapping,
    )
}


def _el(parent: ET.Element, tag: str, text: Any = None, **attrs: str) -> ET.Element:
    e = ET.SubElement(parent, tag, attrs)
    if text is not None:
        e.text = str(text).lower() if isinstance(text, bool) else str(text)
    return e


def _ref(parent: ET.Element, tag: str, collection: str, ident: str) -> None:
    _el(parent, tag, href=f"{API}/{collection}/{ident}", id=ident)


def _version(parent: ET.Element, major_minor: tuple[int, int]) -> None:
    v = _el(parent, "version")
    _el(v, "major", major_minor[0])
    _el(v, "minor", major_minor[1])


class Renderer:
    """Scenario -> the XML documents of the API (ovirt-engine-api-model wire names)."""

    def __init__(self, s: Scenario) -> None:
        self.s = s

    def api(self) -> ET.Element:
        root = ET.Element("api")  # a real engine's root carries no href
        for rel in ("clusterlevels", "clusters", "datacenters", "events", "hosts", "storagedomains"):
            _el(root, "link", href=f"{API}/{rel}", rel=rel)
        info = _el(root, "product_info")
        _el(info, "instance_id", "5d5a1b2c-0000-4000-8000-000000000001")
        _el(info, "name", self.s.product_name)
        _el(info, "vendor", "ovirt.org")
        major, minor, rest = self.s.full_version.split(".", 2)
        v = _el(info, "version")
        _el(v, "build", rest.split("-")[1].split(".")[0] if "-" in rest else 0)
        _el(v, "full_version", self.s.full_version)
        _el(v, "major", major)
        _el(v, "minor", minor)
        _el(v, "revision", rest.split("-")[0])
        summary = _el(root, "summary")
        hosts = _el(summary, "hosts")
        _el(hosts, "active", sum(1 for h in self.s.hosts if h["status"] == "up"))
        _el(hosts, "total", len(self.s.hosts))
        _el(root, "time", "2025-11-20T12:00:48.132+02:00")
        return root

    def hosts(self) -> ET.Element:
        root = ET.Element("hosts")
        for h in self.s.hosts:
            walk = self.s.status_walks.get(h["name"])
            if walk:
                h["status"] = walk.pop(0) if len(walk) > 1 else walk[0]
            root.append(self.host(h))
        return root

    def host(self, h: dict[str, Any]) -> ET.Element:
        e = ET.Element("host", href=f"{API}/hosts/{h['id']}", id=h["id"])
        _el(e, "name", h["name"])
        _el(e, "address", h["address"])
        cpu = _el(e, "cpu")
        _el(cpu, "name", h["cpu_name"])
        _el(cpu, "speed", 2400)
        topo = _el(cpu, "topology")
        for k in ("cores", "sockets", "threads"):
            _el(topo, k, 1)
        _el(cpu, "type", h["cpu_type"])
        _el(e, "memory", 8 * 1024**3)
        _el(e, "port", 54321)
        _el(e, "status", h["status"])
        _ref(e, "cluster", "clusters", h.get("cluster", CLUSTER_ID))
        return e

    def events(self, search: str | None, limit: int | None) -> ET.Element:
        wanted = _search_value(search, "host.name")
        root = ET.Element("events")
        picked = [ev for ev in self.s.events if wanted is None or ev["host_name"] == wanted][: limit or None]
        for ev in picked:
            e = _el(root, "event", href=f"{API}/events/{ev['id']}", id=ev["id"])
            _el(e, "code", ev["code"])
            _el(e, "description", ev["description"])
            _el(e, "severity", ev["severity"])
            _el(e, "time", ev["time"])
            _ref(e, "host", "hosts", ev["host"])
        return root

    def clusters(self) -> ET.Element:
        root = ET.Element("clusters")
        for c in self.s.clusters:
            e = _el(root, "cluster", href=f"{API}/clusters/{c['id']}", id=c["id"])
            _el(e, "name", c["name"])
            cpu = _el(e, "cpu")
            _el(cpu, "architecture", c["architecture"])
            _el(cpu, "type", c["cpu_type"])
            _ref(e, "data_center", "datacenters", c["data_center"])
            _version(e, c["version"])
        return root

    def cluster_level(self, version: str) -> ET.Element | None:
        if version not in self.s.cluster_levels:
            return None
        root = ET.Element("cluster_level", href=f"{API}/clusterlevels/{version}", id=version)
        types = _el(root, "cpu_types")
        for t in self.s.cluster_levels[version]:
            e = _el(types, "cpu_type")
            _el(e, "name", t["name"])
            _el(e, "level", t["level"])
            _el(e, "architecture", t["architecture"])
        return root

    def datacenters(self) -> ET.Element:
        root = ET.Element("data_centers")
        for dc in self.s.datacenters:
            e = _el(root, "data_center", href=f"{API}/datacenters/{dc['id']}", id=dc["id"])
            _el(e, "name", dc["name"])
            _el(e, "local", False)
            _el(e, "status", dc["status"])
            _version(e, dc["version"])
        return root

    def storage_domains(self, data_center: str | None) -> ET.Element:
        """Top level: `status` only for unattached domains; under a data center: status and master."""
        root = ET.Element("storage_domains")
        for sd in self.s.storage_domains:
            attached_here = data_center is not None and sd.get("data_center") == data_center
            if data_center is not None and not attached_here:
                continue
            e = _el(root, "storage_domain", href=f"{API}/storagedomains/{sd['id']}", id=sd["id"])
            _el(e, "name", sd["name"])
            _el(e, "type", sd["type"])
            _el(e, "external_status", "ok")
            if attached_here or sd["status"] == "unattached":
                _el(e, "status", sd["status"])
            _el(e, "master", sd["master"])
            if sd.get("data_center"):  # real engines list a domain's data centers under <data_centers>
                _ref(_el(e, "data_centers"), "data_center", "datacenters", sd["data_center"])
        return root


def _search_value(search: str | None, key: str) -> str | None:
    """`host.name=host1` from an oVirt search expression (only `key=value` terms joined by `and`)."""
    if not search:
        return None
    for term in search.replace(" AND ", " and ").split(" and "):
        name, _, value = term.partition("=")
        if name.strip() == key:
            return value.strip()
    return None


@dataclass
class Seen:
    """What the stand-in received, for tests to assert on the client's behaviour."""

    method: str
    path: str
    headers: dict[str, str]
    body: str


class StandinEngine:
    """Context manager: `with StandinEngine(healthy(), pki) as engine: engine.url ...`."""

    def __init__(self, scenario: Scenario, pki: Pki) -> None:
        self.scenario = scenario
        self.pki = pki
        self.tokens: set[str] = set()  # valid now
        self.issued: list[str] = []  # every token ever handed out (tests assert none leaks)
        self.seen: list[Seen] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._http: ThreadingHTTPServer | None = None
        self._http_thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"https://127.0.0.1:{self._server.server_address[1]}"

    @property
    def http_url(self) -> str:
        """The plain-HTTP side (health only), as apache serves it on port 80 of a real engine."""
        assert self._http is not None
        return f"http://127.0.0.1:{self._http.server_address[1]}"

    def __enter__(self) -> StandinEngine:
        engine = self

        class Handler(_Handler):
            standin = engine

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.pki.cert_file, self.pki.key_file)
        self._server.socket = ctx.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, name="standin-engine", daemon=True)
        self._thread.start()

        class PlainHandler(_PlainHandler):
            standin = engine

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), PlainHandler)
        self._http_thread = threading.Thread(
            target=self._http.serve_forever, name="standin-engine-http", daemon=True
        )
        self._http_thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None and self._thread is not None
        assert self._http is not None and self._http_thread is not None
        for server, thread in ((self._server, self._thread), (self._http, self._http_thread)):
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)


class _Handler(BaseHTTPRequestHandler):
    standin: StandinEngine
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Quiet: the stand-in keeps its own record in `seen`."""

    def _record(self, body: str) -> None:
        self.standin.seen.append(Seen(self.command, self.path, dict(self.headers.items()), body))

    def _send(self, status: int, body: str | bytes, content_type: str) -> None:
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _xml(self, element: ET.Element | None) -> None:
        if element is None:
            fault = ET.Element("fault")
            _el(fault, "reason", "Operation Failed")
            _el(fault, "detail", "Entity not found")
            self._send(404, ET.tostring(fault, xml_declaration=True, encoding="utf-8"), "application/xml")
            return
        self._send(200, ET.tostring(element, xml_declaration=True, encoding="utf-8"), "application/xml")

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        self._record("")
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        s = self.standin.scenario
        if url.path == "/ovirt-engine/services/health":
            status, body = s.health
            self._send(status, body, "text/html")
        elif url.path == "/ovirt-engine/services/pki-resource":
            if query.get("resource") != "ca-certificate" or query.get("format") not in (
                "X509-PEM",
                "X509-PEM-CA",
            ):
                self._send(400, "Bad Request", "text/plain")
            else:
                self._send(200, self.standin.pki.ca_file.read_text(), "application/x-x509-ca-cert")
        elif url.path == API or url.path.startswith(API + "/"):
            self._api(url.path[len(API) :].strip("/"), query)
        else:
            self._send(404, "Not Found", "text/html")

    def _authorized(self) -> bool:
        """A valid bearer token, else a 401 with an empty body (what an expired token gets) is sent."""
        auth = self.headers.get("Authorization", "")
        token = auth[len("Bearer ") :] if auth.startswith("Bearer ") else None
        if token in self.standin.tokens and not self.standin.scenario.token_expired:
            return True
        self._send(401, b"", "text/html")
        return False

    def _api(self, path: str, query: dict[str, str]) -> None:
        if not self._authorized():
            return
        r = Renderer(self.standin.scenario)
        parts = path.split("/") if path else []
        if path in self.standin.scenario.recorded:
            self._send(200, self.standin.scenario.recorded[path], "application/xml;charset=UTF-8")
        elif not parts:
            self._xml(r.api())
        elif parts == ["hosts"]:
            self._xml(r.hosts())
        elif len(parts) == 2 and parts[0] == "hosts":
            self._xml(self._deployed_host(parts[1], r))
        elif parts == ["events"]:
            self._xml(r.events(query.get("search"), int(query["max"]) if "max" in query else None))
        elif parts == ["clusters"]:
            self._xml(r.clusters())
        elif len(parts) == 2 and parts[0] == "clusterlevels":
            self._xml(r.cluster_level(parts[1]))
        elif parts == ["datacenters"]:
            self._xml(r.datacenters())
        elif len(parts) == 3 and parts[0] == "datacenters" and parts[2] == "storagedomains":
            self._xml(r.storage_domains(parts[1]))
        elif parts == ["storagedomains"]:
            self._xml(r.storage_domains(None))
        else:
            self._xml(None)

    def _deployed_host(self, host_id: str, r: Renderer) -> ET.Element | None:
        """A host's next status: hosts added through POST walk through `deploy_statuses`."""
        host = next((h for h in self.standin.scenario.hosts if h["id"] == host_id), None)
        if host is None:
            return None
        pending = host.get("pending_statuses")
        if pending:
            host["status"] = pending.pop(0) if len(pending) > 1 else pending[0]
        return r.host(host)

    def _add_host(self, body: str) -> None:
        """POST /hosts: `<host><name/><address/><cluster><name/></cluster>...</host>` -> 201 with the host."""
        try:
            sent = ET.fromstring(body)
        except ET.ParseError as exc:
            self._send(400, f"bad XML: {exc}", "text/plain")
            return
        name, address = sent.findtext("name"), sent.findtext("address")
        if not name or not address or sent.find("cluster") is None:
            fault = ET.Element("fault")
            _el(fault, "reason", "Incomplete parameters")
            _el(fault, "detail", "Host [name|address|cluster] required for add")
            self._send(400, ET.tostring(fault, xml_declaration=True, encoding="utf-8"), "application/xml")
            return
        s = self.standin.scenario
        host = {
            "id": f"55555555-5555-5555-5555-{len(s.hosts):012d}",
            "name": name,
            "address": address,
            "status": "installing",
            "cpu_name": "Intel Core Processor (Haswell, no TSX)",
            "cpu_type": "Intel Haswell Family",
            "pending_statuses": list(s.deploy_statuses),
            "ssh_authentication_method": sent.findtext("ssh/authentication_method"),
            "root_password_sent": sent.find("root_password") is not None,
        }
        s.hosts.append(host)
        self._send(
            201,
            ET.tostring(Renderer(s).host(host), xml_declaration=True, encoding="utf-8"),
            "application/xml",
        )

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode()
        self._record(body)
        form = dict(urllib.parse.parse_qsl(body))
        s = self.standin.scenario
        if self.path.split("?")[0] == API + "/hosts":
            if self._authorized():
                self._add_host(body)
        elif self.path == "/ovirt-engine/sso/oauth/token":
            if form.get("scope") != "ovirt-app-api" or form.get("grant_type") != "password":
                self._json(
                    400,
                    {
                        "error_code": "invalid_request",
                        "error": "scope ovirt-app-api and grant_type password are required",
                    },
                )
            elif form.get("username") != s.user or form.get("password") != s.password:
                self._json(
                    400,
                    {
                        "error_code": "access_denied",
                        "error": f"Cannot authenticate user '{form.get('username')}': "
                        "The username or password is incorrect.",
                    },
                )
            else:
                token = secrets.token_urlsafe(24)
                self.standin.tokens.add(token)
                self.standin.issued.append(token)
                self._json(
                    200,
                    {
                        "access_token": token,
                        "token_type": "bearer",
                        "scope": "ovirt-app-api",
                        "exp": "9999999999000",
                    },
                )
        elif self.path == "/ovirt-engine/services/sso-logout":
            self.standin.tokens.discard(form.get("token", ""))
            self._json(200, {})
        else:
            self._send(404, "Not Found", "text/html")

    def _json(self, status: int, payload: dict[str, Any]) -> None:
        self._send(status, json.dumps(payload), "application/json")


class _PlainHandler(_Handler):
    """Plain HTTP: the health servlet only (a real engine's apache redirects the rest to https)."""

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        self._record("")
        if urllib.parse.urlsplit(self.path).path == "/ovirt-engine/services/health":
            s = self.standin.scenario
            status, body = s.http_health or s.health
            self._send(status, body, "text/html")
        else:
            self._send(404, "Not Found", "text/html")

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        self._send(404, "Not Found", "text/html")
