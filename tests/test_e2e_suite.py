"""End to end, for real: the suites against local://, ssh:// (non-root + sudo) and paramiko:// on this
machine.

Verdicts are compared with the machine's real state, read here independently of kvmqa.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.support.daemons import start_libvirtd, stop_libvirtd
from tests.support.sshd import Sshd, start_sshd
from tests.support.suite import run_suite

BASE_STAGES = (
    "suites/test_00_reach.py",
    "suites/test_10_cpu.py",
    "suites/test_20_packages.py",
    "suites/test_30_libvirt.py",
)
pytestmark = pytest.mark.usefixtures("libvirtd")


def real_cpu_flags() -> set[str]:
    text = Path("/proc/cpuinfo").read_text()
    return set(re.search(r"^flags\s*:(.*)$", text, re.M).group(1).split())  # type: ignore[union-attr]


def dpkg_installed(name: str) -> bool:
    out = subprocess.run(["dpkg-query", "-W", "-f=${db:Status-Abbrev}", name], capture_output=True, text=True)
    return out.stdout.startswith("ii")


def ssh_args(sshd: Sshd) -> list[str]:
    return [
        "--hosts",
        sshd.url(),
        "--sudo",
        "--ssh-identity-file",
        str(sshd.client_key),
        "--known-hosts",
        str(sshd.known_hosts),
    ]


def test_local_run_matches_the_machine_and_writes_every_report(tmp_path: Path) -> None:
    run = run_suite(tmp_path, paths=BASE_STAGES)
    assert (tmp_path / "report.html").exists() and (tmp_path / "junit.xml").exists()
    assert (tmp_path / "local" / "facts.json").exists()
    html = (tmp_path / "report.html").read_text()
    assert 'id="kvmqa-matrix"' in html and "kvmqa host local" in html
    hw = bool(real_cpu_flags() & {"vmx", "svm"})
    assert run.verdict("local", "cpu.hw-virt") == ("pass" if hw else "fail")
    assert run.verdict("local", "cpu.kvm-device") == ("pass" if Path("/dev/kvm").exists() else "fail")
    assert run.verdict("local", "cpu.tun") == ("pass" if Path("/dev/net/tun").exists() else "fail")
    assert run.verdict("local", "cpu.vhost-net") == ("pass" if Path("/dev/vhost-net").exists() else "warn")
    assert run.verdict("local", "packages.qemu") == ("pass" if dpkg_installed("qemu-system-x86") else "fail")
    assert run.verdict("local", "packages.virt-install") == ("pass" if dpkg_installed("virtinst") else "fail")
    assert run.verdict("local", "libvirt.daemon") == "pass"
    assert run.verdict("local", "libvirt.connect") == "pass"
    results = run.results
    failures = [r for r in results["results"] if r["verdict"] in ("fail", "error")]
    assert (run.rc == 0) == (not failures), run.stdout[-2000:]
    for r in results["results"]:
        assert {"host", "stage", "check_id", "level", "verdict", "message", "hint", "duration"} <= set(r)
        if r["verdict"] in ("fail", "warn"):
            assert r["hint"], r["check_id"]
    assert results["hosts"]["local"]["round_trips"] == {"ssh_commands": 1, "libvirt_connections": 1}


def test_ssh_non_root_with_sudo_sees_the_same_host(tmp_path: Path, sshd: Sshd) -> None:
    local = run_suite(tmp_path / "local", paths=BASE_STAGES)
    remote = run_suite(tmp_path / "ssh", *ssh_args(sshd), paths=BASE_STAGES)
    host = f"127.0.0.1:{sshd.port}"
    assert remote.verdict(host, "reach.probe") == "pass"
    assert "via sudo from kvmqa-ci" in remote.findings()[(host, "reach.probe")]["message"]
    for (_, cid), finding in local.findings("local").items():
        if cid.startswith(("cpu.", "packages.")) and cid != "cpu.kvm-device-access":
            assert remote.verdict(host, cid) == finding["verdict"], cid
    assert remote.verdict(host, "libvirt.connect") == "pass"
    assert "qemu+ext" in remote.findings()[(host, "libvirt.connect")]["message"]
    # One probe and one libvirt connection: the whole verify run costs two SSH round trips.
    assert remote.results["hosts"][host]["round_trips"] == {"ssh_commands": 1, "libvirt_connections": 1}


def test_paramiko_backend_with_strict_host_keys(tmp_path: Path, sshd: Sshd) -> None:
    args = [
        "--hosts",
        sshd.url(backend="paramiko"),
        "--sudo",
        "--ssh-identity-file",
        str(sshd.client_key),
        "--known-hosts",
        str(sshd.known_hosts),
    ]
    run = run_suite(tmp_path, *args, paths=BASE_STAGES[:2])
    assert run.verdict(f"127.0.0.1:{sshd.port}", "reach.probe") == "pass", run.stdout[-2000:]
    assert run.verdict(f"127.0.0.1:{sshd.port}", "cpu.kvm-device") == "pass"


def test_a_host_behind_a_bastion_through_the_labs_ssh_config(tmp_path: Path, sshd: Sshd) -> None:
    """--ssh-config: the target is an alias that only the lab's OpenSSH config knows, reached with ProxyJump
    through a second real sshd (the bastion); the probe and the libvirt connection both go through it."""
    bastion = start_sshd(tmp_path / "bastion", sshd.client_key, log_level="VERBOSE")
    try:
        known = tmp_path / "known_hosts"
        known.write_text(sshd.known_hosts.read_text() + bastion.known_hosts.read_text())
        # A direct connection to the same user@127.0.0.1:port first, same known_hosts: its shared master
        # (ControlPersist) must not be reused by the run that has to go through the bastion. Its verdicts are
        # the
        # machine's real state as seen directly: the run through the bastion must see exactly the same.
        direct = run_suite(
            tmp_path / "direct",
            "--hosts",
            sshd.url(),
            "--sudo",
            "--ssh-identity-file",
            str(sshd.client_key),
            "--known-hosts",
            str(known),
            paths=BASE_STAGES,
        )
        assert direct.verdict(f"127.0.0.1:{sshd.port}", "reach.probe") == "pass"
        config = tmp_path / "ssh_config"
        config.write_text(
            f"Host kvmqa-bastion\n  HostName 127.0.0.1\n  Port {bastion.port}\n  User kvmqa-ci\n"
            f"  IdentityFile {sshd.client_key}\n  UserKnownHostsFile {known}\n  BatchMode yes\n"
            f"Host kvmqa-behind-bastion\n  HostName 127.0.0.1\n  Port {sshd.port}\n  User kvmqa-ci\n"
            f"  IdentityFile {sshd.client_key}\n  ProxyJump kvmqa-bastion\n"
        )
        run = run_suite(
            tmp_path / "r",
            "--hosts",
            "ssh://kvmqa-behind-bastion",
            "--sudo",
            "--ssh-config",
            str(config),
            "--known-hosts",
            str(known),
            paths=BASE_STAGES,
        )
        bastion_log = (bastion.workdir / f"sshd_{bastion.port}.log").read_text()
    finally:
        bastion.stop()
    host, seen_directly = "kvmqa-behind-bastion", f"127.0.0.1:{sshd.port}"
    assert run.results["matrix"][host] == direct.results["matrix"][seen_directly], run.stdout[-2000:]
    through_bastion = {cid: f["verdict"] for (_, cid), f in run.findings(host).items()}
    assert through_bastion == {cid: f["verdict"] for (_, cid), f in direct.findings(seen_directly).items()}
    assert through_bastion["reach.probe"] == "pass" and through_bastion["libvirt.connect"] == "pass"
    assert "qemu+ext" in run.findings()[(host, "libvirt.connect")]["message"]
    assert run.results["hosts"][host]["round_trips"] == {"ssh_commands": 1, "libvirt_connections": 1}
    assert "Accepted publickey for kvmqa-ci" in bastion_log  # the jump really went through the bastion


def test_ssh_config_errors_are_named(tmp_path: Path, sshd: Sshd) -> None:
    missing = run_suite(
        tmp_path / "a", "--hosts", sshd.url(), "--ssh-config", str(tmp_path / "nope"), paths=BASE_STAGES[:1]
    )
    assert missing.rc == 4 and f"--ssh-config {tmp_path / 'nope'}: no such file" in missing.stdout
    config = tmp_path / "ssh_config"
    config.write_text("Host *\n  BatchMode yes\n")
    para = run_suite(
        tmp_path / "b",
        "--hosts",
        sshd.url(backend="paramiko"),
        "--ssh-config",
        str(config),
        paths=BASE_STAGES[:1],
    )
    assert para.rc == 4 and "applies to ssh:// targets (OpenSSH), not to paramiko://" in para.stdout


def test_stopping_libvirtd_fails_the_stage_and_skips_dependants_then_recovers(tmp_path: Path) -> None:
    paths = (
        (*BASE_STAGES, "suites/test_60_first_vm.py")
        if Path("suites/test_60_first_vm.py").exists()
        else BASE_STAGES
    )
    try:
        stop_libvirtd()
        down = run_suite(tmp_path / "down", paths=paths)
    finally:
        start_libvirtd()
    assert down.rc != 0
    assert down.verdict("local", "libvirt.daemon") == "fail"
    connect = down.findings()[("local", "libvirt.connect")]
    assert connect["verdict"] == "skip" and "libvirt.daemon" in connect["message"]
    assert down.verdict("local", "libvirt.kvm-guest") == "skip"
    errors = [r for r in down.results["results"] if r["verdict"] == "error"]
    assert not errors, errors  # no cascade of errors
    for r in down.results["results"]:
        if r["stage"] == "first_vm":
            assert r["verdict"] == "skip" and "libvirt" in r["message"], r
    up = run_suite(tmp_path / "up", paths=BASE_STAGES)
    assert up.verdict("local", "libvirt.daemon") == "pass"
    assert up.verdict("local", "libvirt.connect") == "pass"


def test_first_vm_alone_gates_on_libvirt_and_cleanup_removes_leftovers(tmp_path: Path) -> None:
    """Selecting only the first_vm suite still gathers what it depends on; --cleanup removes a crashed run's
    objects."""
    import libvirt

    conn = libvirt.open("qemu:///system")
    leftover = "kvmqa-leftover-e2e"
    conn.defineXML(
        f"<domain type='qemu'><name>{leftover}</name><memory unit='MiB'>64</memory>"
        "<os><type arch='x86_64'>hvm</type></os></domain>"
    )
    try:
        run = run_suite(tmp_path, "--allow-emulation", "--cleanup", paths=("suites/test_60_first_vm.py",))
        emulated = run.findings()[("local", "first_vm.emulated-boot")]
        assert emulated["verdict"] == "pass" and "EMULATED" in emulated["message"], run.stdout[-3000:]
        cleanup = run.findings()[("local", "first_vm.cleanup")]
        assert cleanup["verdict"] == "pass" and f"domain {leftover}" in cleanup["message"]
        assert leftover not in [d.name() for d in conn.listAllDomains()]
    finally:
        try:
            conn.lookupByName(leftover).undefine()
        except libvirt.libvirtError:
            pass
        conn.close()


def test_secret_looking_metadata_is_redacted_from_the_html_environment_table(tmp_path: Path) -> None:
    """pytest-html shows pytest-metadata's environment (CI variables, --metadata): pytest.ini redacts
    secrets."""
    run = run_suite(
        tmp_path,
        "--metadata",
        "CI_DEPLOY_PASSWORD",
        "hunter2-kvmqa",
        "--metadata",
        "VAULT_TOKEN",
        "s.kvmqa-token",
        "--metadata",
        "BUILD_ID",
        "4242",
        paths=("suites/test_00_reach.py",),
    )
    assert run.rc == 0, run.stdout[-2000:]
    written = "".join(p.read_text(errors="replace") for p in tmp_path.rglob("*") if p.is_file())
    assert "hunter2-kvmqa" not in written and "s.kvmqa-token" not in written
    html = (tmp_path / "report.html").read_text()
    assert "CI_DEPLOY_PASSWORD" in html and "4242" in html  # the names stay, and harmless values are shown
