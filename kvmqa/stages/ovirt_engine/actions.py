"""oVirt install mode on EL8/EL9: `kvmqa.core.action.Action`s run by the one install framework
(`--mode install` / `--plan`, kvmqa.act.runner), each with a precondition read from facts.

    stage ovirt_engine (role ovirt-engine): ovirt.release-repo, ovirt.engine-package, ovirt.engine-setup,
                                            ovirt.add-hosts (per inventory ovirt-host: add_host + wait_for_up)
    stage vdsm         (role ovirt-host):   ovirt.release-repo, ovirt.host-package, ovirt.vdsm-configure
                                            (kvmqa/stages/vdsm/actions.py, with this file's shared helpers)

On a distro oVirt does not support every step is SKIPPED "not supported on debian 12" before anything else
(`Action.supported`): nothing is gathered, nothing runs. Secrets (the engine admin password) are written to a
0600 file on the target through `ActionContext.put_file` (Target.put_file: stdin, never a command line) and
removed in a `finally` after engine-setup.
"""

from __future__ import annotations

import logging
import shlex
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from kvmqa.core.action import (
    Action,
    ActionContext,
    Call,
    Command,
    Decision,
    needed,
    satisfied,
    skip,
    unsupported,
)
from kvmqa.core.paths import data_file
from kvmqa.gather.distro import EL_IDS

if TYPE_CHECKING:
    from kvmqa.gather.context import HostContext

log = logging.getLogger("kvmqa.stages.ovirt_engine.actions")

ANSWERS_TEMPLATE = data_file("engine-setup.conf")
SUPPORTED_EL = ("8", "9")
RELEASE_PACKAGES = ("centos-release-ovirt45", "ovirt-release45")
REMOTE_DIR = "/var/lib/kvmqa"
ENGINE_ROLE, HOST_ROLE = "ovirt-engine", "ovirt-host"
ENGINE_STAGE, HOST_STAGE = "ovirt_engine", "vdsm"
HINT = "oVirt 4.5 installs on EL8/EL9 (CentOS Stream, RHEL, Rocky, Alma); see docs/ovirt.md"


class CommandResultLike(Protocol):
    rc: int
    stdout: str
    stderr: str


class InstallContext(Protocol):
    """What engine-setup needs from the install framework (kvmqa.core.action.ActionContext has it)."""

    def run(self, command: str, timeout: float) -> CommandResultLike: ...

    def put_file(self, path: str, data: bytes, mode: int) -> None: ...

    @property
    def engine_password(self) -> Any: ...  # kvmqa.config.options.Secret


@dataclass(frozen=True)
class HostSpec:
    """An inventory ovirt-host as the engine should know it."""

    name: str
    address: str


@dataclass
class OvirtSetup:
    """`ActionContext.stage_context` of the engine's steps: what they need besides facts
    (`ovirt_setup(session)`)."""

    fqdn: str = ""  # the engine's FQDN (engine-setup's OVESETUP_CONFIG/fqdn)
    hosts: tuple[HostSpec, ...] = ()  # inventory ovirt-hosts the engine adds
    cluster: str = "Default"
    connect: Callable[[], AbstractContextManager[Any]] | None = None  # an ovirtsdk4.Connection to the engine
    wait: Any = None  # WaitPolicy; None: the default
    remote_dir: str = REMOTE_DIR
    organization: str = "kvmqa"


@dataclass
class CallResult:
    """The result of a `Call` step, shaped like Target.run's."""

    rc: int
    stdout: str = ""
    stderr: str = ""
    duration: float = 0.0
    timed_out: bool = False


def el_release(facts: Mapping[str, Any]) -> Decision | None:
    """None when the target is EL8/EL9, else a `skip` naming the distro ("not supported on debian 12")."""
    os_ = facts.get("os") or {}
    ids = {os_.get("id", ""), *str(os_.get("id_like", "")).split()}
    major = str(os_.get("version_id", "")).split(".")[0]
    if not ids & EL_IDS or major not in SUPPORTED_EL:
        name = f"{os_.get('id') or 'an unknown distro'} {os_.get('version_id', '')}".strip()
        return skip(f"not supported on {name}: oVirt install mode needs EL8 or EL9")
    return None


def _installed(facts: Mapping[str, Any]) -> Mapping[str, str]:
    return (facts.get("packages") or {}).get("installed") or {}


def package_precondition(*names: str) -> Callable[[Mapping[str, Any], ActionContext], Decision]:
    def precondition(facts: Mapping[str, Any], ctx: ActionContext) -> Decision:
        have = [n for n in names if n in _installed(facts)]
        if have:
            return satisfied(f"{have[0]} {_installed(facts)[have[0]]} is installed")
        return needed(f"{' or '.join(names)} not installed")

    return precondition


def _engine_setup_precondition(facts: Mapping[str, Any], ctx: ActionContext) -> Decision:
    if ((facts.get("engine") or {}).get("health") or {}).get("ok"):
        return satisfied("the engine answers health with DB Up")
    if not ctx.engine_password:
        return unsupported(
            "engine-setup needs the engine admin password ($KVMQA_ENGINE_PASSWORD or "
            "--engine-password-file / the inventory's engine.password_file)"
        )
    if "ovirt-engine" not in _installed(facts):
        return needed("ovirt-engine will be installed first, then set up")
    return needed("ovirt-engine is installed but not set up (health does not answer DB Up)")


def render_answers(
    fqdn: str,
    organization: str = "kvmqa",
    firewall_manager: str = "firewalld",
    template: Path = ANSWERS_TEMPLATE,
) -> str:
    """The answer file without secrets."""
    return template.read_text().format(
        fqdn=fqdn, organization=organization, firewall_manager=firewall_manager
    )


def secret_answers(admin_password: str) -> bytes:
    """The secret part of the answers, for a 0600 file appended after the template."""
    if "\n" in admin_password:
        raise ValueError("the engine admin password must be one line")
    return f"[environment:default]\nOVESETUP_CONFIG/adminPassword=str:{admin_password}\n".encode()


def _paths(remote_dir: str) -> tuple[str, str]:
    return f"{remote_dir}/engine-setup.conf", f"{remote_dir}/engine-setup-secrets.conf"


def engine_setup_command(remote_dir: str = REMOTE_DIR) -> str:
    answers, secrets = _paths(remote_dir)
    return (
        f"engine-setup --offline --config-append={shlex.quote(answers)} "
        f"--config-append={shlex.quote(secrets)}"
    )


def engine_setup(
    fqdn: str, organization: str = "kvmqa", remote_dir: str = REMOTE_DIR
) -> Callable[[InstallContext], CommandResultLike]:
    """engine-setup --offline with the rendered answers plus a 0600 secrets file, removed in a `finally`."""

    def run(ctx: InstallContext) -> CommandResultLike:
        password = ctx.engine_password
        if not password:
            raise ValueError("engine-setup needs the engine admin password (KVMQA_ENGINE_PASSWORD or a file)")
        answers, secrets = _paths(remote_dir)
        made = ctx.run(f"install -d -m 0700 {shlex.quote(remote_dir)}", 60)
        if made.rc != 0:
            return made
        ctx.put_file(answers, render_answers(fqdn, organization).encode(), 0o600)
        try:
            ctx.put_file(secrets, secret_answers(password.reveal()), 0o600)
            log.info("running engine-setup --offline on %s (answers %s)", fqdn, answers)
            return ctx.run(engine_setup_command(remote_dir), 3600)
        finally:
            ctx.run(f"rm -f {shlex.quote(secrets)}", 60)

    return run


def _engine_setup_commands(
    facts: Mapping[str, Any], ctx: ActionContext, fqdn: str | None = None
) -> list[Command]:
    setup = ctx.stage_context or OvirtSetup()
    fqdn = (
        fqdn
        or setup.fqdn
        or str((facts.get("host") or {}).get("fqdn") or (facts.get("host") or {}).get("hostname") or ctx.host)
    )
    answers, secrets = _paths(setup.remote_dir)
    shown = (
        f"install -d -m 0700 {setup.remote_dir}\n"
        f"put_file {answers} (0600: answers for {fqdn}, no secrets)\n"
        f"put_file {secrets} (0600: the admin password, over stdin)\n"
        f"{engine_setup_command(setup.remote_dir)}\n"
        f"rm -f {secrets} (always)"
    )
    return [Call(shown, engine_setup(fqdn, setup.organization, setup.remote_dir))]


# -- adding the inventory's ovirt-hosts to the engine
# -------------------------------------------------------------
def _engine_hosts(facts: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Engine hosts by name and by address (facts['engine']['hosts'], from
    kvmqa.stages.ovirt_engine.client.gather_engine)."""
    out: dict[str, dict[str, Any]] = {}
    for h in (facts.get("engine") or {}).get("hosts") or []:
        for key in (h.get("name"), h.get("address")):
            if key:
                out[str(key)] = h
    return out


def hosts_to_add(
    facts: Mapping[str, Any], hosts: tuple[HostSpec, ...]
) -> tuple[list[HostSpec], list[tuple[HostSpec, dict]]]:
    """(unknown to the engine, known but not up)."""
    known = _engine_hosts(facts)
    missing, not_up = [], []
    for spec in hosts:
        h = known.get(spec.name) or known.get(spec.address)
        if h is None:
            missing.append(spec)
        elif h.get("status") != "up":
            not_up.append((spec, h))
    return missing, not_up


def _add_hosts_precondition(facts: Mapping[str, Any], ctx: ActionContext) -> Decision:
    setup = ctx.stage_context or OvirtSetup()
    if not setup.hosts:
        return satisfied("the inventory has no ovirt-host to add")
    engine = facts.get("engine") or {}
    if not (engine.get("health") or {}).get("ok"):
        return needed(f"add {', '.join(h.name for h in setup.hosts)} once engine-setup has run")
    if not (engine.get("api") or {}).get("ok"):
        return needed(
            f"the engine API was not read ({(engine.get('api') or engine.get('sso') or {}).get('error')}); "
            f"add or wait for {', '.join(h.name for h in setup.hosts)}"
        )
    missing, not_up = hosts_to_add(facts, setup.hosts)
    if not missing and not not_up:
        return satisfied(
            f"every inventory ovirt-host is up in the engine: {', '.join(h.name for h in setup.hosts)}"
        )
    parts = []
    if missing:
        parts.append("not in the engine: " + ", ".join(h.name for h in missing))
    if not_up:
        parts.append("not up: " + ", ".join(f"{s.name} ({h.get('status')})" for s, h in not_up))
    return needed("; ".join(parts))


def add_hosts_step(facts: Mapping[str, Any], setup: OvirtSetup) -> Call:
    """Through the engine API: add each missing inventory ovirt-host (public-key SSH), then wait until each
    is up."""
    api_read = ((facts.get("engine") or {}).get("api") or {}).get("ok")
    missing, not_up = hosts_to_add(facts, setup.hosts) if api_read else (list(setup.hosts), [])
    shown = "\n".join(
        [
            f"engine API: add host {h.name} (address {h.address}, cluster {setup.cluster}, ssh public key)"
            for h in missing
        ]
        + [f"engine API: wait until {h.name} is up" for h in missing]
        + [f"engine API: wait until {s.name} is up (now {h.get('status')})" for s, h in not_up]
    )

    def run(ctx: ActionContext) -> CallResult:
        if setup.connect is None:
            raise RuntimeError(
                "no engine connection: give --engine-url (or the inventory's engine.url) and the password"
            )
        started = time.perf_counter()
        lines: list[str] = []
        policy = setup.wait or WaitPolicy()
        with setup.connect() as conn:
            hosts = conn.system_service().hosts_service()
            ids = {h.name: h.id for h in hosts.list()}
            for spec in [*missing, *(s for s, _ in not_up)]:
                if spec.name not in ids:
                    ids[spec.name] = add_host(conn, spec.name, spec.address, setup.cluster)
                    lines.append(f"added {spec.name} ({spec.address}) as {ids[spec.name]}")
                try:
                    seen = wait_for_up(hosts.host_service(ids[spec.name]), policy)
                except HostDeployError as exc:
                    lines.append(f"Failed {spec.name}: {exc}")
                    return CallResult(1, "\n".join(lines[:-1]), lines[-1], time.perf_counter() - started)
                lines.append(f"{spec.name} is up (statuses seen: {', '.join(seen)})")
        return CallResult(0, "\n".join(lines), "", time.perf_counter() - started)

    return Call(shown, run)


# -- the actions
# ---------------------------------------------------------------------------------------------------
def role_applies(role: str) -> Callable[[ActionContext], bool]:
    return lambda ctx: role in ctx.roles


def release_repo(stage: str, role: str) -> Action:
    """The oVirt 4.5 release package (CentOS Stream's centos-release-ovirt45 or ovirt.org's
    ovirt-release45)."""
    return Action(
        "ovirt.release-repo",
        stage,
        "enable the oVirt 4.5 release repository",
        package_precondition(*RELEASE_PACKAGES),
        lambda f, c: ["dnf -y install centos-release-ovirt45"],
        timeout=1800,
        supported=el_release,
        applies=role_applies(role),
        hint=HINT,
    )


def engine_actions(fqdn: str | None = None) -> list[Action]:
    """Stage ovirt_engine on ovirt-engine targets. `fqdn` overrides `ctx.stage_context.fqdn` (the
    framework's)."""

    applies = role_applies(ENGINE_ROLE)
    return [
        release_repo(ENGINE_STAGE, ENGINE_ROLE),
        Action(
            "ovirt.engine-package",
            ENGINE_STAGE,
            "install ovirt-engine",
            package_precondition("ovirt-engine"),
            lambda f, c: ["dnf -y install ovirt-engine"],
            timeout=1800,
            requires=("ovirt.release-repo",),
            supported=el_release,
            applies=applies,
            hint=HINT,
        ),
        Action(
            "ovirt.engine-setup",
            ENGINE_STAGE,
            "run engine-setup --offline with a generated answer file",
            _engine_setup_precondition,
            lambda f, c: _engine_setup_commands(f, c, fqdn),
            timeout=3600,
            requires=("ovirt.engine-package",),
            facts=("engine",),
            supported=el_release,
            applies=applies,
            hint=HINT,
        ),
        Action(
            "ovirt.add-hosts",
            ENGINE_STAGE,
            "add the inventory's ovirt-hosts through the engine API and wait for up",
            _add_hosts_precondition,
            lambda f, c: [add_hosts_step(f, c.stage_context or OvirtSetup())],
            timeout=3600,
            requires=("ovirt.engine-setup",),
            needs_root=False,
            facts=("engine",),
            supported=el_release,
            applies=applies,
            hint="the engine's SSH public key must be in each host's root authorized_keys (docs/ovirt.md)",
        ),
    ]


ENGINE_ACTIONS: tuple[Action, ...] = tuple(engine_actions())  # stage ovirt_engine (kvmqa/stages/ovirt_engine)


# -- what the framework gives the steps
# ---------------------------------------------------------------------------
def ovirt_setup(session: HostContext) -> OvirtSetup | None:
    """`ActionContext.stage_context` for a host session with an oVirt role (None otherwise)."""
    target = session.target
    if not {ENGINE_ROLE, HOST_ROLE} & set(target.roles):
        return None
    from kvmqa.stages.ovirt_engine.client import base_url

    url = base_url(session)
    hosts = tuple(
        HostSpec(t.name, str(t.vars.get("ovirt_address") or t.host or t.name))
        for t in (session.all_targets or ())
        if HOST_ROLE in tuple(t.roles)
    )
    settings = dict(session.profile.stage("ovirt_engine") or {}) if session.profile is not None else {}
    return OvirtSetup(
        fqdn=str(target.vars.get("engine_fqdn") or urllib.parse.urlsplit(url).hostname or target.name),
        hosts=hosts,
        cluster=str(target.vars.get("ovirt_cluster") or settings.get("cluster") or "Default"),
        connect=lambda: engine_connection(session),
    )


class EngineUnavailable(Exception):
    """No verified API connection to the engine could be made (TLS, CA, no password)."""


@contextmanager
def engine_connection(session: HostContext) -> Iterator[Any]:
    """An `ovirtsdk4.Connection` to the engine, TLS verified exactly as kvmqa.stages.ovirt_engine.client's
    gatherer does
    (--engine-ca, else the system store, else profile TOFU for the CA download); closed (token revoked)
    after."""
    import ovirtsdk4 as sdk

    from kvmqa.stages.ovirt_engine import client as engine

    password = session.options.engine_password
    if not password:
        raise EngineUnavailable("no engine password: set KVMQA_ENGINE_PASSWORD or give a password file")
    settings = engine.Settings.from_profile(session.profile)
    obs: dict[str, Any] = {"url": engine.base_url(session)}
    with tempfile.TemporaryDirectory(prefix="kvmqa-engine-") as tmp:
        anchor = engine._ca_step(
            obs, session, settings, Path(tmp)
        )  # the gatherer's CA trust, not a second copy
        if anchor is None:
            raise EngineUnavailable(
                f"engine {obs['url']}: {(obs.get('tls') or obs.get('ca') or {}).get('error')}"
            )
        conn = sdk.Connection(
            url=obs["url"] + engine.API_PATH,
            username=session.options.engine_user,
            password=password.reveal(),
            ca_file=str(anchor.ca_file),
            timeout=int(settings.timeout),
        )
        try:
            yield conn
        finally:
            try:
                conn.close(logout=True)
            except Exception as exc:  # noqa: BLE001 - a failed revoke must not hide the step's result
                log.debug("engine logout failed: %s", type(exc).__name__)


def add_host(connection: Any, name: str, address: str, cluster: str) -> str:
    """Add a host through the API (engine SSH public key authentication); returns its id.

    The engine's public key (pki-resource `resource=engine-certificate&format=OPENSSH-PUBKEY`) must be
    in the host's root authorized_keys; no root password crosses kvmqa.
    """
    import ovirtsdk4.types as types

    host = (
        connection.system_service()
        .hosts_service()
        .add(
            types.Host(
                name=name,
                address=address,
                cluster=types.Cluster(name=cluster),
                ssh=types.Ssh(authentication_method=types.SshAuthenticationMethod.PUBLICKEY),
                override_iptables=True,
            )
        )
    )
    return str(host.id)


class HostDeployError(Exception):
    """The host reached a failure state or never settled in `up`."""


FAILED = "install_failed"  # a deploy end state (reference 1.5): no point in waiting
UNHEALTHY = frozenset({"non_operational", "error"})  # may be a flap right after deploy


@dataclass(frozen=True)
class WaitPolicy:
    """Poll every `interval` s; a state counts once it holds for `stable_polls` polls in a row
    (a new host goes up, briefly leaves it, then returns: OST's wait_for_flapping_host)."""

    interval: float = 10.0
    stable_polls: int = 3
    timeout: float = 30 * 60.0


def wait_for_up(
    host_service: Any, policy: WaitPolicy = WaitPolicy(), sleep: Callable[[float], None] = time.sleep
) -> list[str]:
    """Poll the host until it is `up` for `stable_polls` polls in a row; returns the statuses seen."""
    seen: list[str] = []
    deadline = time.monotonic() + policy.timeout
    while True:
        status = host_service.get().status.value
        seen.append(status)
        streak = len(seen) - next((i + 1 for i in range(len(seen) - 1, -1, -1) if seen[i] != status), 0)
        if status == "up" and streak >= policy.stable_polls:
            return seen
        if status == FAILED or (status in UNHEALTHY and streak >= policy.stable_polls):
            raise HostDeployError(f"host is {status} (statuses seen: {', '.join(seen)})")
        if time.monotonic() > deadline:
            raise HostDeployError(
                f"host not stably up within {policy.timeout:.0f}s (statuses seen: {', '.join(seen)})"
            )
        sleep(policy.interval)
