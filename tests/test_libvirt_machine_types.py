"""The machine types libvirt reports per guest architecture (facts["libvirt"]["capabilities"]
["machine_types"]), read from a real capabilities XML: `virsh -c qemu:///system capabilities` on the
Debian 12 CI machine (libvirt 9.0.0, QEMU 7.2), tests/recorded/libvirt/capabilities-debian12-qemu7.2.xml,
kept as libvirt printed it."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from kvmqa.stages.libvirt.facts import machine_types
from kvmqa.stages.libvirt.gather import parse_capabilities

CAPS = Path(__file__).resolve().parent / "recorded" / "libvirt" / "capabilities-debian12-qemu7.2.xml"


def test_machine_types_per_arch_with_aliases_vcpus_and_deprecation() -> None:
    types = machine_types(ET.fromstring(CAPS.read_text()))
    assert sorted(types) == ["i686", "x86_64"]
    x86 = {m["name"]: m for m in types["x86_64"]}
    assert x86["pc"] == {"name": "pc", "canonical": "pc-i440fx-7.2", "max_cpus": 255, "deprecated": False}
    assert x86["q35"] == {"name": "q35", "canonical": "pc-q35-7.2", "max_cpus": 288, "deprecated": False}
    assert x86["pc-q35-7.2"]["canonical"] == "pc-q35-7.2"  # a versioned machine stands for itself
    assert x86["pc-i440fx-1.4"]["deprecated"] and not x86["pc-q35-5.2"]["deprecated"]
    assert [m["name"] for m in types["x86_64"]] == sorted(x86)  # sorted, each name once
    assert len(types["x86_64"]) == CAPS.read_text().count("<machine") // 2  # i686 lists the same machines


def test_the_libvirt_gatherer_and_evaluate_carry_them() -> None:
    caps = parse_capabilities(CAPS.read_text())
    assert caps["machine_types"]["x86_64"] == machine_types(ET.fromstring(CAPS.read_text()))["x86_64"]
    assert caps["guests"][1]["machines"] == sorted(m["name"] for m in caps["machine_types"]["x86_64"])


def test_older_libvirt_lists_a_domain_types_machines_under_it() -> None:
    xml = (
        "<capabilities><guest><arch name='aarch64'><machine maxCpus='512'>virt-7.2</machine>"
        "<machine canonical='virt-7.2' maxCpus='512'>virt</machine>"
        "<domain type='kvm'><machine maxCpus='512'>virt-7.2</machine><machine>virt-6.2</machine></domain>"
        "</arch></guest></capabilities>"
    )
    assert machine_types(ET.fromstring(xml)) == {
        "aarch64": [
            {"name": "virt", "canonical": "virt-7.2", "max_cpus": 512, "deprecated": False},
            {"name": "virt-6.2", "canonical": "virt-6.2", "max_cpus": 0, "deprecated": False},
            {"name": "virt-7.2", "canonical": "virt-7.2", "max_cpus": 512, "deprecated": False},
        ]
    }
