"""The transport interface (kvmqa/transport/base.py) on each of its classes, for real: this machine (local)
and the
test sshd on 127.0.0.1 through OpenSSH and through paramiko, as the non-root user with and without sudo."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from kvmqa.transport.base import TargetError
from kvmqa.transport.local import LocalTransport
from kvmqa.transport.paramiko import ParamikoTransport
from kvmqa.transport.ssh import OpenSshTransport
from kvmqa.transport.target import Target
from tests.support.sshd import Sshd

CLASSES = {"local": LocalTransport, "ssh": OpenSshTransport, "paramiko": ParamikoTransport}


def target_for(scheme: str, sshd: Sshd, sudo: bool = False) -> Target:
    if scheme == "local":
        return Target.from_url("local://")
    return Target.from_url(
        sshd.url(backend=scheme),
        sudo=sudo,
        identity_file=sshd.client_key,
        known_hosts=sshd.known_hosts,
        connect_timeout=5,
        command_timeout=30,
    )


@pytest.mark.parametrize("scheme", list(CLASSES))
def test_run_gives_rc_output_env_and_counts_round_trips(scheme: str, sshd: Sshd) -> None:
    target = target_for(scheme, sshd)
    transport = target.transport
    assert type(transport) is CLASSES[scheme] and transport.name == scheme
    try:
        done = target.run('printf "%s" "$KQ_X"; echo oops >&2; exit 3', env={"KQ_X": "a b'c"})
        assert (done.rc, done.stdout, done.stderr.strip(), done.ok, done.timed_out) == (
            3,
            "a b'c",
            "oops",
            False,
            False,
        )
        whoami = target.run("id -un").stdout.strip()
        assert whoami == ("root" if scheme == "local" else sshd.user)
        assert target.round_trips == 2
    finally:
        target.close()
        target.close()  # idempotent


@pytest.mark.parametrize("scheme", ["ssh", "paramiko"])
def test_sudo_and_the_hosts_own_timeout(scheme: str, sshd: Sshd) -> None:
    target = target_for(scheme, sshd, sudo=True)
    try:
        assert target.run("id -u").stdout.strip() == "0"
        started = time.monotonic()
        slow = target.run("sleep 20", timeout=1)
        assert slow.timed_out and slow.rc == 124 and time.monotonic() - started < 15
    finally:
        target.close()


@pytest.mark.parametrize("scheme", list(CLASSES))
def test_put_file_writes_the_data_with_the_mode_never_on_a_command_line(
    scheme: str, sshd: Sshd, tmp_path: Path
) -> None:
    target = target_for(scheme, sshd, sudo=scheme != "local")
    path = Path("/tmp") / f"kvmqa-transport-{scheme}-{os.getpid()}"
    secret = b"kvmqa-secret-\x00\xff data\n"
    try:
        target.put_file(str(path), secret, 0o600)
        assert path.read_bytes() == secret and stat.S_IMODE(path.stat().st_mode) == 0o600
        target.put_file(str(path), b"again", 0o640)  # an existing file gets the new mode too
        assert path.read_bytes() == b"again" and stat.S_IMODE(path.stat().st_mode) == 0o640
        with pytest.raises(TargetError) as err:
            target.put_file("/nonexistent-kvmqa-dir/x", b"x", 0o600)
        assert "\n" not in str(err.value) and "/nonexistent-kvmqa-dir/x" in str(err.value)
    finally:
        path.unlink(missing_ok=True)
        target.close()


@pytest.mark.parametrize("scheme", list(CLASSES))
def test_libvirt_uri(scheme: str, sshd: Sshd, tmp_path: Path) -> None:
    target = target_for(scheme, sshd, sudo=True)
    uri = target.libvirt_uri(tmp_path / "w")
    if scheme == "local":
        assert uri == "qemu:///system"
        return
    assert uri.startswith("qemu+ext:///system?command=")  # paramiko too: libvirt speaks OpenSSH only
    script = (tmp_path / "w" / "libvirt-ssh.sh").read_text()
    assert (
        f"-p {sshd.port}" in script.replace("'", "")
        and "sudo -n" in script
        and "StrictHostKeyChecking=yes" in script
    )
