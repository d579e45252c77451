"""What only differs by architecture, quickly (default CI): the first VM's kit and domain for aarch64, the
package names, and kvmqa's verdicts over the facts recorded from the real arm64 lab host (tests/lab,
bookworm-arm64: QEMU's virt machine at EL2, KVM in VHE mode; fixtures/facts/lab-bookworm-arm64.probe.txt and
tests/recorded/arm64/, written by tests/test_lab_arm64.py from that host).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from kvmqa.gather.distro import REQUIREMENTS, probe_package_names
from kvmqa.stages.first_vm.boot import KitVolumes
from kvmqa.stages.first_vm.domain import DiskSpec, DomainSpec
from kvmqa.stages.first_vm.kit import (
    ARCH_KITS,
    GUEST_MODULES,
    Kit,
    KitError,
    Package,
    arch_kit,
    kit_key,
)
from kvmqa.stages.first_vm.virtinstall import virt_install_argv
from kvmqa.stages.libvirt.checks import FIRST_VM_ARCHES

ROOT = Path(__file__).resolve().parents[1]


def test_a_host_architecture_without_a_kit_is_one_clear_line() -> None:
    with pytest.raises(KitError) as err:
        arch_kit("ppc64le")
    text = str(err.value)
    assert "\n" not in text and "ppc64le" in text and "x86_64, aarch64" in text
    assert arch_kit("aarch64").deb_arch == "arm64" and arch_kit("").arch == "x86_64"
    assert tuple(ARCH_KITS) == FIRST_VM_ARCHES  # the libvirt stage's note names the same kits


def test_x86_kit_keys_are_unchanged_and_an_arm64_kit_has_its_own() -> None:
    pkgs = (Package("linux-image-x", "1"), Package("busybox-static", "1:1.35.0-4"))
    x86 = kit_key(pkgs, b"init", GUEST_MODULES)
    assert kit_key(pkgs, b"init", GUEST_MODULES, "x86_64") == x86
    # busybox-static has the same name and version on both architectures: the key must still differ
    assert kit_key(pkgs, b"init", GUEST_MODULES, "aarch64") != x86


def _kit(arch: str) -> Kit:
    return Kit(Path("/k"), Path("/i"), "6.1.0-57-cloud-arm64", "key", (), (), arch)


def test_aarch64_kit_boots_on_virt_with_the_pl011_console() -> None:
    assert _kit("aarch64").cmdline("kvmqa.net=0") == "console=ttyAMA0 panic=-1 kvmqa.net=0"
    assert _kit("x86_64").cmdline() == "console=ttyS0,115200 panic=-1"
    assert "pvpanic_mmio" not in arch_kit("aarch64").modules  # no ISA pvpanic on virt


@pytest.mark.parametrize("virt_type", ["kvm", "qemu"])
def test_aarch64_domain_is_virt_without_acpi_with_a_64bit_cpu(virt_type: str) -> None:
    spec = DomainSpec(
        name="kvmqa-x",
        virt_type=virt_type,
        kernel="/p/k",
        initrd="/p/i",
        cmdline="console=ttyAMA0",
        disks=[DiskSpec("kvmqa-pool-x", "d.qcow2")],
        network="kvmqa-net-x",
        arch="aarch64",
    )
    root = ET.fromstring(spec.to_xml())
    os_type = root.find("os/type")
    assert os_type is not None and os_type.attrib == {"arch": "aarch64", "machine": "virt"}
    assert root.find("features/acpi") is None  # ACPI on aarch64 needs UEFI; direct kernel boot uses DT
    assert root.find("devices/panic") is None  # no ISA bus on virt
    cpu = root.find("cpu")
    assert cpu is not None
    if virt_type == "kvm":
        assert cpu.get("mode") == "host-passthrough"
    else:  # QEMU's default virt CPU (cortex-a15) is 32-bit: an arm64 kernel would not start
        assert cpu.get("mode") == "custom" and cpu.findtext("model") == "cortex-a57"
    x86 = ET.fromstring(DomainSpec(name="kvmqa-y", kernel="/p/k").to_xml())
    assert x86.find("os/type").attrib == {"arch": "x86_64"}  # type: ignore[union-attr]
    assert x86.find("features/acpi") is not None and x86.find("cpu") is None


def test_virt_install_is_told_the_architecture_and_machine_off_x86() -> None:
    from kvmqa.stages.first_vm.boot import BootSpec

    spec = BootSpec(purpose="vinst", virt_type="kvm", host="h")
    arm = virt_install_argv("n", spec, KitVolumes(_kit("aarch64"), "/k", "/i"), "p", "v", None, "m", "/l")
    assert arm[arm.index("--arch") + 1] == "aarch64" and arm[arm.index("--machine") + 1] == "virt"
    assert arm[arm.index("--features") + 1] == "acpi=off"  # libvirt: ACPI requires UEFI on aarch64
    x86 = virt_install_argv("n", spec, KitVolumes(_kit("x86_64"), "/k", "/i"), "p", "v", None, "m", "/l")
    assert "--arch" not in x86


def test_package_names_follow_the_host_architecture() -> None:
    by_key = {r.key: r for r in REQUIREMENTS}
    assert by_key["qemu"].names("debian", "aarch64") == ("qemu-system-arm",)
    assert by_key["qemu"].names("debian", "x86_64") == ("qemu-system-x86",)
    assert by_key["ovmf"].names("debian", "aarch64") == ("qemu-efi-aarch64",)
    assert by_key["ovmf"].names("rhel", "aarch64") == ("edk2-aarch64",)
    assert by_key["qemu-img"].names("debian", "aarch64") == ("qemu-utils",)
    deb, rpm = probe_package_names()
    assert {"qemu-system-x86", "qemu-system-arm", "ovmf", "qemu-efi-aarch64"} <= set(deb.split())
    assert "edk2-aarch64" in rpm.split()
