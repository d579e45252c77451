"""paramiko: kvmqa's own SSH client (known hosts enforced unless opted out), commands on exec channels.

libvirt cannot speak paramiko: its URI goes through OpenSSH with the same options
(`OpenSshTransport.libvirt_uri`).
"""

from __future__ import annotations

import logging
import shlex
from pathlib import Path
from typing import Any

from kvmqa.transport.base import (
    HOST_KEY_HINT,
    CommandTimeout,
    TargetAuthError,
    TargetUnreachable,
    Transport,
    failure_line,
    fingerprint,
)


class ParamikoTransport(Transport):
    name = "paramiko"

    def connect(self, role: str) -> Any:
        """A paramiko client with kvmqa's policy: known hosts enforced unless opted out."""
        import paramiko

        t = self.target

        # paramiko logs every failed handshake with a traceback; kvmqa reports the failure itself, in one line
        logging.getLogger("paramiko").setLevel(logging.CRITICAL)
        client = paramiko.SSHClient()
        if t.strict_host_keys:
            client.load_system_host_keys(str(t.known_hosts) if t.known_hosts else None)
            client.set_missing_host_key_policy(paramiko.RejectPolicy())
        else:
            client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        try:
            client.connect(
                hostname=str(t.host),
                port=t.port or 22,
                username=t.user,
                key_filename=str(t.identity_file) if t.identity_file else None,
                # the banner wait must end before start_client's own wait (the same `timeout`): else
                # start_client
                # returns on a still-silent transport and auth fails with a misleading "No existing session"
                timeout=t.connect_timeout,
                banner_timeout=max(0.5, t.connect_timeout - 0.5),
                auth_timeout=t.connect_timeout,
                allow_agent=False,
                look_for_keys=t.identity_file is None,
            )
        except paramiko.AuthenticationException as exc:
            raise TargetAuthError(
                failure_line(
                    self.target,
                    "authentication failed for",
                    f"{exc} ({type(exc).__name__}; wrong user or key?)",
                    role,
                )
            ) from exc
        except paramiko.BadHostKeyException as exc:
            changed = (
                f"the host key has CHANGED since it was recorded: the host offers {exc.key.get_name()} "
                f"{fingerprint(exc.key)}, known_hosts has {fingerprint(exc.expected_key)}"
            )
            raise TargetAuthError(
                failure_line(
                    self.target, "host key verification failed for", f"{changed} ({HOST_KEY_HINT})", role
                )
            ) from exc
        except paramiko.SSHException as exc:
            text = str(exc)
            if "not found in known_hosts" in text:
                raise TargetAuthError(
                    failure_line(
                        self.target, "host key verification failed for", f"{text} ({HOST_KEY_HINT})", role
                    )
                ) from exc
            raise TargetUnreachable(
                failure_line(
                    self.target,
                    "cannot reach",
                    f"{text} ({type(exc).__name__}; connect timeout {t.connect_timeout:g} s)",
                    role,
                )
            ) from exc
        except OSError as exc:
            raise TargetUnreachable(
                failure_line(
                    self.target,
                    "cannot reach",
                    f"{exc.strerror or exc} (connect timeout {t.connect_timeout:g} s)",
                    role,
                )
            ) from exc
        transport = client.get_transport()
        if transport is not None:
            transport.set_keepalive(5)
        return client

    def execute(self, wrapped: str, limit: int, role: str) -> tuple[int, str, str]:
        command = f"sudo -n /bin/sh -c {shlex.quote(wrapped)}" if self.uses_sudo else wrapped
        client = self.connection(role)
        try:
            channel = client.get_transport().open_session()
        except Exception as exc:  # noqa: BLE001 - a dropped connection
            raise TargetUnreachable(
                failure_line(self.target, "cannot reach", f"{exc} ({type(exc).__name__})", role)
            ) from exc
        try:
            channel.settimeout(limit + 15)  # the host's own `timeout` ends the command first
            channel.exec_command(command)
            channel.shutdown_write()
            out, err = _drain(channel)
            return channel.recv_exit_status(), out, err
        except OSError as exc:  # socket.timeout included
            raise CommandTimeout(
                failure_line(
                    self.target,
                    "no answer from",
                    f"{exc or type(exc).__name__} (command timeout {limit} s)",
                    role,
                )
            ) from exc
        finally:
            channel.close()

    def put_file(self, path: str, data: bytes, mode: int, timeout: float | None = None) -> None:
        """The same remote `cat > PATH` as OpenSSH's, on an exec channel of the existing client."""
        limit = int(timeout or self.target.command_timeout)
        self.round_trips += 1
        rc, err = self._send(self.remote_write_command(path, mode, limit), data, limit)
        if rc != 0:
            raise self.upload_failed(path, err, rc)

    def _send(self, remote: str, data: bytes, limit: int) -> tuple[int, str]:
        client = self.connection("upload")
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
            raise TargetUnreachable(
                f"{self.target.name}: upload over {self.target.backend} to {self.target.url}: writing a file "
                "failed: "
                f"{exc or type(exc).__name__} (upload timeout {limit} s)"
            ) from exc
        finally:
            channel.close()

    def libvirt_uri(self, workdir: Path) -> str:
        from kvmqa.transport.ssh import OpenSshTransport

        return OpenSshTransport(self.target).libvirt_uri(workdir)

    def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None


def _drain(channel: Any) -> tuple[str, str]:
    """Read stdout and stderr to the end without either pipe filling up."""
    out, err = bytearray(), bytearray()
    while True:
        got = False
        if channel.recv_ready():
            out += channel.recv(65536)
            got = True
        if channel.recv_stderr_ready():
            err += channel.recv_stderr(65536)
            got = True
        if not got:
            if channel.exit_status_ready() and not channel.recv_ready() and not channel.recv_stderr_ready():
                break
            channel.status_event.wait(0.05)
    return out.decode(errors="replace"), err.decode(errors="replace")
