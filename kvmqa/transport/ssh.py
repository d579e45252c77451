"""OpenSSH: commands through testinfra's ssh backend (its public API), uploads and libvirt through the same
ssh argv.

Every connection shares one ControlMaster per host (ControlPersist 60 s), BatchMode (never a prompt) and
strict
host keys unless opted out.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shlex
import stat
import subprocess
import tempfile
import urllib.parse
from pathlib import Path
from typing import Any

from kvmqa.transport.base import CommandTimeout, TargetError, Transport, classify_ssh_error, stderr_of


class OpenSshTransport(Transport):
    name = "ssh"

    @functools.cached_property
    def control_path(self) -> str:
        """The OpenSSH ControlPath of this target's shared connection (ControlPersist keeps it 60 s).

        %C names user, host and port only, so the path also carries a tag of what decides how the host is
        reached and trusted: the ssh config (its path and content: a ProxyJump), host-key checking and the
        known_hosts file. A connection opened without host-key checking, or directly instead of through the
        lab's bastion, is never reused by a run that asks for them. Computed once per target (it reads the
        config).
        """
        control_dir = Path(tempfile.gettempdir()) / f"kvmqa-ssh-{os.getuid()}"
        control_dir.mkdir(mode=0o700, exist_ok=True)
        config = b""
        if self.target.ssh_config:
            try:
                config = self.target.ssh_config.read_bytes()
            except OSError:
                config = b"unreadable"
        tag = hashlib.sha256(
            repr(
                (
                    str(self.target.ssh_config),
                    config,
                    self.target.strict_host_keys,
                    str(self.target.known_hosts),
                    self.target.ssh_args,
                )
            ).encode()
        ).hexdigest()[:10]
        return f"{control_dir}/{tag}-%C"

    def ssh_options(self) -> list[str]:
        """OpenSSH options for every connection kvmqa makes (probe, libvirt, actions)."""
        t = self.target
        opts = [
            "BatchMode=yes",  # never prompt for a password or a host key
            f"ConnectTimeout={int(t.connect_timeout)}",
            "ServerAliveInterval=5",
            "ServerAliveCountMax=3",
            "ControlMaster=auto",
            "ControlPersist=60s",
            f"ControlPath={self.control_path}",
            "LogLevel=ERROR",
        ]
        if t.strict_host_keys:
            opts.append("StrictHostKeyChecking=yes")
            if t.known_hosts:
                opts.append(f"UserKnownHostsFile={t.known_hosts}")
        else:
            opts += ["StrictHostKeyChecking=no", "UserKnownHostsFile=/dev/null"]
        return opts

    def ssh_argv(self) -> list[str]:
        t = self.target
        argv = ["ssh", "-F", str(t.ssh_config)] if t.ssh_config else ["ssh"]
        for o in self.ssh_options():
            argv += ["-o", o]
        argv += t.ssh_args  # after kvmqa's own options: for an option given twice OpenSSH keeps the first
        if t.port:
            argv += ["-p", str(t.port)]
        if t.identity_file:
            argv += ["-i", str(t.identity_file)]
        argv.append(f"{t.user}@{t.host}" if t.user else str(t.host))
        return argv

    def connect(self, role: str) -> Any:
        """testinfra's ssh host with kvmqa's OpenSSH options (its public get_host)."""
        import testinfra

        t = self.target
        kwargs: dict[str, Any] = {
            "sudo": t.sudo,
            "ssh_extra_args": " ".join(
                [*(f"-o {o}" for o in self.ssh_options()), *(shlex.quote(a) for a in t.ssh_args)]
            ),
            "timeout": int(t.connect_timeout),
        }
        if t.identity_file:
            kwargs["ssh_identity_file"] = str(t.identity_file)
        if t.ssh_config:
            kwargs["ssh_config"] = str(t.ssh_config)
        return testinfra.get_host(t.url, **kwargs)

    def execute(self, wrapped: str, limit: int, role: str) -> tuple[int, str, str]:
        try:
            result = self.connection(role).run(wrapped)
        except RuntimeError as exc:  # testinfra's ssh backend: ssh exited 255 (args[0]: its CommandResult)
            raise classify_ssh_error(
                self.target, stderr_of(exc.args[0] if exc.args else None), role=role
            ) from exc
        return result.rc, result.stdout, result.stderr

    def put_file(self, path: str, data: bytes, mode: int, timeout: float | None = None) -> None:
        """The host's own ssh argv running `umask 077; cat > PATH; chmod` (through `sudo -n sh -c` with
        --sudo)."""
        t = self.target
        limit = int(timeout or t.command_timeout)
        self.round_trips += 1
        try:
            done = subprocess.run(
                [*self.ssh_argv(), self.remote_write_command(path, mode, limit)],
                input=data,
                capture_output=True,
                timeout=limit + 10,
            )
        except subprocess.TimeoutExpired as exc:
            raise CommandTimeout(
                f"{t.name}: upload over {t.backend} to {t.url}: writing {path} timed out "
                f"(upload timeout {limit} s)"
            ) from exc
        err = done.stderr.decode(errors="replace")
        if done.returncode == 255:
            raise classify_ssh_error(t, err, role="upload")
        if done.returncode != 0:
            raise self.upload_failed(path, err, done.returncode)

    def libvirt_uri(self, workdir: Path) -> str:
        """A qemu+ext URI: the host's libvirt socket through the same OpenSSH options (and sudo)."""
        helper = (
            "if command -v virt-ssh-helper >/dev/null 2>&1; then exec virt-ssh-helper qemu:///system; "
            "else exec nc -U /run/libvirt/libvirt-sock; fi"
        )
        remote = f"{'sudo -n ' if self.target.sudo else ''}sh -c {shlex.quote(helper)}"
        script = workdir / "libvirt-ssh.sh"
        workdir.mkdir(parents=True, exist_ok=True)
        script.write_text(
            "#!/bin/sh\nexec "
            + " ".join(shlex.quote(a) for a in self.ssh_argv())
            + " "
            + shlex.quote(remote)
            + "\n"
        )
        script.chmod(stat.S_IRWXU)
        return f"qemu+ext:///system?command={urllib.parse.quote(str(script.resolve()))}"


__all__ = ["OpenSshTransport", "TargetError"]
