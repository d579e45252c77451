"""Ansible inventories through ansible-core: kvmqa's targets compared, host by host, with what the real
ansible-inventory (and, for templates, a real `ansible -m debug`) says about the same inventory in the same
test.

The expectation side reads only Ansible's own output and applies Ansible's documented connection-variable
rules
(aliases, `ansible_become`); it never types a host's expected address, user or port.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from kvmqa.config.inventory import load_inventory, targets_from_hosts

BIN = Path(sys.executable).parent
ROLE_GROUPS = {"kvm_hosts": "kvm-host", "ovirt_hosts": "ovirt-host", "ovirt_engine": "ovirt-engine"}
VAULT_PASSWORD = "kvmqa-test-vault"


def ansible(tool: str, *args: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        [str(BIN / tool), *args],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=120,
        env={**os.environ, "ANSIBLE_NOCOLOR": "1"},
    )
    assert done.returncode == 0, f"{tool} {args}: {done.stderr[-2000:]}"
    return done.stdout


def encrypt(value: str, password_file: Path) -> str:
    """An `!vault |` block made by the real ansible-vault, indented for a YAML mapping value."""
    out = ansible("ansible-vault", "encrypt_string", "--vault-password-file", str(password_file), value)
    return out.strip()


@dataclass
class Case:
    id: str
    files: dict[str, str]
    source: str
    limit: str | None = None
    vault: bool = False
    executable: tuple[str, ...] = ()
    templated: bool = False  # some connection variables are Jinja2: ask `ansible -m debug` for their values
    covers: Any = None  # a predicate on Ansible's own view: the case really exercises its rule
    extra: dict[str, Any] = field(default_factory=dict)


VAULTED = "@@VAULT:"  # placeholder in a case's text, replaced by a real vault block at setup

CASES = [
    Case(
        "ini-ranges-children-groupvars",
        {
            "hosts": (
                "[kvm_hosts]\ncompute[01:03].domain.tld\ndb-[a:c].lab ansible_port=2201\nnode[0:6:2] "
                "ansible_ssh_host=10.9.0.1\n\n"
                "[kvm_hosts:vars]\nansible_user=root\nansible_become=yes\n\n"
                "[ovirt_hosts:children]\nkvm_hosts\n\n"
                "[ovirt_engine]\nengine.lab ansible_ssh_user=admin ansible_ssh_port=2022\n"
            )
        },
        "hosts",
        covers=lambda v: (
            len(v) == 11
            and v["compute02.domain.tld"]["user"] == "root"
            and v["node4"]["address"] == "10.9.0.1"
        ),
    ),
    Case(
        "ini-named-vms.local-connection-local",
        {
            "vms.local": (
                "hv1\n[kvm_hosts]\nhv2 "
                "ansible_host=192.0.2.2\nhv3\n[kvm_hosts:vars]\nansible_connection=local\n"
                "[remote]\nr1 ansible_connection=ssh ansible_private_key_file=~/.ssh/lab_key "
                "ansible_port=22\n"
            )
        },
        "vms.local",
        covers=lambda v: v["hv3"]["backend"] == "local" and v["r1"]["identity_file"],
    ),
    Case(
        "yaml-all-children",
        {
            "hosts.yml": (
                "all:\n  vars: {ansible_user: ops, ansible_become: true}\n  children:\n"
                "    ovirt_hosts:\n      hosts:\n        hv1: {ansible_host: 10.0.0.5, ansible_port: 2201}\n"
                "      vars: {ansible_user: vdsm-admin}\n"
                "    ovirt_engine:\n      hosts:\n        engine1: {ansible_host: 10.0.0.9, ansible_become: "
                "false}\n"
            )
        },
        "hosts.yml",
        covers=lambda v: v["hv1"]["user"] == "vdsm-admin" and not v["engine1"]["sudo"],
    ),
    Case(
        "yaml-top-level-groups-no-all",
        {
            "inventory.yml": (
                "kvm_hosts:\n  hosts:\n    hv[1:3].lab:\n  vars:\n    ansible_user: qa\n"
                "ovirt_engine:\n  hosts:\n    engine.lab:\n      ansible_user: root\n"
            )
        },
        "inventory.yml",
        covers=lambda v: len(v) == 4 and v["hv2.lab"]["user"] == "qa",
    ),
    Case(
        "directory-group_vars-host_vars",
        {
            "inv/crio.inventory": "[kvm_hosts]\nhv1\nhv2\n[ovirt_engine]\nengine\n",
            "inv/group_vars/all/connection.yml": "ansible_user: lab\nansible_ssh_private_key_file: "
            "/etc/kvmqa/lab_key\n",
            "inv/group_vars/kvm_hosts.yml": "ansible_user: hvadmin\nansible_become: true\n",
            "inv/host_vars/hv1.yml": "ansible_host: 198.51.100.1\nansible_port: 2222\n",
            "inv/host_vars/engine/main.yml": "ansible_user: root\n",
        },
        "inv",
        covers=lambda v: (
            v["hv1"]["port"] == 2222 and v["hv2"]["user"] == "hvadmin" and v["engine"]["user"] == "root"
        ),
    ),
    Case(
        "aliases-old-names",
        {
            "aliases": (
                "[kvm_hosts]\nweb ansible_host=203.0.113.7\nold ansible_ssh_host=203.0.113.8 "
                "ansible_ssh_user=legacy ansible_ssh_port=2200 "
                "ansible_private_key_file=/keys/old\nboth ansible_host=203.0.113.9 "
                "ansible_ssh_host=203.0.113.99 "
                "ansible_ssh_private_key_file=/keys/new ansible_private_key_file=/keys/old\n"
            )
        },
        "aliases",
        covers=lambda v: v["old"]["user"] == "legacy" and v["both"]["address"] == "203.0.113.9",
    ),
    Case(
        "become-methods-sudo",
        {
            "become.yml": (
                "all:\n  hosts:\n    a: {ansible_become: 'yes', ansible_become_method: sudo, "
                "ansible_become_user: root}\n"
                "    b: {ansible_become: 'no', ansible_become_method: su}\n    c: {ansible_become: True}\n "
                "   "
                "d: {}\n"
            )
        },
        "become.yml",
        covers=lambda v: v["a"]["sudo"] and not v["b"]["sudo"],
    ),
    Case(
        "proxyjump-in-ssh-common-args",
        {
            "bastion": (
                "[kvm_hosts]\nhv1 ansible_host=10.1.0.1\nhv2 ansible_host=10.1.0.2 "
                "ansible_ssh_common_args='-o ProxyCommand=\"ssh -W %h:%p -q jump@bastion.lab\"'\n"
                "[kvm_hosts:vars]\nansible_ssh_common_args='-o ProxyJump=jump@bastion.lab:2222'\n"
                "ansible_ssh_extra_args='-o ServerAliveInterval=7'\n"
            )
        },
        "bastion",
        covers=lambda v: "ProxyJump=jump@bastion.lab:2222" in v["hv1"]["ssh_args"],
    ),
    Case(
        "vaulted-values",
        {
            "vaulted/hosts.yml": (
                "kvm_hosts:\n  hosts:\n    hv1:\n      ansible_user: @@VAULT:secret-user\n    hv2:\n"
            ),
            "vaulted/group_vars/kvm_hosts.yml": "ansible_port: @@VAULT:2345\n",
        },
        "vaulted/hosts.yml",
        vault=True,
        covers=lambda v: v["hv2"]["port"] == 2345,
    ),
    Case(
        "templates",
        {
            "templated.yml": (
                'all:\n  vars:\n    site: lab1\n    lab_user: "{{ site }}-qa"\n  children:\n    '
                "kvm_hosts:\n  "
                "    hosts:\n"
                '        hv1:\n          ansible_host: "{{ inventory_hostname }}.{{ site }}.example"\n'
                '          ansible_user: "{{ lab_user }}"\n        hv2:\n          ansible_port: "{{ 2200 + '
                '22 }}"\n'
            )
        },
        "templated.yml",
        templated=True,
        covers=lambda v: v["hv1"]["user"] == "lab1-qa",
    ),
    Case(
        "limit-pattern",
        {"hosts": "[kvm_hosts]\nhv[1:5]\n[ovirt_engine]\nengine\n"},
        "hosts",
        limit="kvm_hosts:!hv2:!hv3:engine",
        covers=lambda v: "hv2" not in v and "engine" in v,
    ),
    Case(
        "dynamic-script",
        {
            "dyn.py": (
                "#!/usr/bin/env python3\nimport json, sys\n"
                "print(json.dumps({'kvm_hosts': {'hosts': ['hv1', 'hv2'], 'vars': {'ansible_user': 'dyn'}},"
                " '_meta': {'hostvars': {'hv1': {'ansible_host': '192.0.2.11'}}}}))\n"
            )
        },
        "dyn.py",
        executable=("dyn.py",),
        covers=lambda v: v["hv2"]["user"] == "dyn",
    ),
    Case(
        "inventory-plugin-yaml",
        {
            "generator.yml": (
                'plugin: ansible.builtin.generator\nhosts:\n  name: "{{ role }}-{{ site }}"\n  parents:\n'
                '    - name: "{{ role }}_hosts"\nlayers:\n  role: [kvm, ovirt]\n  site: [a, b]\n'
            )
        },
        "generator.yml",
        covers=lambda v: set(v) == {"kvm-a", "kvm-b", "ovirt-a", "ovirt-b"},
    ),
]


def write_case(case: Case, root: Path) -> tuple[Path, Path | None]:
    password = root / "vault-password"
    password.write_text(VAULT_PASSWORD + "\n")
    for rel, text in case.files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        while VAULTED in text:
            at = text.index(VAULTED)
            end = text.index("\n", at)
            value = text[at + len(VAULTED) : end]
            block = encrypt(value, password).replace("\n", "\n" + " " * 8)
            text = text[:at] + block + text[end:]
        path.write_text(text)
        if rel in case.executable:
            path.chmod(0o755)
    return root / case.source, (password if case.vault else None)


def _truthy(value: Any) -> bool:
    return value if isinstance(value, bool) else str(value).lower() in ("yes", "true", "on", "1", "y", "t")


def ansible_view(
    src: Path, limit: str | None, vault: Path | None, templated: bool
) -> dict[str, dict[str, Any]]:
    """What Ansible itself says, per host, about the connection kvmqa must make."""
    args = (
        ["-i", str(src), "--list"]
        + (["--limit", limit] if limit else [])
        + (["--vault-password-file", str(vault)] if vault else [])
    )
    data = json.loads(ansible("ansible-inventory", *args))
    hostvars: dict[str, dict[str, Any]] = data["_meta"]["hostvars"]
    members: dict[str, set[str]] = {}
    parents: dict[str, set[str]] = {}
    for group, body in data.items():
        if group == "_meta":
            continue
        for h in body.get("hosts", []):
            members.setdefault(h, set()).add(group)
        for c in body.get("children", []):
            parents.setdefault(c, set()).add(group)
    for h in hostvars:
        members.setdefault(h, set())

    def ancestors(groups: set[str]) -> set[str]:
        out, todo = set(), list(groups)
        while todo:
            g = todo.pop()
            if g not in out:
                out.add(g)
                todo += parents.get(g, ())
        return out

    view = {}
    for host in members:
        hv = dict(hostvars.get(host, {}))
        for k, v in list(hv.items()):
            if isinstance(v, dict) and "__ansible_vault" in v:  # decrypted by the real ansible-vault
                hv[k] = ansible(
                    "ansible-vault",
                    "decrypt",
                    "--vault-password-file",
                    str(vault),
                    "--output",
                    "-",
                    "-",
                    stdin=v["__ansible_vault"],
                )
            if templated and isinstance(hv[k], str) and "{{" in hv[k]:
                hv[k] = ansible_debug(src, host, k)

        def first(*names: str, default: Any = None, _hv: dict[str, Any] = hv) -> Any:
            return next((_hv[n] for n in names if n in _hv), default)

        connection = first("ansible_connection", default="ssh")
        args = [
            a
            for n in ("ansible_ssh_common_args", "ansible_ssh_extra_args")
            if first(n)
            for a in shlex.split(first(n))
        ]
        port = first("ansible_port", "ansible_ssh_port")
        key = first("ansible_ssh_private_key_file", "ansible_private_key_file")
        roles = tuple(sorted({ROLE_GROUPS[g] for g in ancestors(members[host]) if g in ROLE_GROUPS})) or (
            "kvm-host",
        )
        view[host] = {
            "backend": {"smart": "ssh", "paramiko_ssh": "paramiko"}.get(connection, connection),
            "address": None
            if connection == "local"
            else str(first("ansible_host", "ansible_ssh_host", default=host)),
            "port": None if connection == "local" or port is None else int(port),
            "user": None if connection == "local" else first("ansible_user", "ansible_ssh_user"),
            "identity_file": None if connection == "local" or not key else str(Path(key).expanduser()),
            "ssh_args": () if connection == "local" else tuple(args),
            "sudo": _truthy(first("ansible_become", default=False)),
            "roles": roles,
        }
    return view


def ansible_debug(src: Path, host: str, var: str) -> Any:
    """A templated variable's value as a play sees it (`ansible HOST -m debug -a var=VAR`)."""
    out = ansible("ansible", host, "-i", str(src), "-m", "ansible.builtin.debug", "-a", f"var={var}")
    value = json.loads(out[out.index("=>") + 2 :])[var]
    return value


def kvmqa_view(targets: list[Any]) -> dict[str, dict[str, Any]]:
    return {
        t.name: {
            "backend": t.backend,
            "address": t.host,
            "port": t.port,
            "user": t.user,
            "identity_file": str(t.identity_file) if t.identity_file else None,
            "ssh_args": t.ssh_args,
            "sudo": t.sudo,
            "roles": t.roles,
        }
        for t in targets
    }


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_kvmqa_reads_an_inventory_as_ansible_does(case: Case, tmp_path: Path) -> None:
    src, vault = write_case(case, tmp_path)
    targets, engine = load_inventory(src, limit=case.limit, vault_password_file=vault)
    assert engine == {}
    theirs = ansible_view(src, case.limit, vault, case.templated)
    ours = kvmqa_view(targets)
    assert case.covers(theirs), theirs  # the case exercises its rule (a statement about Ansible, not kvmqa)
    assert sorted(ours) == sorted(theirs)
    for host in theirs:
        assert ours[host] == theirs[host], host


def test_testinfra_ansible_urls(tmp_path: Path) -> None:
    """`--hosts 'ansible://GROUP?ansible_inventory=FILE'` (pytest-testinfra's convention) is the group's
    hosts."""
    case = CASES[0]
    src, _ = write_case(case, tmp_path)
    targets = targets_from_hosts(f"ansible://kvm_hosts?ansible_inventory={src}")
    theirs = ansible_view(src, "kvm_hosts", None, False)
    assert kvmqa_view(targets) == theirs and len(theirs) == 10
    one = targets_from_hosts(f"ansible://engine.lab?ansible_inventory={src},local://")
    assert [t.name for t in one] == ["engine.lab", "local"]


def test_kvmqa_and_ansible_formats_are_told_apart_by_content(tmp_path: Path) -> None:
    """kvmqa's format is a YAML file with a top-level `hosts:` list, whatever the name; INI named .yaml is
    Ansible's."""
    ini_named_yaml = tmp_path / "lab.yaml"
    ini_named_yaml.write_text("[kvm_hosts]\nhv1 ansible_user=qa\n")
    kvmqa_named_ini = tmp_path / "lab.ini"
    kvmqa_named_ini.write_text("hosts:\n  - {name: hv1, address: 10.0.0.1, user: qa}\n")
    (a,), _ = load_inventory(ini_named_yaml)
    (b,), _ = load_inventory(kvmqa_named_ini)
    assert (a.name, a.user, a.host) == (b.name, b.user, "hv1") and b.host == "10.0.0.1"
    assert kvmqa_view([a]) == ansible_view(ini_named_yaml, None, None, False)


def test_ssh_args_reach_every_ssh_command(tmp_path: Path) -> None:
    """ansible_ssh_common_args go to the probe (testinfra), uploads and the libvirt connection (one ssh
    argv)."""
    inv = tmp_path / "hosts"
    inv.write_text(
        "[kvm_hosts]\nhv1 ansible_host=10.1.0.1 ansible_user=qa "
        "ansible_ssh_common_args='-o ProxyJump=jump@bastion.lab:2222'\n"
    )
    (t,), _ = load_inventory(inv)
    argv = t.ssh_argv()
    assert argv[-4:] == ["StrictHostKeyChecking=yes", "-o", "ProxyJump=jump@bastion.lab:2222", "qa@10.1.0.1"]
    script = Path(t.libvirt_uri(tmp_path / "w").split("command=")[1].replace("%2F", "/"))
    assert "ProxyJump=jump@bastion.lab:2222" in script.read_text()
    plain = load_inventory(_plain(tmp_path))[0][0]
    assert (
        plain.transport.control_path != t.transport.control_path
    )  # a direct master is never reused for the bastion route


def _plain(tmp_path: Path) -> Path:
    inv = tmp_path / "plain"
    inv.write_text("[kvm_hosts]\nhv1 ansible_host=10.1.0.1 ansible_user=qa\n")
    return inv


def test_an_ansible_url_and_limit_select_together(tmp_path: Path) -> None:
    src, _ = write_case(CASES[0], tmp_path)
    limit = "compute01.domain.tld:db-*:engine.lab"  # a union: kvm_hosts & (...) leaves out engine.lab
    targets = targets_from_hosts(f"ansible://kvm_hosts?ansible_inventory={src}", limit=limit)
    theirs = set(ansible_view(src, "kvm_hosts", None, False)) & set(ansible_view(src, limit, None, False))
    assert sorted(t.name for t in targets) == sorted(theirs) and len(theirs) == 4
