"""Targets: one host to check, reached through testinfra (local, ssh, paramiko), every command timed out.

    >>> t = Target.from_url("ssh://qa@hv1:2222")
    >>> (t.backend, t.user, t.host, t.port, t.name)
    ('ssh', 'qa', 'hv1', 2222, 'hv1:2222')
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import shlex
import stat
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BACKENDS = ("local", "ssh", "paramiko")


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


@dataclass
class Target:
    name: str
    backend: str = "local"
    host: str | None = None
    user: str | None = None
    port: int | None = None
    identity_file: Path | None = None
    sudo: bool = False
    roles: tuple[str, ...] = ("kvm-host",)
    vars: dict[str, Any] = field(default_factory=dict)
    strict_host_keys: bool = True
    known_hosts: Path | None = None
    ssh_config: Path | None = None  # ssh -F: the lab's OpenSSH config (ProxyJump to a bastion, aliases, ...)
    ssh_args: tuple[str, ...] = ()  # more OpenSSH arguments (an Ansible inventory's ansible_ssh_common_args)
    connect_timeout: float = 10.0
    command_timeout: float = 120.0
    round_trips: int = 0
    _host: Any = field(default=None, repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> Target:
        url = url.strip()
        if url in ("local", "local://"):
            return cls(name=kwargs.pop("name", "local"), backend="local", **kwargs)
        if "://" not in url:
            url = "ssh://" + url
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in BACKENDS:
            raise TargetError(f"{url!r}: unsupported transport {parsed.scheme!r}; use one of {', '.join(BACKENDS)}")
        if not parsed.hostname:
            raise TargetError(f"{url!r}: no host name")
        if parsed.password:
            raise TargetError(f"{url!r}: passwords in host URLs are refused (they end up in logs); use a key")
        if parsed.scheme == "paramiko" and kwargs.get("ssh_config"):
            raise TargetError(f"{url!r}: an ssh config file applies to ssh:// targets (OpenSSH), not to paramiko://")
        query = urllib.parse.parse_qs(parsed.query)
        if "sudo" in query:
            kwargs.setdefault("sudo", query["sudo"][0].lower() in ("1", "true", "yes"))
        if "ssh_identity_file" in query:
            kwargs.setdefault("identity_file", Path(query["ssh_identity_file"][0]).expanduser())
        return cls(
            name=kwargs.pop("name", parsed.hostname if not parsed.port or parsed.port == 22 else f"{parsed.hostname}:{parsed.port}"),
            backend=parsed.scheme,
            host=parsed.hostname,
            user=urllib.parse.unquote(parsed.username) if parsed.username else None,
            port=parsed.port,
            **kwargs,
        )

    @property
    def is_local(self) -> bool:
        return self.backend == "local"

    @property
    def url(self) -> str:
        if self.is_local:
            return "local://"
        user = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port else ""
        return f"{self.backend}://{user}{self.host}{port}"

    # -- transport -------------------------------------------------------------------------
    @functools.cached_property
    def control_path(self) -> str:
        """The OpenSSH ControlPath of this target's shared connection (ControlPersist keeps it 60 s).

        %C names user, host and port only, so the path also carries a tag of what decides how the host is
        reached and trusted: the ssh config (its path and content: a ProxyJump), host-key checking and the
        known_hosts file. A connection opened without host-key checking, or directly instead of through the
        lab's bastion, is never reused by a run that asks for them. Computed once per target (it reads the config).
        """
        control_dir = Path(tempfile.gettempdir()) / f"kvmqa-ssh-{os.getuid()}"
        control_dir.mkdir(mode=0o700, exist_ok=True)
        config = b""
        if self.ssh_config:
            try:
                config = self.ssh_config.read_bytes()
            except OSError:
                config = b"unreadable"
        tag = hashlib.sha256(repr((str(self.ssh_config), config, self.strict_host_keys, str(self.known_hosts), self.ssh_args))
                             .encode()).hexdigest()[:10]
        return f"{control_dir}/{tag}-%C"

    def ssh_options(self) -> list[str]:
        """OpenSSH options for every connection kvmqa makes (probe, libvirt, actions)."""
        opts = [
            "BatchMode=yes",  # never prompt for a password or a host key
            f"ConnectTimeout={int(self.connect_timeout)}",
            "ServerAliveInterval=5",
            "ServerAliveCountMax=3",
            "ControlMaster=auto",
            "ControlPersist=60s",
            f"ControlPath={self.control_path}",
            "LogLevel=ERROR",
        ]
        if self.strict_host_keys:
            opts.append("StrictHostKeyChecking=yes")
            if self.known_hosts:
                opts.append(f"UserKnownHostsFile={self.known_hosts}")
        else:
            opts += ["StrictHostKeyChecking=no", "UserKnownHostsFile=/dev/null"]
        return opts

    def ssh_argv(self) -> list[str]:
        argv = ["ssh", "-F", str(self.ssh_config)] if self.ssh_config else ["ssh"]
        for o in self.ssh_options():
            argv += ["-o", o]
        argv += self.ssh_args  # after kvmqa's own options: for an option given twice OpenSSH keeps the first
        if self.port:
            argv += ["-p", str(self.port)]
        if self.identity_file:
            argv += ["-i", str(self.identity_file)]
        argv.append(f"{self.user}@{self.host}" if self.user else str(self.host))
        return argv

    def testinfra_host(self, role: str = "command") -> Any:
        """testinfra's host for this target; `role` names the command that needed it in connection errors."""
        with self._lock:
            if self._host is None:
                import testinfra

                kwargs: dict[str, Any] = {"sudo": self.sudo and not self.is_local}
                if self.backend == "ssh":
                    kwargs["ssh_extra_args"] = " ".join([*(f"-o {o}" for o in self.ssh_options()),
                                                         *(shlex.quote(a) for a in self.ssh_args)])
                    kwargs["timeout"] = int(self.connect_timeout)
                    if self.identity_file:
                        kwargs["ssh_identity_file"] = str(self.identity_file)
                    if self.ssh_config:
                        kwargs["ssh_config"] = str(self.ssh_config)
                if self.backend == "paramiko":
                    kwargs["timeout"] = int(self.connect_timeout)
                    if self.identity_file:
                        kwargs["ssh_identity_file"] = str(self.identity_file)
                host = testinfra.get_host(self.url, **kwargs)
                if self.backend == "paramiko":
                    host.backend.__dict__["client"] = self._paramiko_client(role)
                self._host = host
            return self._host

    def _paramiko_client(self, role: str) -> Any:
        """A paramiko client with kvmqa's policy: known hosts enforced unless opted out."""
        import paramiko

        # paramiko logs every failed handshake with a traceback; kvmqa reports the failure itself, in one line
        logging.getLogger("paramiko").setLevel(logging.CRITICAL)
        client = paramiko.SSHClient()
        if self.strict_host_keys:
            client.load_system_host_keys(str(self.known_hosts) if self.known_hosts else None)
            client.set_missing_host_key_policy(paramiko.RejectPolicy())
        else:
            client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        try:
            client.connect(
                hostname=str(self.host), port=self.port or 22, username=self.user,
                key_filename=str(self.identity_file) if self.identity_file else None,
                # the banner wait must end before start_client's own wait (the same `timeout`): else start_client
                # returns on a still-silent transport and auth fails with a misleading "No existing session"
                timeout=self.connect_timeout, banner_timeout=max(0.5, self.connect_timeout - 0.5), auth_timeout=self.connect_timeout,
                allow_agent=False, look_for_keys=self.identity_file is None,
            )
        except paramiko.AuthenticationException as exc:
            raise TargetAuthError(self._failure("authentication failed for", f"{exc} ({type(exc).__name__}; wrong user or key?)", role)) from exc
        except paramiko.BadHostKeyException as exc:
            changed = (f"the host key has CHANGED since it was recorded: the host offers {exc.key.get_name()} "
                       f"{_fingerprint(exc.key)}, known_hosts has {_fingerprint(exc.expected_key)}")
            raise TargetAuthError(self._failure("host key verification failed for", f"{changed} ({HOST_KEY_HINT})", role)) from exc
        except paramiko.SSHException as exc:
            text = str(exc)
            if "not found in known_hosts" in text:
                raise TargetAuthError(self._failure("host key verification failed for", f"{text} ({HOST_KEY_HINT})", role)) from exc
            raise TargetUnreachable(self._failure("cannot reach", f"{text} ({type(exc).__name__}; connect timeout {self.connect_timeout:g} s)", role)) from exc
        except OSError as exc:
            raise TargetUnreachable(self._failure("cannot reach", f"{exc.strerror or exc} (connect timeout {self.connect_timeout:g} s)", role)) from exc
        transport = client.get_transport()
        if transport is not None:
            transport.set_keepalive(5)
        return client

    def _failure(self, what: str, reason: str, role: str) -> str:
        """The one line a user reads: host, the command's role, the transport, what failed where, and why."""
        return f"{self.name}: {role} over {self.backend}: {what} {self.url}: {reason}"

    def run(self, command: str, timeout: float | None = None, env: dict[str, str] | None = None,
            role: str = "command") -> CommandResult:
        """Run one shell command on the target (one round trip) with a timeout enforced on the target.

        `role` names the command in error messages ("probe", "install step", ...)."""
        limit = int(timeout or self.command_timeout)
        prefix = "".join(f"{k}={shlex.quote(v)} " for k, v in (env or {}).items())
        wrapped = f"{prefix}timeout -k 5 {limit} /bin/sh -c {shlex.quote(command)}"
        started = time.perf_counter()
        self.round_trips += 1
        try:
            result = self.testinfra_host(role).run(wrapped)
        except TargetError:
            raise
        except RuntimeError as exc:  # testinfra's ssh backend: ssh exited 255 (args[0]: its CommandResult)
            raise classify_ssh_error(self, _stderr_of(exc.args[0] if exc.args else None), role=role) from exc
        except Exception as exc:  # paramiko and socket errors
            raise TargetUnreachable(self._failure("cannot reach", f"{exc} ({type(exc).__name__})", role)) from exc
        duration = time.perf_counter() - started
        if self.sudo and result.rc == 1 and "sudo:" in result.stderr and "password" in result.stderr:
            raise TargetAuthError(f"{self.name}: sudo needs a password for {self.user}; kvmqa needs passwordless sudo (NOPASSWD)")
        return CommandResult(result.rc, result.stdout, result.stderr, duration, command, timed_out=result.rc in (124, 137))

    def put_file(self, path: str, data: bytes, mode: int, timeout: float | None = None) -> None:
        """Write `data` to `path` on the target with `mode`, the data on stdin, never in a command line (secrets).

        local: os.open with the mode. ssh: the target's own ssh argv running `umask 077; cat > PATH; chmod`
        (through `sudo -n sh -c` with --sudo) under `timeout`. paramiko: the same remote command on an exec
        channel of the existing client. Raises TargetError when the file could not be written.
        """
        limit = int(timeout or self.command_timeout)
        self.round_trips += 1
        if self.is_local:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
            with os.fdopen(fd, "wb") as f:
                os.fchmod(f.fileno(), mode)  # an existing file keeps its old mode through os.open
                f.write(data)
            return
        q = shlex.quote(path)
        script = f"umask 077; cat > {q} && chmod {mode:04o} {q}"
        remote = f"timeout -k 5 {limit} " + (f"sudo -n sh -c {shlex.quote(script)}" if self.sudo else f"sh -c {shlex.quote(script)}")
        if self.backend == "paramiko":
            rc, err = self._paramiko_put(remote, data, limit)
        else:
            import subprocess

            try:
                done = subprocess.run([*self.ssh_argv(), remote], input=data, capture_output=True, timeout=limit + 10)
            except subprocess.TimeoutExpired as exc:
                raise CommandTimeout(f"{self.name}: upload over {self.backend} to {self.url}: writing {path} timed out "
                                     f"(upload timeout {limit} s)") from exc
            rc, err = done.returncode, done.stderr.decode(errors="replace")
            if rc == 255:
                raise classify_ssh_error(self, err, role="upload")
        if rc != 0:
            raise TargetError(f"{self.name}: upload over {self.backend} to {self.url}: writing {path} failed: "
                              f"{first_meaningful_line(err) or 'no message'} (exit {rc})", err)

    def _paramiko_put(self, remote: str, data: bytes, limit: int) -> tuple[int, str]:
        client = self.testinfra_host("upload").backend.client
        channel = client.get_transport().open_session()
        try:
            channel.settimeout(limit + 10)
            channel.exec_command(remote)
            channel.sendall(data)
            channel.shutdown_write()
            err = b""
            while True:
                chunk = channel.recv_stderr(65536)
                if not chunk:
                    break
                err += chunk
            return channel.recv_exit_status(), err.decode(errors="replace")
        except OSError as exc:  # socket.timeout included
            raise TargetUnreachable(f"{self.name}: upload over {self.backend} to {self.url}: writing a file failed: "
                                    f"{exc or type(exc).__name__} (upload timeout {limit} s)") from exc
        finally:
            channel.close()

    def libvirt_uri(self, workdir: Path) -> str:
        """qemu:///system locally; over SSH a qemu+ext URI through the same OpenSSH options (and sudo)."""
        if self.is_local:
            return "qemu:///system"
        helper = (
            "if command -v virt-ssh-helper >/dev/null 2>&1; then exec virt-ssh-helper qemu:///system; "
            "else exec nc -U /run/libvirt/libvirt-sock; fi"
        )
        remote = f"{'sudo -n ' if self.sudo else ''}sh -c {shlex.quote(helper)}"
        script = workdir / "libvirt-ssh.sh"
        workdir.mkdir(parents=True, exist_ok=True)
        script.write_text("#!/bin/sh\nexec " + " ".join(shlex.quote(a) for a in self.ssh_argv()) + " " + shlex.quote(remote) + "\n")
        script.chmod(stat.S_IRWXU)
        return f"qemu+ext:///system?command={urllib.parse.quote(str(script.resolve()))}"

    def close(self) -> None:
        if self._host is not None and self.backend == "paramiko":
            client = self._host.backend.__dict__.get("client")
            if client is not None:
                client.close()


HOST_KEY_HINT = "strict host-key checking is on: fix known_hosts (or --known-hosts FILE) or pass --no-strict-host-keys"

# ssh's stderr lines that say nothing about why it failed
_NOISE = ("warning: permanently added", "pseudo-terminal", "debug1:", "debug2:", "debug3:", "@@@", "it is possible",
          "someone could be", "it is also possible", "the fingerprint", "please contact", "add correct host key",
          "offending", "password authentication is disabled", "keyboard-interactive", "agent forwarding",
          "x11 forwarding", "port forwarding", "sha256:")
# the lines that do say it, most specific first
_REASONS = ("remote host identification has changed", "host key is known for", "host key verification failed",
            "no matching host key", "permission denied", "too many authentication failures", "connection refused",
            "banner exchange", "timed out", "could not resolve", "no route to host", "network is unreachable",
            "connection reset", "connection closed", "broken pipe", "kex_exchange_identification")


def first_meaningful_line(text: str) -> str:
    """The line of ssh's stderr that says why it failed (the most specific known reason, else the first non-noise line)."""
    lines = [ln.strip().rstrip(".").strip() for ln in text.replace("\r", "\n").splitlines()]
    lines = [ln for ln in lines if ln and not ln.lower().startswith(_NOISE)]
    for reason in _REASONS:
        for ln in lines:
            if reason in ln.lower():
                return ln[:300]
    return lines[0][:300] if lines else ""


def _fingerprint(key: Any) -> str:
    """OpenSSH's SHA256 fingerprint of a paramiko key (what `ssh-keygen -lf` prints)."""
    import base64

    return "SHA256:" + base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")


def _stderr_of(result: Any) -> str:
    """testinfra's CommandResult stderr, as text, however that testinfra version stores it (never its repr)."""
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


def classify_ssh_error(target: Target, text: str, role: str = "command", rc: int = 255) -> TargetError:
    """One TargetError line from OpenSSH's exit 255 and its stderr (kept whole in `.stderr`)."""
    low = text.lower()
    reason = first_meaningful_line(text) or "ssh gave no message"
    if "host key verification failed" in low or "no matching host key" in low or "remote host identification has changed" in low:
        if "remote host identification has changed" in low:
            reason = "the host key has CHANGED since it was recorded: Host key verification failed"
        return TargetAuthError(target._failure("host key verification failed for", f"{reason} (ssh exit {rc}; {HOST_KEY_HINT})", role), text)
    if "permission denied" in low or "too many authentication failures" in low:
        return TargetAuthError(target._failure("authentication failed for", f"{reason} (ssh exit {rc}; wrong user or key?)", role), text)
    if "timed out" in low:
        reason += f" (ssh exit {rc}; connect timeout {target.connect_timeout:g} s)"
    else:
        reason += f" (ssh exit {rc})"
    return TargetUnreachable(target._failure("cannot reach", reason, role), text)
