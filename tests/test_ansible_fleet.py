"""End to end through real ansible-core: one INI inventory of loopback sshd targets (one direct, one behind a
bastion through ansible_ssh_common_args' ProxyCommand, one unreachable port on 127.0.0.1), run twice:
`pytest suites --inventory` (kvmqa's own ssh transport) and the shipped playbook ansible/kvmqa.yml (Ansible's
transport, kvmqa's checks, `python -m kvmqa merge`). Both reports give the same host x stage matrix and the
same
verdict for every check."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.sshd import Sshd, free_port, start_sshd
from tests.support.suite import ROOT, run_suite

STAGES = (
    "suites/test_00_reach.py",
    "suites/test_10_cpu.py",
    "suites/test_20_packages.py",
    "suites/test_30_libvirt.py",
)
STAGE_NAMES = "reach,cpu,packages,libvirt"


def write_fleet_inventory(
    path: Path, direct: Sshd, behind: Sshd, bastion: Sshd, closed_port: int, known: Path
) -> Path:
    key = direct.client_key
    proxy = (
        f"ssh -i {key} -o UserKnownHostsFile={known} -o StrictHostKeyChecking=yes -o BatchMode=yes "
        f"-p {bastion.port} -W %h:%p kvmqa-ci@127.0.0.1"
    )
    path.write_text(
        "[kvm_hosts]\n"
        f"direct ansible_host=127.0.0.1 ansible_port={direct.port}\n"
        f"behind ansible_host=127.0.0.1 ansible_port={behind.port} "
        f"ansible_ssh_common_args='-o UserKnownHostsFile={known} -o ProxyCommand=\"{proxy}\"'\n"
        f"unreachable ansible_host=127.0.0.1 ansible_port={closed_port}\n"
        "[kvm_hosts:vars]\nansible_user=kvmqa-ci\nansible_become=true\n"
        f"ansible_ssh_private_key_file={key}\nansible_ssh_common_args='-o UserKnownHostsFile={known}'\n"
    )
    return path


def run_playbook(inventory: Path, reports: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "ANSIBLE_NOCOLOR": "1",
        # the test sshd has no sftp subsystem: Ansible's piped transfer (real labs: the default works)
        "ANSIBLE_SSH_TRANSFER_METHOD": "piped",
    }
    return subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-playbook"),
            "-i",
            str(inventory),
            str(ROOT / "ansible" / "kvmqa.yml"),
            "-e",
            f"kvmqa_reports_dir={reports}",
            "-e",
            f"kvmqa_stages={STAGE_NAMES}",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=ROOT,
    )


def accepted(bastion: Sshd) -> int:
    return (bastion.workdir / f"sshd_{bastion.port}.log").read_text().count("Accepted publickey for kvmqa-ci")


@pytest.mark.usefixtures("libvirtd")
def test_suite_and_playbook_give_the_same_matrix(tmp_path: Path, sshd: Sshd) -> None:
    behind = start_sshd(tmp_path / "behind", sshd.client_key)
    bastion = start_sshd(tmp_path / "bastion", sshd.client_key, log_level="VERBOSE")
    try:
        known = tmp_path / "known_hosts"
        known.write_text(
            sshd.known_hosts.read_text() + behind.known_hosts.read_text() + bastion.known_hosts.read_text()
        )
        inventory = write_fleet_inventory(tmp_path / "hosts", sshd, behind, bastion, free_port(), known)
        suite = run_suite(
            tmp_path / "suite", "--inventory", str(inventory), "--connect-timeout", "5", paths=STAGES
        )
        via_bastion_suite = accepted(bastion)
        play = run_playbook(inventory, tmp_path / "playbook")
        via_bastion_playbook = accepted(bastion) - via_bastion_suite
    finally:
        behind.stop()
        bastion.stop()
    assert suite.rc == 1, suite.stdout[-3000:]  # checks fail on this machine (no usable KVM): a result
    assert play.returncode == 0, (play.stdout + play.stderr)[-4000:]
    merged = json.loads((tmp_path / "playbook" / "results.json").read_text())
    ours, theirs = suite.results["matrix"], merged["matrix"]
    print("--inventory:", json.dumps(ours, indent=1), "\nplaybook:", json.dumps(theirs, indent=1))
    assert sorted(ours) == sorted(theirs) == ["behind", "direct", "unreachable"]
    assert ours == theirs
    assert ours["direct"]["reach"] == ours["behind"]["reach"] == "pass"
    assert ours["unreachable"] == {"reach": "fail", "cpu": "skip", "packages": "skip", "libvirt": "skip"}
    verdicts = {(r["host"], r["check_id"]): r["verdict"] for r in suite.results["results"]}
    assert verdicts == {(r["host"], r["check_id"]): r["verdict"] for r in merged["results"]}
    assert len(verdicts) > 100
    # both transports really went through the bastion (a ProxyCommand in ansible_ssh_common_args)
    assert via_bastion_suite >= 1 and via_bastion_playbook >= 1, (via_bastion_suite, via_bastion_playbook)
    assert "connect to host 127.0.0.1 port" in next(
        r["message"]
        for r in merged["results"]
        if r["host"] == "unreachable" and r["check_id"] == "reach.probe"
    )
    assert (tmp_path / "playbook" / "report.html").exists()
    assert merged["hosts"]["direct"]["round_trips"] == {"ansible_scripts": 1}
    assert suite.results["hosts"]["direct"]["round_trips"] == {"ssh_commands": 1, "libvirt_connections": 1}


def test_evaluate_a_saved_probe_output_gives_the_runs_verdicts(tmp_path: Path, sshd: Sshd) -> None:
    """`python -m kvmqa evaluate reports/HOST/probe.txt --host HOST` re-decides the probe's stages offline."""
    run = run_suite(
        tmp_path / "r",
        "--hosts",
        sshd.url(),
        "--sudo",
        "--ssh-identity-file",
        str(sshd.client_key),
        "--known-hosts",
        str(sshd.known_hosts),
        paths=STAGES[:3],
    )
    host = f"127.0.0.1:{sshd.port}"
    probe = next((tmp_path / "r").glob("*/probe.txt"))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "kvmqa",
            "evaluate",
            str(probe),
            "--host",
            host,
            "--out",
            str(tmp_path / "e"),
            "--stages",
            "reach,cpu,packages",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    evaluated = json.loads((tmp_path / "e" / "results.json").read_text())
    assert evaluated["matrix"] == run.results["matrix"]
    assert {r["check_id"]: r["verdict"] for r in evaluated["results"]} == {
        r["check_id"]: r["verdict"] for r in run.results["results"]
    }


def test_a_probe_that_did_not_run_is_a_reach_failure(tmp_path: Path) -> None:
    """The playbook's path for a probe that timed out or failed under Ansible: one reach.probe FAIL with
    Ansible's
    message, every other check skipped naming it."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "kvmqa",
            "evaluate",
            "-",
            "--host",
            "hv9",
            "--groups",
            "ovirt_hosts",
            "--rc",
            "-1",
            "--error",
            "Task failed: Timed out after 180 second(s).",
            "--out",
            str(tmp_path),
        ],
        input="",
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    results = json.loads((tmp_path / "results.json").read_text())
    findings = {r["check_id"]: r for r in results["results"]}
    reach = findings.pop("reach.probe")
    assert (
        reach["verdict"] == "fail"
        and "Ansible: Task failed: Timed out after 180 second(s)." in reach["message"]
    )
    assert findings and all(
        f["verdict"] == "skip" and f["details"].get("blocked_by") == "reach.probe" for f in findings.values()
    )
    assert {f["stage"] for f in findings.values()} == {
        "cpu",
        "packages",
        "host",
        "libvirt",
        "vdsm",
    }  # ovirt_hosts: vdsm too
    assert results["hosts"]["hv9"]["roles"] == ["ovirt-host"]


def test_site_checks_travel_with_the_playbook_and_match_a_suite_run(tmp_path: Path, sshd: Sshd) -> None:
    """kvmqa_site_checks: the site stages' probe snippets go into the one script Ansible runs, and their
    checks are
    evaluated on the controller: the same verdicts as `pytest suites --site-checks` over kvmqa's own ssh
    transport."""
    site = ROOT / "docs" / "examples" / "site-checks"
    inventory = tmp_path / "hosts"
    inventory.write_text(
        "[kvm_hosts]\n"
        f"direct ansible_host=127.0.0.1 ansible_port={sshd.port} ansible_user=kvmqa-ci ansible_become=true "
        f"ansible_ssh_private_key_file={sshd.client_key} "
        f"ansible_ssh_common_args='-o UserKnownHostsFile={sshd.known_hosts}'\n"
    )
    suite = run_suite(
        tmp_path / "suite",
        "--inventory",
        str(inventory),
        "--site-checks",
        str(site),
        paths=("suites/test_00_reach.py", "suites/test_10_cpu.py", "suites/test_70_site.py"),
    )
    play = run_playbook(
        inventory, tmp_path / "playbook", "-e", "kvmqa_stages=", "-e", f"kvmqa_site_checks={site}"
    )
    assert play.returncode == 0, (play.stdout + play.stderr)[-4000:]
    merged = json.loads((tmp_path / "playbook" / "results.json").read_text())
    acme = {r["check_id"]: r["verdict"] for r in merged["results"] if r["stage"] == "acme"}
    assert sorted(acme) == ["acme.hugepages-1g", "acme.kvm-device-mode", "acme.ntp-servers"]
    assert acme == {r["check_id"]: r["verdict"] for r in suite.results["results"] if r["stage"] == "acme"}
    assert merged["matrix"]["direct"]["acme"] == suite.results["matrix"]["direct"]["acme"]
    # the default stage list: every stage a probe output decides, the site stage last
    assert list(merged["matrix"]["direct"]) == ["reach", "cpu", "packages", "host", "libvirt", "vdsm", "acme"]
    facts = json.loads(next((tmp_path / "playbook" / "hosts" / "direct").glob("*/facts.json")).read_text())
    assert facts["acme"]["ntp"]["rc"] == 0  # the snippet's own section came back through Ansible


def test_evaluate_names_a_bad_site_checks_folder_in_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "kvmqa",
            "evaluate",
            "-",
            "--host",
            "hv1",
            "--out",
            str(tmp_path),
            "--site-checks",
            str(tmp_path / "nope"),
        ],
        input="",
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert (
        done.returncode == 2
        and done.stderr.strip() == f"kvmqa: site checks {tmp_path / 'nope'}: no such folder"
    )
