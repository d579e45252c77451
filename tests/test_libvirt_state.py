"""The tests' own libvirt state keeper puts networks back exactly, even when a test redefined them
meanwhile."""

from __future__ import annotations

import subprocess
import uuid

import pytest

from tests.support import libvirt_state

pytestmark = pytest.mark.usefixtures("libvirtd")
V = ["virsh", "-q", "-c", "qemu:///system"]


def _net_xml(name: str, bridge: str, third: int) -> str:
    return (
        f"<network><name>{name}</name><uuid>{uuid.uuid4()}</uuid><bridge name='{bridge}'/>"
        f"<ip address='192.168.{third}.1' netmask='255.255.255.0'/></network>"
    )


def test_a_network_redefined_with_another_uuid_and_state_comes_back(tmp_path) -> None:
    name = f"kvmqa-state-{uuid.uuid4().hex[:6]}"
    xml = tmp_path / "net.xml"
    xml.write_text(_net_xml(name, f"kqsbr{name[-4:]}", 213))
    subprocess.run([*V, "net-define", str(xml)], check=True, capture_output=True)
    try:
        saved = libvirt_state.capture(only=name)
        assert not saved[f"net:{name}"].active and not saved[f"net:{name}"].autostart
        # what install mode does to `default`: undefine, define anew (another UUID), start, autostart
        subprocess.run([*V, "net-undefine", name], check=True, capture_output=True)
        xml.write_text(_net_xml(name, f"kqsbr{name[-4:]}", 213))
        for cmd in (["net-define", str(xml)], ["net-start", name], ["net-autostart", name]):
            subprocess.run([*V, *cmd], check=True, capture_output=True)
        assert libvirt_state.restore(saved, only=name) == []
        back = libvirt_state.capture(only=name)[f"net:{name}"]
        assert back == saved[f"net:{name}"]  # same definition (its UUID), inactive, no autostart
    finally:
        subprocess.run([*V, "net-destroy", name], capture_output=True)
        subprocess.run([*V, "net-undefine", name], capture_output=True)
