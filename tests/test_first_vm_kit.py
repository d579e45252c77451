"""The guest kit, the initramfs writer, module resolution, domain/network XML and the NoCloud seed."""

from __future__ import annotations

import gzip
import shutil
import stat
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from kvmqa.stages.first_vm.cpio import CpioWriter, list_newc
from kvmqa.stages.first_vm.domain import DiskSpec, DomainSpec, NetworkSpec, object_name
from kvmqa.stages.first_vm.kit import INIT_SCRIPT, Kit, build_kit, kit_key
from kvmqa.stages.first_vm.seed import build_seed, user_data

pytestmark = pytest.mark.skipif(
    shutil.which("apt-get") is None, reason="kit tests build from Debian packages"
)


@pytest.fixture(scope="module")
def kit() -> Kit:
    return build_kit()


def test_kit_holds_a_cloud_kernel_busybox_init_and_resolved_virtio_modules(kit: Kit) -> None:
    assert kit.kernel.stat().st_size > 4_000_000 and kit.kernel_release.endswith("-cloud-amd64")
    assert any(p.name.startswith("linux-image-") for p in kit.packages)
    entries = {name: (mode, size) for name, mode, size in list_newc(gzip.decompress(kit.initrd.read_bytes()))}
    assert entries["init"][1] == INIT_SCRIPT.stat().st_size and entries["init"][0] & 0o111
    assert stat.S_ISCHR(entries["dev/console"][0])
    assert entries["bin/busybox"][1] > 500_000
    order = list(kit.modules)
    # dependencies come before the modules that need them
    assert order.index("virtio") < order.index("virtio_pci") < order.index("virtio_blk")
    assert order.index("net_failover") < order.index("virtio_net")
    for mod in order:
        assert f"lib/kvmqa/{mod}.ko" in entries


def test_kit_is_cached_and_rebuilt_only_when_an_input_changes(kit: Kit, tmp_path: Path) -> None:
    assert build_kit().key == kit.key  # same inputs: the cache answers
    other_init = tmp_path / "init.sh"
    other_init.write_text(INIT_SCRIPT.read_text() + "\n# changed\n")
    assert kit_key(kit.packages, other_init.read_bytes(), kit.modules) != kit.key
    rebuilt = build_kit(cache=tmp_path / "cache", init_script=other_init)
    assert rebuilt.key != kit.key and rebuilt.initrd.exists()
    mtime = rebuilt.initrd.stat().st_mtime_ns
    assert build_kit(cache=tmp_path / "cache", init_script=other_init).initrd.stat().st_mtime_ns == mtime


def test_cpio_newc_is_what_the_kernel_reads(tmp_path: Path) -> None:
    """Cross-check the Python writer against GNU cpio when it is installed."""
    writer = CpioWriter()
    writer.file("etc/x/hello", b"hello\n", 0o600)
    writer.symlink("bin/sh", "busybox")
    data = writer.archive()
    assert [e[0] for e in list_newc(data)] == ["etc", "etc/x", "etc/x/hello", "bin", "bin/sh"]
    if shutil.which("cpio"):
        out = subprocess.run(["cpio", "-t"], input=data, capture_output=True, check=True)
        assert out.stdout.decode().split() == ["etc", "etc/x", "etc/x/hello", "bin", "bin/sh"]


def test_domain_xml_is_direct_kernel_boot_restart_on_reset_and_no_qemu_commandline() -> None:
    name = object_name("tcg", "Host.Example.COM:2222")
    assert name.startswith("kvmqa-tcg-host-example-com-") and len(name) < 45 and name == name.lower()
    spec = DomainSpec(
        name=name,
        virt_type="qemu",
        memory_mib=256,
        vcpus=2,
        kernel="/p/k",
        initrd="/p/i",
        cmdline="console=ttyS0",
        disks=[DiskSpec("kvmqa-pool-x", "d.qcow2")],
        network="kvmqa-net-x",
    )
    root = ET.fromstring(spec.to_xml())
    assert root.get("type") == "qemu" and root.findtext("name") == name
    assert root.find("memory").get("unit") == "MiB" and root.findtext("vcpu") == "2"
    assert root.findtext("os/kernel") == "/p/k" and root.findtext("os/cmdline") == "console=ttyS0"
    assert [root.findtext(t) for t in ("on_poweroff", "on_reboot", "on_crash")] == [
        "destroy",
        "restart",
        "destroy",
    ]
    assert root.find("devices/disk/source").attrib == {"pool": "kvmqa-pool-x", "volume": "d.qcow2"}
    assert root.find("devices/interface/model").get("type") == "virtio"
    assert root.find("devices/serial/log").get("file").endswith(f"{name}-console.log")
    assert "commandline" not in spec.to_xml()


def test_network_xml_is_isolated_by_default_with_dhcp() -> None:
    root = ET.fromstring(NetworkSpec("kvmqa-net-x", "kvmqa-x", 151).to_xml())
    assert root.find("forward") is None
    assert root.find("ip").get("address") == "192.168.151.1"
    assert root.find("ip/dhcp/range").get("start") == "192.168.151.10"
    assert (
        ET.fromstring(NetworkSpec("kvmqa-net-x", "kvmqa-x", 151, "nat").to_xml()).find("forward").get("mode")
        == "nat"
    )


@pytest.mark.skipif(
    shutil.which("isoinfo") is None, reason="isoinfo (genisoimage) needed to read the seed back"
)
def test_nocloud_seed_is_labelled_cidata_with_user_and_meta_data(tmp_path: Path) -> None:
    seed = build_seed(tmp_path / "seed.iso", "kvmqa-image-x")
    info = subprocess.run(["isoinfo", "-d", "-i", str(seed.path)], capture_output=True, text=True, check=True)
    assert "Volume id: cidata" in info.stdout
    listing = subprocess.run(
        ["isoinfo", "-J", "-f", "-i", str(seed.path)], capture_output=True, text=True, check=True
    )
    assert sorted(listing.stdout.split()) == ["/meta-data", "/user-data"]
    body = subprocess.run(
        ["isoinfo", "-J", "-x", "/user-data", "-i", str(seed.path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert body == user_data("kvmqa-image-x")
    assert body.startswith("#cloud-config\n") and "KVMQA-CLOUDINIT ok instance=kvmqa-image-x" in body
    assert "password" not in body.lower() and "ssh_authorized_keys" not in body
    meta = subprocess.run(
        ["isoinfo", "-J", "-x", "/meta-data", "-i", str(seed.path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "instance-id: kvmqa-image-x" in meta
