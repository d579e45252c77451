"""What `facts["engine"]` holds (built by kvmqa.stages.ovirt_engine.client.gather_engine), as checks read it:
`engine = facts.view(Engine)`, then `engine.api.major`, `engine.hosts[0].status_history`.

A step the gatherer never reached leaves its key out: `health`, `sso`, `hosts`, `clusters` and `datacenters`
are then None (an empty list is an answer). The records a finding reports unchanged as its details (tls, ca,
health, sso, api) are also kept as they were gathered, in the `*_record` fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass(frozen=True)
class Tls:
    """The TLS verification of the engine: `ok` None when the engine was not reachable at all."""

    ok: bool | None = None
    error: str | None = None
    ca_file: str | None = None  # --engine-ca, or "downloaded"
    verified_by: str | None = None


@dataclass(frozen=True)
class CaCertificate:
    subject: str | None = None
    issuer: str | None = None
    is_ca: bool = False
    self_signed: bool = False
    not_after: str | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class EngineCa:
    """The engine CA download (pki-resource); `trust` is "user-ca", "system" or "tofu"."""

    ok: bool | None = None
    error: str | None = None
    url: str | None = None
    user_ca_file: str | None = None
    trust: str | None = None
    status: int | None = None
    certificate: CaCertificate | None = None
    matches_user_ca: bool | None = None


@dataclass(frozen=True)
class HealthReply:
    """One call of the health servlet; `status` None when the request failed (see `error`)."""

    ok: bool | None = None
    url: str | None = None
    status: int | None = None
    body: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class Health(HealthReply):
    """The health servlet over HTTPS (`https_ok`; `ok` is both schemes) and over plain HTTP (`http`, None in
    an older observation)."""

    https_ok: bool | None = None
    http: HealthReply | None = None


@dataclass(frozen=True)
class Sso:
    ok: bool | None = None
    error: str | None = None
    url: str | None = None
    user: str | None = None
    scope: str | None = None
    status: int | None = None
    token_type: str | None = None


@dataclass(frozen=True)
class ApiError:
    kind: str | None = None  # "auth", "tls" or "api"
    status: int | None = None
    step: str | None = None  # the API step that failed: system, hosts, clusters, ...
    message: str | None = None


@dataclass(frozen=True)
class Api:
    """The API root's product_info, and the error that stopped the API steps if one did."""

    ok: bool | None = None
    url: str | None = None
    error: ApiError | None = None
    product_name: str | None = None
    vendor: str | None = None
    full_version: str | None = None
    major: int | None = None
    minor: int | None = None


@dataclass(frozen=True)
class Settle:
    """The settling window: the host list was read `polls` times, `interval_s` seconds apart."""

    polls: int = 1
    interval_s: float = 0.0


@dataclass(frozen=True)
class HostEvent:
    code: int | None = None
    severity: str | None = None
    time: str | None = None
    description: str | None = None


@dataclass(frozen=True)
class EngineHost:
    """A host as the engine lists it; `status` is the last read, `status_history` every read in the window."""

    id: str | None = None
    name: str = ""
    address: str | None = None
    status: str | None = None
    status_detail: str | None = None
    cluster_id: str | None = None
    cpu_name: str | None = None
    cpu_type: str | None = None
    status_history: list[str] = field(default_factory=list)
    events: list[HostEvent] = field(default_factory=list)  # warnings and errors of a host not up or flapping


@dataclass(frozen=True)
class InventoryHost:
    """An inventory ovirt-host target, the engine host it matched, and its CPU flags from its own facts."""

    target: str = ""  # the inventory name
    address: str | None = None
    engine_host: str | None = None
    engine_host_id: str | None = None
    cpu_flags: list[str] | None = None
    vdsm_cpu_flags: list[str] | None = None  # vdsm's cpuFlags, model_* entries included
    flags_source: str | None = None


@dataclass(frozen=True)
class Cluster:
    id: str | None = None
    name: str | None = None
    cpu_type: str | None = None
    architecture: str | None = None
    version: str | None = None  # the compatibility version, "4.8"
    data_center_id: str | None = None


@dataclass(frozen=True)
class CpuType:
    name: str | None = None
    level: int | None = None
    architecture: str | None = None


@dataclass(frozen=True)
class ClusterLevel:
    cpu_types: list[CpuType] = field(default_factory=list)  # the CPU types the engine offers at this level


@dataclass(frozen=True)
class StorageDomain:
    id: str | None = None
    name: str = ""
    type: str | None = None
    status: str | None = None
    master: bool = False
    external_status: str | None = None


@dataclass(frozen=True)
class DataCenter:
    id: str | None = None
    name: str = ""
    status: str | None = None
    version: str | None = None
    storage_domains: list[StorageDomain] = field(default_factory=list)  # the domains attached to it


@dataclass(frozen=True)
class Engine:
    """`facts["engine"]`: one observation of the engine, step by step (client.py's module docstring)."""

    SECTION: ClassVar[str] = "engine"
    url: str | None = None
    user: str | None = None
    min_version: str | int | float = "4.5"
    tls: Tls = field(default_factory=Tls)
    ca: EngineCa = field(default_factory=EngineCa)
    health: Health | None = None
    sso: Sso | None = None
    api: Api = field(default_factory=Api)
    settle: Settle = field(default_factory=Settle)
    hosts: list[EngineHost] | None = None
    inventory_hosts: list[InventoryHost] = field(default_factory=list)
    clusters: list[Cluster] | None = None
    cluster_levels: dict[str, ClusterLevel] = field(default_factory=dict)  # by compatibility version
    datacenters: list[DataCenter] | None = None
    storage_domains: list[StorageDomain] = field(default_factory=list)  # every domain, attached or not
    # The records as gathered, which their findings report unchanged as details.
    tls_record: dict[str, Any] = field(default_factory=dict, metadata={"key": "tls"})
    ca_record: dict[str, Any] = field(default_factory=dict, metadata={"key": "ca"})
    health_record: dict[str, Any] = field(default_factory=dict, metadata={"key": "health"})
    sso_record: dict[str, Any] = field(default_factory=dict, metadata={"key": "sso"})
    api_record: dict[str, Any] = field(default_factory=dict, metadata={"key": "api"})
