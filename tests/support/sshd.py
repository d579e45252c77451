"""Real OpenSSH servers on loopback for the project's tests and benchmarks (no systemd needed).

Each server gets its own host key, port, config and known_hosts line; the client key and the
non-root user `kvmqa-ci` (passwordless sudo, member of libvirt) are shared.
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

CI_USER = "kvmqa-ci"
SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


@dataclass
class Sshd:
    port: int
    workdir: Path
    client_key: Path
    known_hosts: Path
    user: str
    process: subprocess.Popen[bytes] | None = None

    def url(self, user: str | None = None, backend: str = "ssh") -> str:
        return f"{backend}://{user or self.user}@127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ensure_ci_user(client_pub: str) -> None:
    """The non-root ssh user: passwordless sudo, in group libvirt; its authorized key is ours."""
    if subprocess.run(["id", CI_USER], capture_output=True).returncode != 0:
        subprocess.run(["useradd", "-m", "-s", "/bin/sh", CI_USER], check=True)
    # useradd leaves the password locked ('!'), and sshd (without PAM) refuses keys for locked accounts:
    # '*' means no password can ever match, yet the account is not locked.
    subprocess.run(["usermod", "-p", "*", CI_USER], check=True)
    for group in ("libvirt", "kvm"):
        if subprocess.run(["getent", "group", group], capture_output=True).returncode == 0:
            subprocess.run(["usermod", "-aG", group, CI_USER], check=True)
    sudoers = Path(f"/etc/sudoers.d/{CI_USER}")
    if not sudoers.exists():
        sudoers.write_text(f"{CI_USER} ALL=(ALL) NOPASSWD: ALL\n")
        sudoers.chmod(0o440)
    ssh_dir = Path(f"/home/{CI_USER}/.ssh")
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    auth = ssh_dir / "authorized_keys"
    if client_pub not in (auth.read_text() if auth.exists() else ""):
        with auth.open("a") as f:
            f.write(client_pub + "\n")
    subprocess.run(["chown", "-R", f"{CI_USER}:{CI_USER}", str(ssh_dir)], check=True)
    auth.chmod(0o600)


def client_key(workdir: Path) -> Path:
    key = workdir / "client_ed25519"
    if not key.exists():
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "kvmqa-test", "-f", str(key)], check=True
        )
    return key


def start_sshd(
    workdir: Path,
    key: Path,
    *,
    user: str = CI_USER,
    port: int | None = None,
    listen: str = "127.0.0.1",
    netns: str | None = None,
    binds: dict[str, Path] | None = None,
    log_level: str = "ERROR",
) -> Sshd:
    """Start one sshd (optionally inside a network namespace) and wait until it accepts connections.
    Its log is `workdir/sshd_<port>.log` (log_level VERBOSE logs every accepted login).

    `binds` {path on the host: file}: the sshd (and every session it starts) runs in a private mount namespace
    where those paths show the given files, e.g. another /etc/os-release. Nothing outside it changes."""
    workdir.mkdir(parents=True, exist_ok=True)
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    port = port or free_port()
    host_key = workdir / f"host_ed25519_{port}"
    if not host_key.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)], check=True)
    ensure_ci_user(key.with_suffix(".pub").read_text().strip())
    root_keys = workdir / "root_authorized_keys"
    root_keys.write_text(key.with_suffix(".pub").read_text())
    config = workdir / f"sshd_config_{port}"
    config.write_text(
        f"Port {port}\nListenAddress {listen}\nHostKey {host_key}\nPidFile {workdir}/sshd_{port}.pid\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
        f"PermitRootLogin prohibit-password\nAuthorizedKeysFile .ssh/authorized_keys {root_keys}\n"
        f"MaxSessions 64\nMaxStartups 64:30:128\nLogLevel {log_level}\n"
    )
    argv = [SSHD, "-D", "-e", "-f", str(config)]
    if binds:
        mounts = " && ".join(
            f"mount --bind {shlex.quote(str(src))} {shlex.quote(dst)}" for dst, src in binds.items()
        )
        argv = [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            f"{mounts} && exec {' '.join(shlex.quote(a) for a in argv)}",
        ]
    if netns:
        argv = ["ip", "netns", "exec", netns, *argv]
    log = open(workdir / f"sshd_{port}.log", "wb")  # noqa: SIM115 - lives as long as the server
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    pub = host_key.with_suffix(".pub").read_text().split()
    known = workdir / f"known_hosts_{port}"
    known.write_text(f"[{listen}]:{port} {pub[0]} {pub[1]}\n")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sshd exited: {(workdir / f'sshd_{port}.log').read_text()}")
        try:
            if netns is None:
                with socket.create_connection((listen, port), timeout=0.5):
                    break
            else:
                if (
                    subprocess.run(
                        ["ip", "netns", "exec", netns, "bash", "-c", f"exec 3<>/dev/tcp/{listen}/{port}"],
                        capture_output=True,
                    ).returncode
                    == 0
                ):
                    break
        except OSError:
            time.sleep(0.05)
    os.chmod(workdir, 0o755)
    return Sshd(port, workdir, key, known, user, proc)
