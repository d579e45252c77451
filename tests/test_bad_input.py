"""Bad input gets one clear error naming what and where; one bad host never stops the others."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.sshd import Sshd, free_port, start_sshd
from tests.support.suite import run_suite

STAGES = (
    "suites/test_00_reach.py",
    "suites/test_10_cpu.py",
    "suites/test_20_packages.py",
    "suites/test_30_libvirt.py",
)


@pytest.fixture()
def impostor(tmp_path: Path, sshd: Sshd) -> Sshd:
    """A second real sshd whose host key is NOT the one in our known_hosts (a changed or spoofed host)."""
    other = start_sshd(tmp_path / "impostor", sshd.client_key)
    shutil.copy(sshd.known_hosts, tmp_path / "known")
    line = sshd.known_hosts.read_text().replace(f"]:{sshd.port} ", f"]:{other.port} ")  # the good host's key
    assert f"]:{other.port} " in line
    (tmp_path / "known").write_text(sshd.known_hosts.read_text() + line)
    other.known_hosts = tmp_path / "known"
    yield other
    other.stop()


@pytest.mark.usefixtures("libvirtd")
def test_unreachable_and_wrong_key_next_to_a_good_host(tmp_path: Path, sshd: Sshd, impostor: Sshd) -> None:
    closed = free_port()
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(
        "defaults:\n  user: kvmqa-ci\n  sudo: true\n"
        f"  identity_file: {sshd.client_key}\n  known_hosts: {impostor.known_hosts}\n"
        "hosts:\n"
        f"  - {{name: good, address: 127.0.0.1, port: {sshd.port}}}\n"
        f"  - {{name: unreachable, address: 127.0.0.1, port: {closed}}}\n"
        f"  - {{name: wrong-key, address: 127.0.0.1, port: {impostor.port}}}\n"
    )
    run = run_suite(tmp_path / "r", "--inventory", str(inventory), "--connect-timeout", "5", paths=STAGES)
    assert run.rc == 1
    assert (tmp_path / "r" / "report.html").exists()
    results = run.results["results"]
    good = [r for r in results if r["host"] == "good"]
    assert {r["stage"] for r in good} == {"reach", "cpu", "packages", "libvirt"}
    # the good host is checked in full: what it skips does not apply to it (not Intel, a VM), never the bad
    # hosts' fault
    assert all(
        "reach" not in r["message"] and "unreachable" not in r["message"]
        for r in good
        if r["verdict"] == "skip"
    ), [r for r in good if r["verdict"] == "skip"]
    assert {r["check_id"] for r in good if r["verdict"] == "skip"} <= {"cpu.tdx", "cpu.sev", "cpu.microcode"}
    for bad, words in (("unreachable", "cannot reach"), ("wrong-key", "host key verification failed")):
        mine = [r for r in results if r["host"] == bad]
        failures = [r for r in mine if r["verdict"] in ("fail", "error")]
        assert len(failures) == 1, failures
        assert failures[0]["check_id"] == "reach.probe" and words in failures[0]["message"], failures[0][
            "message"
        ]
        assert all(
            r["verdict"] == "skip" and "unreachable" in r["message"] for r in mine if r is not failures[0]
        )
    assert run.results["matrix"]["good"]["packages"] == "pass"
    assert run.results["matrix"]["unreachable"]["reach"] == "fail"


@pytest.mark.usefixtures("libvirtd")
def test_unknown_distro_is_a_clear_failure_on_that_host_only(tmp_path: Path, sshd: Sshd) -> None:
    """A real target whose /etc/os-release names a distro kvmqa has no table for (an sshd in a private mount
    namespace sees another os-release), next to a normal one."""
    release = tmp_path / "os-release"
    release.write_text('PRETTY_NAME="Plan 9 from Bell Labs"\nNAME="Plan 9"\nID=plan9\nVERSION_ID="4"\n')
    odd = start_sshd(tmp_path / "plan9", sshd.client_key, binds={"/etc/os-release": release})
    try:
        known = tmp_path / "known"
        known.write_text(sshd.known_hosts.read_text() + odd.known_hosts.read_text())
        run = run_suite(
            tmp_path / "r",
            "--hosts",
            f"{sshd.url()},{odd.url()}",
            "--sudo",
            "--ssh-identity-file",
            str(sshd.client_key),
            "--known-hosts",
            str(known),
            paths=STAGES,
        )
    finally:
        odd.stop()
    assert run.rc == 1
    good, plan9 = f"127.0.0.1:{sshd.port}", f"127.0.0.1:{odd.port}"
    findings = run.findings()
    distro = findings[(plan9, "packages.distro")]
    assert distro["verdict"] == "fail" and "unknown distro ID='plan9'" in distro["message"], distro
    assert findings[(plan9, "reach.probe")]["verdict"] == "pass"
    assert findings[(good, "packages.distro")]["verdict"] == "pass"
    assert (
        run.results["matrix"][good]["packages"] == "pass"
        and run.results["matrix"][plan9]["packages"] == "fail"
    )
    # no cascade: checks that need the package table are skipped naming packages.distro, not errors
    assert not [k for k, f in findings.items() if k[0] == plan9 and f["verdict"] == "error"]
    skipped = [
        f
        for k, f in findings.items()
        if k[0] == plan9 and f["verdict"] == "skip" and k[1].startswith("packages.")
    ]
    assert skipped and all("packages.distro" in f["message"] for f in skipped), skipped


def test_wrong_credentials_are_named(tmp_path: Path, sshd: Sshd) -> None:
    run = run_suite(
        tmp_path,
        "--hosts",
        f"ssh://nobody-here@127.0.0.1:{sshd.port}",
        "--ssh-identity-file",
        str(sshd.client_key),
        "--known-hosts",
        str(sshd.known_hosts),
        paths=STAGES[:2],
    )
    finding = run.findings()[(f"127.0.0.1:{sshd.port}", "reach.probe")]
    assert finding["verdict"] == "fail" and "authentication failed" in finding["message"]


def test_malformed_inventory_names_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "inv.yaml"
    bad.write_text("hosts:\n  - name: a\n    address: 10.0.0.1\n   port: 22\n")
    run = run_suite(tmp_path / "r", "--inventory", str(bad), paths=STAGES[:1])
    assert run.rc == 4
    assert f"{bad}:4" in run.stdout and "malformed YAML" in run.stdout
    assert "malformed YAML" in run.results["errors"][0]


def test_inventory_schema_error_names_the_host_line(tmp_path: Path) -> None:
    bad = tmp_path / "inv.yaml"
    bad.write_text("hosts:\n  - name: a\n    address: h1\n  - name: b\n    adress: h2\n")
    run = run_suite(tmp_path / "r", "--inventory", str(bad), paths=STAGES[:1])
    assert run.rc == 4 and f"{bad}:4" in run.stdout and "'adress'" in run.stdout


def test_malformed_profile_names_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "p.yaml"
    bad.write_text("min_cpus: lots\n")
    run = run_suite(tmp_path / "r", "--profile", str(bad), paths=STAGES[:1])
    assert run.rc == 4 and "field 'min_cpus'" in run.stdout and str(bad) in run.stdout


@pytest.fixture()
def hung_port() -> Iterator[int]:
    """A host that accepts the TCP connection and never says a word (no SSH banner): a hung host."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    server.close()


@pytest.mark.parametrize("backend", ["ssh", "paramiko"])
def test_each_target_error_is_one_clean_line(
    tmp_path: Path, sshd: Sshd, impostor: Sshd, hung_port: int, backend: str
) -> None:
    """Unreachable, hung, wrong key, wrong host key: one line each naming the host, the command's role, the
    transport and what ssh (or paramiko) said — never an object repr or the probe's script text."""
    wrong_key = tmp_path / "wrong_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(wrong_key)], check=True)
    closed = free_port()
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(
        f"defaults:\n  user: kvmqa-ci\n  backend: {backend}\n"
        f"  identity_file: {sshd.client_key}\n  known_hosts: {impostor.known_hosts}\n"
        "hosts:\n"
        f"  - {{name: unreachable, address: 127.0.0.1, port: {closed}}}\n"
        f"  - {{name: hung, address: 127.0.0.1, port: {hung_port}}}\n"
        f"  - {{name: wrong-key, address: 127.0.0.1, port: {sshd.port}, identity_file: {wrong_key}}}\n"
        f"  - {{name: wrong-host-key, address: 127.0.0.1, port: {impostor.port}}}\n"
    )
    run = run_suite(tmp_path / "r", "--inventory", str(inventory), "--connect-timeout", "3", paths=STAGES[:1])
    assert run.rc == 1, run.stdout
    findings = run.findings()
    said = {
        "unreachable": ("cannot reach", "Connection refused" if backend == "ssh" else "Unable to connect"),
        "hung": ("cannot reach", "banner exchange" if backend == "ssh" else "SSH protocol banner"),
        "wrong-key": (
            "authentication failed for",
            "Permission denied" if backend == "ssh" else "Authentication failed",
        ),
        "wrong-host-key": ("host key verification failed for", "has CHANGED since it was recorded"),
    }
    for host, (what, ssh_said) in said.items():
        finding = findings[(host, "reach.probe")]
        message = finding["message"]
        print(f"{backend} {host}: {message}")  # the line a user reads (shown with -s)
        assert finding["verdict"] == "fail"
        assert "\n" not in message and len(message) < 500, message
        assert message.startswith(f"{host}: probe over {backend}: {what} {backend}://kvmqa-ci@127.0.0.1:"), (
            message
        )
        assert ssh_said.lower() in message.lower(), message
        for junk in ("CommandResult", "object at 0x", "timeout -k", "/bin/sh -c", "@@kvmqa", "Traceback"):
            assert junk not in message, message
    assert "connect timeout 3 s" in findings[("hung", "reach.probe")]["message"]
    if backend == "ssh":  # ssh's whole stderr stays in the details, out of the message
        assert "banner exchange" in findings[("hung", "reach.probe")]["details"]["stderr"]
