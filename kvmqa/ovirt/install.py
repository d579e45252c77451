"""oVirt install mode on EL8/EL9, as data: idempotent actions, each with a precondition read from facts.

    engine target (role ovirt-engine): ovirt.release-repo, ovirt.engine-package, ovirt.engine-setup
    host targets  (role ovirt-host):   ovirt.release-repo, ovirt.host-package, ovirt.vdsm-configure
    engine side, per ovirt-host:       add_host() then wait_for_up() through the API (ovirtsdk4)

A precondition answers `Decision("run"|"done"|"unsupported", reason)`; on a non-EL distro every
action is `unsupported` ("not supported on debian 12"). Secrets (engine admin password) are written
to a 0600 file on the target through `InstallContext.put_file`, never placed on a command line or
in a log, and removed after engine-setup.
"""

from __future__ import annotations

import logging
import shlex
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger("kvmqa.ovirt.install")

ANSWERS_TEMPLATE = Path(__file__).resolve().parents[2] / "fixtures" / "answers" / "engine-setup.conf"
EL_IDS = frozenset({"rhel", "centos", "rocky", "almalinux", "ol"})
SUPPORTED_EL = ("8", "9")
RELEASE_PACKAGES = ("centos-release-ovirt45", "ovirt-release45")
REMOTE_DIR = "/var/lib/kvmqa"


@dataclass(frozen=True)
class Decision:
    state: str  # "run" | "done" | "unsupported"
    reason: str


class CommandResultLike(Protocol):
    rc: int
    stdout: str
    stderr: str


class InstallContext(Protocol):
    """What an action needs from the install framework: one target and the run's secrets."""

    def run(self, command: str, timeout: float | None = None) -> CommandResultLike: ...

    def put_file(self, path: str, data: bytes, mode: int) -> None: ...

    @property
    def engine_password(self) -> Any: ...  # kvmqa.options.Secret


@dataclass(frozen=True)
class Action:
    id: str
    description: str
    command: str | Callable[[InstallContext], CommandResultLike]
    precondition: Callable[[Mapping[str, Any]], Decision]
    timeout: float = 1800.0

    def plan(self, facts: Mapping[str, Any]) -> Decision:
        return self.precondition(facts)


def el_release(facts: Mapping[str, Any]) -> Decision | None:
    """None when the target is EL8/EL9, else the 'unsupported' decision naming the distro."""
    os_ = facts.get("os") or {}
    ids = {os_.get("id", ""), *str(os_.get("id_like", "")).split()}
    major = str(os_.get("version_id", "")).split(".")[0]
    if not ids & EL_IDS or major not in SUPPORTED_EL:
        name = f"{os_.get('id') or 'an unknown distro'} {os_.get('version_id', '')}".strip()
        return Decision("unsupported", f"not supported on {name}: oVirt install mode needs EL8 or EL9")
    return None


def _installed(facts: Mapping[str, Any]) -> Mapping[str, str]:
    return (facts.get("packages") or {}).get("installed") or {}


def _package_precondition(*names: str) -> Callable[[Mapping[str, Any]], Decision]:
    def precondition(facts: Mapping[str, Any]) -> Decision:
        unsupported = el_release(facts)
        if unsupported:
            return unsupported
        have = [n for n in names if n in _installed(facts)]
        if have:
            return Decision("done", f"{have[0]} {_installed(facts)[have[0]]} is installed")
        return Decision("run", f"{' or '.join(names)} not installed")

    return precondition


def _engine_setup_precondition(facts: Mapping[str, Any]) -> Decision:
    unsupported = el_release(facts)
    if unsupported:
        return unsupported
    if "ovirt-engine" not in _installed(facts):
        return Decision("run", "ovirt-engine will be installed first, then set up")
    if ((facts.get("engine") or {}).get("health") or {}).get("ok"):
        return Decision("done", "the engine answers health with DB Up")
    return Decision("run", "ovirt-engine is installed but not set up (health does not answer DB Up)")


def _vdsm_configure_precondition(facts: Mapping[str, Any]) -> Decision:
    unsupported = el_release(facts)
    if unsupported:
        return unsupported
    configured = ((facts.get("vdsm") or {}).get("is_configured") or {}).get("ok")
    if configured:
        return Decision("done", "vdsm-tool is-configured: all modules configured")
    return Decision("run", "vdsm-tool is-configured reports modules not configured (or vdsm absent)")


def render_answers(fqdn: str, organization: str = "kvmqa", firewall_manager: str = "firewalld",
                   template: Path = ANSWERS_TEMPLATE) -> str:
    """The answer file without secrets."""
    return template.read_text().format(fqdn=fqdn, organization=organization, firewall_manager=firewall_manager)


def secret_answers(admin_password: str) -> bytes:
    """The secret part of the answers, for a 0600 file appended after the template."""
    if "\n" in admin_password:
        raise ValueError("the engine admin password must be one line")
    return f"[environment:default]\nOVESETUP_CONFIG/adminPassword=str:{admin_password}\n".encode()


def engine_setup(fqdn: str, organization: str = "kvmqa",
                 remote_dir: str = REMOTE_DIR) -> Callable[[InstallContext], CommandResultLike]:
    """engine-setup --offline with the rendered answers plus a 0600 secrets file removed afterwards."""

    def run(ctx: InstallContext) -> CommandResultLike:
        password = ctx.engine_password
        if not password:
            raise ValueError("engine-setup needs the engine admin password (KVMQA_ENGINE_PASSWORD or a file)")
        answers = f"{remote_dir}/engine-setup.conf"
        secrets = f"{remote_dir}/engine-setup-secrets.conf"
        ctx.run(f"install -d -m 0700 {shlex.quote(remote_dir)}")
        ctx.put_file(answers, render_answers(fqdn, organization).encode(), 0o644)
        ctx.put_file(secrets, secret_answers(password.reveal()), 0o600)
        command = (f"engine-setup --offline --config-append={shlex.quote(answers)} "
                   f"--config-append={shlex.quote(secrets)}; rc=$?; rm -f {shlex.quote(secrets)}; exit $rc")
        log.info("running engine-setup --offline on %s (answers %s)", fqdn, answers)
        return ctx.run(command, timeout=3600)

    return run


def release_repo() -> Action:
    """The oVirt 4.5 release package (CentOS Stream's centos-release-ovirt45 or ovirt.org's ovirt-release45)."""
    return Action("ovirt.release-repo", "enable the oVirt 4.5 release repository",
                  "dnf -y install centos-release-ovirt45", _package_precondition(*RELEASE_PACKAGES))


def engine_actions(fqdn: str) -> list[Action]:
    return [
        release_repo(),
        Action("ovirt.engine-package", "install ovirt-engine", "dnf -y install ovirt-engine",
               _package_precondition("ovirt-engine")),
        Action("ovirt.engine-setup", "run engine-setup --offline with a generated answer file",
               engine_setup(fqdn), _engine_setup_precondition, timeout=3600),
    ]


def host_actions() -> list[Action]:
    """Host deploy as the engine's host-deploy does it: the ovirt-host package, then vdsm-tool configure."""
    return [
        release_repo(),
        Action("ovirt.host-package", "install ovirt-host (vdsm and its dependencies)", "dnf -y install ovirt-host",
               _package_precondition("ovirt-host")),
        Action("ovirt.vdsm-configure", "configure vdsm's modules and restart their services",
               "vdsm-tool configure --force", _vdsm_configure_precondition),
    ]


def add_host(connection: Any, name: str, address: str, cluster: str) -> str:
    """Add a host through the API (engine SSH public key authentication); returns its id.

    The engine's public key (pki-resource `resource=engine-certificate&format=OPENSSH-PUBKEY`) must be
    in the host's root authorized_keys; no root password crosses kvmqa.
    """
    import ovirtsdk4.types as types

    host = connection.system_service().hosts_service().add(
        types.Host(
            name=name,
            address=address,
            cluster=types.Cluster(name=cluster),
            ssh=types.Ssh(authentication_method=types.SshAuthenticationMethod.PUBLICKEY),
            override_iptables=True,
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


def wait_for_up(host_service: Any, policy: WaitPolicy = WaitPolicy(),
                sleep: Callable[[float], None] = time.sleep) -> list[str]:
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
            raise HostDeployError(f"host not stably up within {policy.timeout:.0f}s (statuses seen: {', '.join(seen)})")
        sleep(policy.interval)
