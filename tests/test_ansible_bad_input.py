"""Bad Ansible inventories: one usage error naming the file and Ansible's reason, exit status 4, results.json
with the error, never a traceback. Each through a real `pytest suites` run and the real ansible-inventory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.suite import run_suite

REACH = ("suites/test_00_reach.py",)
VAULT_PASSWORD = "kvmqa-test-vault"


def _vault(tmp_path: Path, plain: Path) -> Path:
    password = tmp_path / "vault-password"
    password.write_text(VAULT_PASSWORD + "\n")
    subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-vault"),
            "encrypt",
            "--vault-password-file",
            str(password),
            str(plain),
        ],
        check=True,
        capture_output=True,
    )
    return password


def _bad_inventory(tmp_path: Path, kind: str) -> tuple[Path, list[str]]:
    src = tmp_path / "inventory"
    extra: list[str] = []
    if kind == "range-ansible-rejects":
        src.write_text("[kvm_hosts]\nhv[01:xx].lab\n")
    elif kind == "vaulted-file-without-password":
        src.write_text("[kvm_hosts]\nhv1 ansible_user=qa\n")
        _vault(tmp_path, src)
    elif kind == "vaulted-value-without-password":
        plain = tmp_path / "value"
        plain.write_text("qa")
        _vault(tmp_path, plain)
        block = plain.read_text().replace("\n", "\n        ")
        src = tmp_path / "hosts.yml"
        src.write_text(f"kvm_hosts:\n  hosts:\n    hv1:\n      ansible_user: !vault |\n        {block}\n")
    elif kind == "wrong-vault-password":
        src.write_text("[kvm_hosts]\nhv1 ansible_user=qa\n")
        _vault(tmp_path, src)
        wrong = tmp_path / "wrong"
        wrong.write_text("not-the-password\n")
        extra = ["--vault-password-file", str(wrong)]
    elif kind == "dynamic-script-exits-non-zero":
        src.write_text("#!/bin/sh\necho 'cloud API: 503 Service Unavailable' >&2\nexit 3\n")
        src.chmod(0o755)
    elif kind == "no-hosts":
        src.write_text("[kvm_hosts]\n[kvm_hosts:vars]\nansible_user=qa\n")
    elif kind == "limit-matches-nothing":
        src.write_text("[kvm_hosts]\nhv1\n")
        extra = ["--limit", "nonesuch*"]
    elif kind == "connection-docker":
        src.write_text("[kvm_hosts]\nhv1 ansible_connection=docker\n")
    elif kind == "bad-port":
        src.write_text("[kvm_hosts]\nhv1 ansible_port=ssh\n")
    elif kind == "undefined-template":
        src = tmp_path / "hosts.yml"
        src.write_text("kvm_hosts:\n  hosts:\n    hv1:\n      ansible_user: '{{ lab_user }}'\n")
    elif kind == "broken-group_vars-file":
        src = tmp_path / "lab"
        (src / "group_vars").mkdir(parents=True)
        (src / "hosts").write_text("[kvm_hosts]\nhv1\n")
        (src / "group_vars" / "kvm_hosts.yml").write_text("ansible_user: qa\nansible_port: [2222\n")
    elif kind == "broken-file-in-a-directory":
        src = tmp_path / "lab"
        src.mkdir()
        (src / "hosts").write_text("[kvm_hosts]\nhv1\n")
        (src / "more").write_text("[kvm_hosts]\nhv[1:x]\n")
    elif kind == "yaml-syntax-error":
        src = tmp_path / "hosts.yml"
        src.write_text("all:\n  hosts:\n    a: {x: [}\n")
    return src, extra


# kind -> what the one error line must say (besides the file's name)
BAD = {
    "range-ansible-rejects": "Ansible cannot read this inventory: ini plugin: invalid literal for int() with "
    "base 10: 'xx'",
    "vaulted-file-without-password": "it is vaulted and no vault password was given: pass "
    "--vault-password-file",
    "vaulted-value-without-password": "host hv1: ansible_user is vaulted (or uses a vaulted variable); give "
    "--vault-password-file",
    "wrong-vault-password": "Decryption failed",
    "dynamic-script-exits-non-zero": "script plugin: Inventory script returned non-zero exit code 3. "
    "(stderr: cloud API: 503",
    "no-hosts": "no hosts (ansible-inventory --list found none)",
    "limit-matches-nothing": "no hosts match --limit 'nonesuch*'",
    "connection-docker": "host hv1: ansible_connection 'docker' is not supported by kvmqa (use one of ssh, "
    "smart, paramiko",
    "bad-port": "host hv1: ansible_port must be a port number 1-65535, got 'ssh'",
    "undefined-template": "host hv1: ansible_user: template '{{ lab_user }}' cannot be rendered:",
    # Ansible names no file here: kvmqa finds the broken vars file and its line
    "broken-group_vars-file": "Ansible cannot read this inventory: @/lab/group_vars/kvm_hosts.yml:2: "
    "malformed YAML:",
    "broken-file-in-a-directory": "ini plugin: invalid literal for int() with base 10: 'x' (at @/lab/more)",
    "yaml-syntax-error": "auto and yaml plugins: YAML parsing failed: Colons in unquoted values must be "
    "followed by a "
    "non-space character. (at @/hosts.yml:3:10)",
}


@pytest.mark.parametrize("kind", list(BAD))
def test_a_bad_ansible_inventory_is_one_usage_error(kind: str, tmp_path: Path) -> None:
    src, extra = _bad_inventory(tmp_path, kind)
    run = run_suite(tmp_path / "r", "--inventory", str(src), *extra, paths=REACH)
    assert run.rc == 4, run.stdout[-2000:]
    assert "Traceback" not in run.stdout and "INTERNALERROR" not in run.stdout, run.stdout[-3000:]
    errors = [line for line in run.stdout.splitlines() if line.startswith("ERROR: ")]
    expected = BAD[kind].replace("@", str(tmp_path))
    assert len(errors) == 1 and str(src) in errors[0] and expected in errors[0], run.stdout[-2000:]
    assert run.results["errors"] == [errors[0][len("ERROR: ") :]]
    print(errors[0])  # the message as a user reads it (pytest -s shows the table)


def test_a_host_range_that_used_to_crash_now_expands(tmp_path: Path) -> None:
    """`compute[01:03].domain.tld` reached urlsplit literally and ended in an INTERNALERROR; now Ansible
    expands it.
    (--collect-only: the names must not be looked up in DNS here.)"""
    src = tmp_path / "hosts"
    src.write_text("[kvm_hosts]\ncompute[01:03].domain.tld ansible_user=qa\n")
    run = run_suite(tmp_path / "r", "--inventory", str(src), "--collect-only", paths=REACH)
    assert run.rc == 0, run.stdout[-2000:]
    for n in ("01", "02", "03"):
        assert f"test_reach[compute{n}.domain.tld-reach.probe]" in run.stdout


def test_without_ansible_core_the_error_names_the_extra(tmp_path: Path) -> None:
    """A stand-in for a machine without the extra: a sitecustomize that makes `import ansible` fail, and a
    PATH
    without ansible-inventory (the real package stays installed for the other tests)."""
    blocker = tmp_path / "site"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(
        "import sys\nclass _NoAnsible:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'ansible' or name.startswith('ansible.'):\n"
        "            raise ModuleNotFoundError(\"No module named 'ansible'\")\n"
        "        return None\n"
        "sys.meta_path.insert(0, _NoAnsible())\n"
    )
    src = tmp_path / "hosts"
    src.write_text("[kvm_hosts]\nhv1\n")
    run = run_suite(
        tmp_path / "r",
        "--inventory",
        str(src),
        paths=REACH,
        env={"PYTHONPATH": str(blocker), "PATH": "/usr/bin:/bin"},
    )
    assert run.rc == 4, run.stdout[-2000:]
    assert (
        f"ERROR: {src}: reading an Ansible inventory needs ansible-core, which is not installed: "
        "pip install 'kvmqa[ansible]'"
    ) in run.stdout, run.stdout[-2000:]
    assert "kvmqa[ansible]" in run.results["errors"][0]
