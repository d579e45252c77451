"""Target: one host to check, as the inventory describes it (name, URL, user, port, identity, sudo, roles,
vars).

    >>> t = Target.from_url("ssh://qa@hv1:2222")
    >>> (t.backend, t.user, t.host, t.port, t.name)
    ('ssh', 'qa', 'hv1', 2222, 'hv1:2222')

How the host is reached is its transport (kvmqa/transport/: local, ssh, paramiko), made on first use;
`run`, `put_file`, `libvirt_uri` and `close` hand over to it.
"""

from __future__ import annotations

import threading
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kvmqa.transport.base import (
    HOST_KEY_HINT,
    CommandResult,
    CommandTimeout,
    TargetAuthError,
    TargetError,
    TargetUnreachable,
    TargetUnusable,
    Transport,
    classify_ssh_error,
    first_meaningful_line,
)

# URL scheme -> the transport class ("module:Class", imported when first used)
TRANSPORTS = {
    "local": "kvmqa.transport.local:LocalTransport",
    "ssh": "kvmqa.transport.ssh:OpenSshTransport",
    "paramiko": "kvmqa.transport.paramiko:ParamikoTransport",
}
BACKENDS = tuple(TRANSPORTS)


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
    unusable: str = ""  # why kvmqa cannot use this host as the inventory describes it (TargetUnusable on use)
    _transport: Transport | None = field(default=None, repr=False, compare=False)
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
            raise TargetError(
                f"{url!r}: unsupported transport {parsed.scheme!r}; use one of {', '.join(BACKENDS)}"
            )
        if not parsed.hostname:
            raise TargetError(f"{url!r}: no host name")
        if parsed.password:
            raise TargetError(f"{url!r}: passwords in host URLs are refused (they end up in logs); use a key")
        if parsed.scheme == "paramiko" and kwargs.get("ssh_config"):
            raise TargetError(
                f"{url!r}: an ssh config file applies to ssh:// targets (OpenSSH), not to paramiko://"
            )
        query = urllib.parse.parse_qs(parsed.query)
        if "sudo" in query:
            kwargs.setdefault("sudo", query["sudo"][0].lower() in ("1", "true", "yes"))
        if "ssh_identity_file" in query:
            kwargs.setdefault("identity_file", Path(query["ssh_identity_file"][0]).expanduser())
        return cls(
            name=kwargs.pop(
                "name",
                parsed.hostname
                if not parsed.port or parsed.port == 22
                else f"{parsed.hostname}:{parsed.port}",
            ),
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

    # -- the transport
    # -------------------------------------------------------------------------------------------
    @property
    def transport(self) -> Transport:
        if self.unusable:
            raise TargetUnusable(self.unusable)
        with self._lock:
            if self._transport is None:
                import importlib

                module, cls = TRANSPORTS[self.backend].split(":")
                self._transport = getattr(importlib.import_module(module), cls)(self)
            return self._transport

    @property
    def round_trips(self) -> int:
        return self.transport.round_trips if self._transport is not None else 0

    def run(
        self,
        command: str,
        timeout: float | None = None,
        env: dict[str, str] | None = None,
        role: str = "command",
    ) -> CommandResult:
        return self.transport.run(command, timeout=timeout, env=env, role=role)

    def put_file(self, path: str, data: bytes, mode: int, timeout: float | None = None) -> None:
        self.transport.put_file(path, data, mode, timeout=timeout)

    def libvirt_uri(self, workdir: Path) -> str:
        return self.transport.libvirt_uri(workdir)

    def ssh_argv(self) -> list[str]:
        """The OpenSSH command line that reaches this host (ssh and paramiko targets: install steps,
        libvirt)."""
        from kvmqa.transport.ssh import OpenSshTransport

        transport = self.transport if isinstance(self.transport, OpenSshTransport) else OpenSshTransport(self)
        return transport.ssh_argv()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


__all__ = [
    "BACKENDS",
    "HOST_KEY_HINT",
    "CommandResult",
    "CommandTimeout",
    "Target",
    "TargetAuthError",
    "TargetError",
    "TargetUnreachable",
    "TargetUnusable",
    "classify_ssh_error",
    "first_meaningful_line",
]
