"""One host's unsupported become (Ansible's `su`, a become user other than root) is that host's one ERROR,
never the whole inventory's: a five-host INI inventory read by the real ansible-core, run over the real test
sshd. The su host's become password (plain in the INI, vaulted in host_vars/) is in no report or output."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from kvmqa.config.inventory import load_inventory
from tests.support.sshd import Sshd
from tests.support.suite import run_suite

STAGES = (
    "suites/test_00_reach.py",
    "suites/test_10_cpu.py",
    "suites/test_20_packages.py",
    "suites/test_25_host.py",
    "suites/test_30_libvirt.py",
)
PLAIN_SECRET = "kvmqa-su-plain-Secret-4711"
VAULT_SECRET = "kvmqa-su-vaulted-Secret-0815"
VAULT_PASSWORD = "kvmqa-test-vault"
FIVE = ("as-root", "with-sudo", "with-su", "default-1", "default-2")


def five_host_inventory(root: Path, sshd: Sshd) -> tuple[Path, Path]:
    """A lab's inventory as public repositories have them: one host logs in as root, one becomes root with
    sudo, one with su (its password in the INI's older alias and vaulted in host_vars/), two take defaults."""
    inv = root / "inventory"
    (inv / "host_vars").mkdir(parents=True)
    (inv / "hosts").write_text(
        "[kvm_hosts]\n"
        "as-root ansible_user=root\n"
        "with-sudo ansible_become=yes ansible_become_method=sudo\n"
        f"with-su ansible_become=yes ansible_become_method=su ansible_become_pass={PLAIN_SECRET}\n"
        "default-1\n"
        "default-2\n\n"
        "[kvm_hosts:vars]\n"
        f"ansible_host=127.0.0.1\nansible_port={sshd.port}\nansible_user={sshd.user}\n"
        f"ansible_ssh_private_key_file={sshd.client_key}\n"
        f"ansible_ssh_common_args='-o UserKnownHostsFile={sshd.known_hosts}'\n"
    )
    password = root / "vault-password"
    password.write_text(VAULT_PASSWORD + "\n")
    vault = subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-vault"),
            "encrypt_string",
            "--vault-password-file",
            str(password),
            VAULT_SECRET,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    block = vault.replace("\n", "\n  ")
    (inv / "host_vars" / "with-su.yml").write_text(f"ansible_become_password: {block}\n")
    return inv, password


def test_one_unsupported_become_leaves_the_other_hosts_in_the_inventory(tmp_path: Path, sshd: Sshd) -> None:
    inv, password = five_host_inventory(tmp_path, sshd)
    (inv / "hosts").write_text(
        (inv / "hosts")
        .read_text()
        .replace("default-2\n", "default-2\nas-postgres ansible_become=yes ansible_become_user=postgres\n", 1)
    )
    targets, _ = load_inventory(inv, vault_password_file=password)
    by_name = {t.name: t for t in targets}
    assert sorted(by_name) == sorted([*FIVE, "as-postgres"])
    assert "ansible_become_method 'su' is not supported" in by_name["with-su"].unusable
    assert "ansible_become_user 'postgres' is not supported" in by_name["as-postgres"].unusable
    assert by_name["with-sudo"].sudo and not by_name["with-sudo"].unusable
    assert by_name["as-root"].user == "root"
    assert not any(by_name[n].unusable for n in ("as-root", "default-1", "default-2"))
    for t in targets:
        assert PLAIN_SECRET not in repr(t) and VAULT_SECRET not in repr(t)


def test_the_su_host_gets_one_error_and_the_others_are_checked_in_full(tmp_path: Path, sshd: Sshd) -> None:
    inv, password = five_host_inventory(tmp_path, sshd)
    reports = tmp_path / "r"
    run = run_suite(reports, "--inventory", str(inv), "--vault-password-file", str(password), paths=STAGES)
    assert run.rc == 1, run.stdout[-3000:]  # something failed: the su host's error
    assert "Traceback" not in run.stdout and "INTERNALERROR" not in run.stdout, run.stdout[-3000:]
    assert run.results["errors"] == []  # no usage error: the inventory was read
    assert sorted(run.results["hosts"]) == sorted(FIVE)
    su = run.findings("with-su")
    probe = su[("with-su", "reach.probe")]
    assert probe["verdict"] == "error", probe
    assert "host with-su: ansible_become_method 'su' is not supported" in probe["message"]
    assert "ansible_become_method=sudo and a NOPASSWD sudo rule" in probe["message"]
    assert "\n" not in probe["message"] and probe["hint"].startswith("Change this host's inventory entry")
    assert len(su) > 10
    for (_, cid), f in su.items():
        if cid != "reach.probe":
            assert f["verdict"] == "skip" and f["details"].get("blocked_by") == "reach.probe", (cid, f)
            assert f["message"].startswith("skipped: host with-su not checked: "), (cid, f)
    for host in ("as-root", "with-sudo", "default-1", "default-2"):
        found = run.findings(host)
        assert found[(host, "reach.probe")]["verdict"] == "pass", found[(host, "reach.probe")]
        assert len(found) == len(su), host  # every check has its own finding
        assert all(f["details"].get("blocked_by") != "reach.probe" for f in found.values()), host
    assert "as root" in run.findings("as-root")[("as-root", "reach.probe")]["message"]
    assert f"via sudo from {sshd.user}" in run.findings("with-sudo")[("with-sudo", "reach.probe")]["message"]
    assert f"as {sshd.user} (" in run.findings("default-1")[("default-1", "reach.probe")]["message"]
    written = [p for p in reports.rglob("*") if p.is_file()]
    names = {p.name for p in written}
    assert {"results.json", "junit.xml", "report.html", "facts.json", "probe.txt"} <= names, names
    for path in written:
        text = path.read_text(errors="replace")
        assert PLAIN_SECRET not in text and VAULT_SECRET not in text, path
    assert PLAIN_SECRET not in run.stdout and VAULT_SECRET not in run.stdout
