"""Inventories: --hosts and kvmqa's YAML; errors name file and line (Ansible inventories:
test_ansible_inventory.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kvmqa.config.inventory import InventoryError, load_inventory, targets_from_hosts
from kvmqa.transport.target import Target, TargetError


def test_hosts_urls() -> None:
    ts = targets_from_hosts("local://,ssh://qa@hv1:2222,paramiko://root@hv2")
    assert [(t.backend, t.name, t.user, t.port) for t in ts] == [
        ("local", "local", None, None),
        ("ssh", "hv1:2222", "qa", 2222),
        ("paramiko", "hv2", "root", None),
    ]


def test_passwords_in_urls_are_refused() -> None:
    with pytest.raises(TargetError, match="passwords in host URLs are refused"):
        Target.from_url("ssh://root:secret@hv1")


def test_kvmqa_yaml(tmp_path: Path) -> None:
    inv = tmp_path / "i.yaml"
    inv.write_text(
        "defaults: {user: qa, sudo: true, roles: [kvm-host]}\nhosts:\n"
        "  - {name: hv1, address: 10.1.1.1, roles: [kvm-host, ovirt-host]}\n  - {name: me, url: 'local://'}\n"
        "engine: {url: 'https://e/ovirt-engine', user: admin@internal}\n"
    )
    targets, engine = load_inventory(inv)
    assert targets[0].roles == ("kvm-host", "ovirt-host") and targets[0].sudo and targets[0].user == "qa"
    assert targets[1].is_local and targets[1].name == "me"
    assert engine == {"url": "https://e/ovirt-engine", "user": "admin@internal"}


def test_unknown_role_and_duplicate_names(tmp_path: Path) -> None:
    inv = tmp_path / "i.yaml"
    inv.write_text("hosts:\n  - {name: a, address: h, roles: [hypervisor]}\n")
    with pytest.raises(InventoryError, match=r"i.yaml:2: unknown role 'hypervisor'"):
        load_inventory(inv)
    inv.write_text("hosts:\n  - {name: a, address: h}\n  - {name: a, address: g}\n")
    with pytest.raises(InventoryError, match="appears twice"):
        load_inventory(inv)


def test_limit_is_for_ansible_inventories(tmp_path: Path) -> None:
    inv = tmp_path / "i.yaml"
    inv.write_text("hosts:\n  - {name: a, address: h}\n")
    with pytest.raises(
        InventoryError, match=r"--limit a: applies to Ansible inventories; .*i.yaml is a kvmqa inventory"
    ):
        load_inventory(inv, limit="a")


def test_example_inventories_load() -> None:
    for path in sorted(Path("fixtures/inventories").glob("*")):
        targets, _ = load_inventory(path)
        assert targets, path


def test_ssh_config_per_inventory_and_on_the_ssh_command_line(tmp_path: Path) -> None:
    config = tmp_path / "lab_ssh_config"
    config.write_text("Host hv*\n  ProxyJump bastion.lab\n")
    inv = tmp_path / "i.yaml"
    inv.write_text(
        f"defaults: {{user: qa, ssh_config: {config}}}\nhosts:\n  - {{name: hv1, address: hv1.lab}}\n"
    )
    (target,), _ = load_inventory(inv)
    assert target.ssh_config == config
    assert target.ssh_argv()[:3] == [
        "ssh",
        "-F",
        str(config),
    ]  # the libvirt connection and uploads use it too
    inv.write_text(f"hosts:\n  - {{name: hv1, address: hv1.lab, ssh_config: {tmp_path / 'missing'}}}\n")
    with pytest.raises(InventoryError, match=r"i.yaml:2: ssh_config .*missing: no such file"):
        load_inventory(inv)


def test_shared_ssh_connections_are_not_reused_across_trust_or_route() -> None:
    """kvmqa's ControlPath: a master opened without host-key checks, with another known_hosts or another ssh
    config (a ProxyJump) is never the one a run with other settings reuses."""
    base = Target.from_url("ssh://qa@hv1")
    paths = {
        base.transport.control_path,
        Target.from_url("ssh://qa@hv1", strict_host_keys=False).transport.control_path,
        Target.from_url("ssh://qa@hv1", known_hosts=Path("/tmp/other_known_hosts")).transport.control_path,
        Target.from_url("ssh://qa@hv1", ssh_config=Path("/tmp/kvmqa-no-such-config")).transport.control_path,
    }
    assert len(paths) == 4 and all(p.endswith("-%C") for p in paths)
    assert (
        Target.from_url("ssh://qa@hv1").transport.control_path == base.transport.control_path
    )  # the same settings share it


def test_limit_without_an_ansible_source_is_refused() -> None:
    with pytest.raises(InventoryError, match=r"--limit hv1: applies to Ansible inventories"):
        targets_from_hosts("ssh://qa@hv1", limit="hv1")
