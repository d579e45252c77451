"""The transport interface: how kvmqa reaches a host. One class per transport (local.py, ssh.py, paramiko.py),
chosen by the target's URL scheme; `Target` (target.py) is the inventory's data about the host.

    transport = transport_for(target)
    transport.run("uname -r", timeout=10, role="probe")   # -> CommandResult, one round trip, timed out on the
    host
    transport.put_file("/etc/x.conf", b"...", 0o600)       # data on stdin, never on a command line
    transport.libvirt_uri(workdir)                          # qemu:///system, or qemu+ext through OpenSSH
    transport.close()

Every failure is a TargetError whose message is the one line a user reads (host, the command's role, the
transport, what failed where, why); the transport's whole stderr stays in `.stderr` for the report's details.
"""

from __future__ import annotations

import hashlib
import shlex
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol


class TargetSpec(Protocol):
    """What a transport reads of the inventory's data about its host (kvmqa.transport.target.Target)."""

    name: str
    backend: str
    host: str | None
    user: str | None
    port: int | None
    identity_file: Path | None
    sudo: bool
    strict_host_keys: bool
    known_hosts: Path | None
    ssh_config: Path | None
    ssh_args: tuple[str, ...]
    connect_timeout: float
    command_timeout: float

    @property
    def url(self) -> str: ...


class TargetError(Exception):
    """A target could not be reached or used; the message names the host and what was wrong, in one line.

    `stderr` keeps the transport's whole error output for the report's details (never in the message).
    """

    def __init__(self, message: str, stderr: str = "") -> None:
        super().__init__(message)
        self.stderr = stderr


class TargetUnreachable(TargetError):
    pass


class TargetAuthError(TargetError):
    pass


class CommandTimeout(TargetError):
    pass


class TargetUnusable(TargetError):
    """The inventory asks to reach or become root on this host in a way kvmqa does not support (an Ansible
    `ansible_become_method: su`, a become user other than root): this host's one error, raised before any
    connection; the inventory's other hosts run."""


@dataclass
class CommandResult:
    rc: int
    stdout: str
    stderr: str
    duration: float
    command: str
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.rc == 0


class Transport(ABC):
    """One host's connection. `run` wraps every command in coreutils `timeout` on the host (and sudo with
    --sudo)."""

    name = "base"

    def __init__(self, target: TargetSpec) -> None:
        self.target = target
        self.round_trips = 0
        self._connection: Any = None  # what connect() made: a testinfra host, a paramiko client
        self._lock = threading.Lock()

    def connection(self, role: str = "command") -> Any:
        """The transport's connection, made once (threads share it: the fleet prefetch probes in threads)."""
        with self._lock:
            if self._connection is None:
                self._connection = self.connect(role)
            return self._connection

    @abstractmethod
    def connect(self, role: str) -> Any:
        """Make the connection `connection()` keeps; `role` names the command that needed it in errors."""

    # -- the interface
    # -----------------------------------------------------------------------------------------
    def run(
        self,
        command: str,
        timeout: float | None = None,
        env: dict[str, str] | None = None,
        role: str = "command",
    ) -> CommandResult:
        """Run one shell command on the host (one round trip) under a timeout enforced on the host.
        `role` names the command in error messages ("probe", "install step", ...)."""
        limit = int(timeout or self.target.command_timeout)
        prefix = "".join(f"{k}={shlex.quote(v)} " for k, v in (env or {}).items())
        wrapped = f"{prefix}timeout -k 5 {limit} /bin/sh -c {shlex.quote(command)}"
        started = time.perf_counter()
        self.round_trips += 1
        rc, stdout, stderr = self.execute(wrapped, limit, role)
        duration = time.perf_counter() - started
        t = self.target
        if self.uses_sudo and rc == 1 and "sudo:" in stderr and "password" in stderr:
            raise TargetAuthError(
                f"{t.name}: sudo needs a password for {t.user}; kvmqa needs passwordless sudo (NOPASSWD)"
            )
        return CommandResult(rc, stdout, stderr, duration, command, timed_out=rc in (124, 137))

    @abstractmethod
    def execute(self, wrapped: str, limit: int, role: str) -> tuple[int, str, str]:
        """Run an already wrapped command; (rc, stdout, stderr). Connection failures raise TargetError."""

    @abstractmethod
    def put_file(self, path: str, data: bytes, mode: int, timeout: float | None = None) -> None:
        """Write `data` to `path` on the host with `mode`; the data never appears on a command line."""

    def libvirt_uri(self, workdir: Path) -> str:
        """The libvirt URI of the host's system daemon (qemu:///system here; remote transports override)."""
        return "qemu:///system"

    def close(self) -> None:  # noqa: B027 - most transports hold nothing to close
        """Release the connection (idempotent)."""

    # -- shared by the remote transports
    # -----------------------------------------------------------------------
    @property
    def uses_sudo(self) -> bool:
        return self.target.sudo

    def remote_write_command(self, path: str, mode: int, limit: int) -> str:
        """`cat` stdin into PATH with MODE (umask 077 first), under timeout and, with --sudo, `sudo -n`."""
        q = shlex.quote(path)
        script = f"umask 077; cat > {q} && chmod {mode:04o} {q}"
        return f"timeout -k 5 {limit} " + (
            f"sudo -n sh -c {shlex.quote(script)}" if self.uses_sudo else f"sh -c {shlex.quote(script)}"
        )

    def upload_failed(self, path: str, err: str, rc: int) -> TargetError:
        t = self.target
        return TargetError(
            f"{t.name}: upload over {t.backend} to {t.url}: writing {path} failed: "
            f"{first_meaningful_line(err) or 'no message'} (exit {rc})",
            err,
        )


def failure_line(target: TargetSpec, what: str, reason: str, role: str) -> str:
    """The one line a user reads: host, the command's role, the transport, what failed where, and why."""
    return f"{target.name}: {role} over {target.backend}: {what} {target.url}: {reason}"


HOST_KEY_HINT = (
    "strict host-key checking is on: fix known_hosts (or --known-hosts FILE) or pass --no-strict-host-keys"
)

# ssh's stderr lines that say nothing about why it failed
_NOISE = (
    "warning: permanently added",
    "pseudo-terminal",
    "debug1:",
    "debug2:",
    "debug3:",
    "@@@",
    "it is possible",
    "someone could be",
    "it is also possible",
    "the fingerprint",
    "please contact",
    "add correct host key",
    "offending",
    "password authentication is disabled",
    "keyboard-interactive",
    "agent forwarding",
    "x11 forwarding",
    "port forwarding",
    "sha256:",
)
# the lines that do say it, most specific first
_REASONS = (
    "remote host identification has changed",
    "host key is known for",
    "host key verification failed",
    "no matching host key",
    "permission denied",
    "too many authentication failures",
    "connection refused",
    "banner exchange",
    "timed out",
    "could not resolve",
    "no route to host",
    "network is unreachable",
    "connection reset",
    "connection closed",
    "broken pipe",
    "kex_exchange_identification",
)


def first_meaningful_line(text: str) -> str:
    """The line of ssh's stderr that says why it failed (the most specific known reason, else the first
    non-noise line)."""
    lines = [ln.strip().rstrip(".").strip() for ln in text.replace("\r", "\n").splitlines()]
    lines = [ln for ln in lines if ln and not ln.lower().startswith(_NOISE)]
    for reason in _REASONS:
        for ln in lines:
            if reason in ln.lower():
                return ln[:300]
    return lines[0][:300] if lines else ""


def fingerprint(key: Any) -> str:
    """OpenSSH's SHA256 fingerprint of a paramiko key (what `ssh-keygen -lf` prints)."""
    import base64

    return "SHA256:" + base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")


def stderr_of(result: Any) -> str:
    """testinfra's CommandResult stderr, as text, however that testinfra version stores it (never its
    repr)."""
    for attr in ("stderr", "_stderr", "stderr_bytes"):
        try:
            value = getattr(result, attr, None)
        except Exception:  # noqa: BLE001 - a property that cannot decode
            continue
        if isinstance(value, bytes):
            value = value.decode(errors="replace")
        if value:
            return str(value)
    return ""


def classify_ssh_error(target: TargetSpec, text: str, role: str = "command", rc: int = 255) -> TargetError:
    """One TargetError line from OpenSSH's exit 255 and its stderr (kept whole in `.stderr`)."""
    low = text.lower()
    reason = first_meaningful_line(text) or "ssh gave no message"
    if (
        "host key verification failed" in low
        or "no matching host key" in low
        or "remote host identification has changed" in low
    ):
        if "remote host identification has changed" in low:
            reason = "the host key has CHANGED since it was recorded: Host key verification failed"
        return TargetAuthError(
            failure_line(
                target, "host key verification failed for", f"{reason} (ssh exit {rc}; {HOST_KEY_HINT})", role
            ),
            text,
        )
    if "permission denied" in low or "too many authentication failures" in low:
        return TargetAuthError(
            failure_line(
                target, "authentication failed for", f"{reason} (ssh exit {rc}; wrong user or key?)", role
            ),
            text,
        )
    if "timed out" in low:
        reason += f" (ssh exit {rc}; connect timeout {target.connect_timeout:g} s)"
    else:
        reason += f" (ssh exit {rc})"
    return TargetUnreachable(failure_line(target, "cannot reach", reason, role), text)
