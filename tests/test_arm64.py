"""What only differs by architecture, quickly (default CI): the first VM's kit and domain for aarch64, the
package names, and kvmqa's verdicts over the facts recorded from the real arm64 lab host (tests/lab,
bookworm-arm64: QEMU's virt machine at EL2, KVM in VHE mode; fixtures/facts/lab-bookworm-arm64.probe.txt and
tests/recorded/arm64/, written by tests/test_lab_arm64.py from that host).
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from kvmqa.config.profile import Profile
from kvmqa.core.gate import evaluate_stage
from kvmqa.gather.distro import REQUIREMENTS, probe_package_names
from kvmqa.stages.cpu.checks import CHECKS as CPU
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
from kvmqa.stages.libvirt.checks import CHECKS as LIBVIRT
from kvmqa.stages.libvirt.checks import FIRST_VM_ARCHES
from kvmqa.stages.libvirt.gather import parse_domcapabilities
from kvmqa.stages.packages.checks import CHECKS as PACKAGES
from tests.support.facts import parse, probe_text

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
    rom = root.find("devices/interface/rom")
    assert rom is not None and rom.get("enabled") == "no"  # Debian's arm64 QEMU ships no efi-virtio.rom
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
    with_net = virt_install_argv(
        "n", spec, KitVolumes(_kit("aarch64"), "/k", "/i"), "p", "v", "net", "m", "/l"
    )
    assert with_net[with_net.index("--xml") + 1] == "./devices/interface/rom/@enabled=no"
    assert "--xml" not in arm  # no interface to edit without a network
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


# --- over the facts recorded from the real arm64 lab host (tests/test_lab_arm64.py, KVMQA_RECORD_ARM64=1) ---

RECORDED = ROOT / "tests" / "recorded" / "arm64"
TRUTH = json.loads((RECORDED / "truth.json").read_text())  # plain commands on that host, same boot
ARM64_PACKAGES = {
    "packages.qemu": "qemu-system-arm",
    "packages.qemu-img": "qemu-utils",
    "packages.libvirt-daemon": "libvirt-daemon-system",
    "packages.libvirt-clients": "libvirt-clients",
    "packages.virt-install": "virtinst",
    "packages.ovmf": "qemu-efi-aarch64",
}


def run(stage: Any, f: Any) -> dict[str, tuple[str, str]]:
    return {x.check_id: (x.verdict.value, x.message) for x in evaluate_stage(stage, "h", f, Profile())}


def recorded(arch: str = "") -> Any:
    """The recorded host's facts with its libvirt section; `arch` relabels uname -m (what differs by it)."""
    text = probe_text("lab-bookworm-arm64")
    if arch:
        text = re.sub(r"^arch=aarch64$", f"arch={arch}", text, count=1, flags=re.M)
    f = parse(text)
    f["libvirt"] = json.loads((RECORDED / "facts.json").read_text())["libvirt"]
    return f


def test_recorded_arm64_cpu_verdicts_follow_the_recorded_truth() -> None:
    v = run(CPU, recorded())
    assert TRUTH["arch"] == "aarch64" and TRUTH["vhe"] == "1" and TRUTH["el2"] == "1"
    assert v["cpu.hw-virt"][0] == "skip" and v["cpu.virt-firmware-lock"][0] == "skip"
    # KVM built in (modules.builtin), nothing in /proc/modules: present, no vendor module asked for
    assert TRUTH["kvm_builtin"] == "1" and TRUTH["kvm_in_proc_modules"] == "0"
    assert v["cpu.kvm-module"][0] == "pass" and "aarch64" in v["cpu.kvm-module"][1]
    mode, owner, group = TRUTH["devkvm"].split("|")[1:]
    assert v["cpu.kvm-device"] == ("pass", f"/dev/kvm exists (mode {mode}, {owner}:{group})")
    assert v["cpu.kvm-vcpu-run"][0] == "pass" and "exits MMIO,SYSTEM_EVENT" in v["cpu.kvm-vcpu-run"][1]
    assert v["cpu.kvm-qemu-user-access"][0] == ("pass" if TRUTH["qemu_rw"] == "yes" else "fail")
    # the IOMMU as the host has it: no ACPI tables (device tree), no SMMU, no groups
    smmu = any("smmu" in d for d in TRUTH["class_iommu"].split())
    assert v["cpu.iommu-acpi"][0] == ("pass" if smmu else "warn")
    assert v["cpu.iommu-kernel"][0] == ("pass" if int(TRUTH["iommu_groups"]) else "warn")
    assert "as expected there" in v["cpu.kvm-summary"][1]
    # the same facts called x86_64: now a missing svm flag fails, as it must on an x86 host
    assert run(CPU, recorded("x86_64"))["cpu.hw-virt"][0] == "fail"


def test_recorded_arm64_packages_are_judged_by_their_arm64_names() -> None:
    v = run(PACKAGES, recorded())
    for cid, pkg in ARM64_PACKAGES.items():
        version = TRUTH[f"pkg.{pkg}"].split("|")[1]
        assert v[cid] == (
            "pass",
            f"{pkg} {version}" + (" (minimum 6.2.0)" if cid == "packages.qemu" else ""),
        ), cid
    # what kvmqa said before it knew arm64 names: the x86 emulator and OVMF missing on a good arm64 host
    as_x86 = run(PACKAGES, recorded("x86_64"))
    assert as_x86["packages.qemu"] == ("fail", "none of qemu-system-x86 is installed")
    assert as_x86["packages.ovmf"] == ("warn", "none of ovmf is installed")


def test_recorded_arm64_libvirt_offers_kvm_on_virt_with_aavmf() -> None:
    v = run(LIBVIRT, recorded())
    types = TRUTH["guest_types"]["aarch64"]
    assert v["libvirt.kvm-guest"] == ("pass", f"aarch64 hvm guests: domain types {', '.join(types)}")
    assert v["libvirt.qemu-guest"] == ("pass", "aarch64 hvm guests can be emulated (domain type qemu)")
    assert "x86_64" not in TRUTH["guest_types"]  # no x86 emulator on the host: no x86_64 guests at all
    # domain capabilities of the machine guests use there (virsh domcapabilities --machine virt)
    dc = v["libvirt.domcapabilities"]
    assert dc[0] == "pass" and f"machine {TRUTH['dc_machine']}" in dc[1], dc
    assert "UEFI loader available" in dc[1]
    parsed = parse_domcapabilities((RECORDED / "domcapabilities-kvm-aarch64-virt.xml").read_text())
    assert parsed["machine"] == TRUTH["dc_machine"] and parsed["machine"].startswith("virt")
    assert any("AAVMF" in p for p in TRUTH["dc_loaders"])


def test_the_constructed_aarch64_fixture_has_the_recorded_hosts_shapes() -> None:
    """Each section and key the constructed fixture claims is one the real probe printed on the arm64 host."""

    def sections(text: str) -> dict[str, str]:
        found = re.finditer(r"^@@kvmqa:(\S+) rc=-?\d+\n(.*?)(?=^@@kvmqa:|\Z)", text, re.M | re.S)
        return {m.group(1): m.group(2) for m in found}

    def keys(body: str) -> set[str]:
        return {
            line.split("=", 1)[0] for line in body.splitlines() if "=" in line and not line.startswith("/")
        }

    constructed = sections(probe_text("constructed-debian12-aarch64"))
    real = sections(probe_text("lab-bookworm-arm64"))
    assert set(constructed) <= set(real)
    for name in ("probe_env", "iommu", "firmware", "kvm_probe", "cgroups"):
        assert keys(constructed[name]) <= keys(real[name]), name
    kvm = dict(line.split("=", 1) for line in constructed["kvm_probe"].splitlines() if "=" in line)
    assert kvm["vcpu_run"] == "ok" and kvm["vcpu_exits"] == "MMIO,SYSTEM_EVENT"


def test_the_arm64_lab_image_and_machine() -> None:
    """The lab's arm64 image: its own cache key (the x86 ones unchanged), booted on virt at EL2, one host."""
    from tests.lab.boot import _machine
    from tests.lab.cluster import plan_hosts
    from tests.lab.image import LAB_IMAGES
    from tests.lab.image_arm64 import ALL_IMAGES, ARM64_IMAGES

    spec = ARM64_IMAGES["bookworm-arm64"]
    assert spec.arch == "arm64" and "linux-image-cloud-arm64" in spec.packages
    assert {"qemu-system-arm", "qemu-efi-aarch64"} <= set(
        spec.packages
    ) and "qemu-system-x86" not in spec.packages
    assert spec.with_(hostname="other").key() != spec.key()
    assert set(ALL_IMAGES) == {*LAB_IMAGES, "bookworm-arm64"}
    argv = _machine("arm64", "max")
    assert argv[0] == "qemu-system-aarch64" and "virt,virtualization=on,gic-version=3" in argv
    assert _machine("amd64", "max")[0] == "qemu-system-x86_64"
    assert plan_hosts(1, "bookworm-arm64")[0].suite == "bookworm-arm64"
    with pytest.raises(ValueError, match="bookworm-arm64 not one of"):
        plan_hosts(2, "bookworm-arm64")  # a cluster's hosts are x86 (segment, NFS, migration)


def test_the_first_vm_reads_the_kit_architecture_from_the_hosts_capabilities() -> None:
    """host_arch() over the arm64 host's recorded `virsh capabilities` (a stand-in connection that answers
    getCapabilities with that recording: the real call is made by the lab test)."""
    from kvmqa.stages.first_vm.gather import host_arch

    class RecordedCapabilities:
        def getCapabilities(self) -> str:  # noqa: N802 - libvirt's name
            return (RECORDED / "capabilities.xml").read_text()

    assert host_arch(RecordedCapabilities()) == TRUTH["arch"] == "aarch64"
    assert arch_kit(host_arch(RecordedCapabilities())).kernel_package == "linux-image-cloud-arm64"
