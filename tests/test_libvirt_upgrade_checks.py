"""Defined guests against what the installed QEMU offers (libvirt.guest-machine-types and
libvirt.guest-cpu-models), over capabilities recorded on a bookworm lab host before and after its in-place
upgrade to bookworm-backports (tests/lab/upgrade.py; recorded 2026-12-08 with `virsh capabilities`,
`virsh domcapabilities --virttype kvm` and `virsh dumpxml --inactive`, kept as libvirt printed them; and
`qemu-system-x86_64 -machine help` beside them):

    tests/recorded/libvirt/upgrade/before-{capabilities,domcaps-kvm}.xml   libvirt 9.0.0, QEMU 7.2.22
    tests/recorded/libvirt/upgrade/after-{capabilities,domcaps-kvm}.xml    libvirt 11.3.0, QEMU 10.0.2
    tests/recorded/libvirt/upgrade/kvmqa-upgrade-{old,depr}.xml            guests on pc-i440fx-2.3 and -5.2

The guests' states are the lab run's: both running on the old QEMU right after the upgrade.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from kvmqa.config.profile import Profile
from kvmqa.core.gate import evaluate_stage
from kvmqa.policy.baseline import capability_text, compare_host
from kvmqa.stages.libvirt.checks import CHECKS as LIBVIRT
from kvmqa.stages.libvirt.checks import machine_advice
from kvmqa.stages.libvirt.facts import MachineType, defined_guest
from kvmqa.stages.libvirt.gather import parse_capabilities, parse_domcapabilities
from tests.support.facts import facts

REC = Path(__file__).resolve().parent / "recorded" / "libvirt" / "upgrade"
GUESTS = ("kvmqa-upgrade-old", "kvmqa-upgrade-depr")


def libvirt_facts(when: str, *, active: bool = True, **edits: str) -> dict[str, Any]:
    """The libvirt facts the gatherer returns on the lab host `before` or `after` the upgrade."""
    caps = parse_capabilities((REC / f"{when}-capabilities.xml").read_text())
    domcaps = parse_domcapabilities((REC / f"{when}-domcaps-kvm.xml").read_text())
    guests = []
    for name in GUESTS:
        xml = (REC / f"{name}.xml").read_text()
        for old, new in edits.items():
            xml = xml.replace(old.replace("_", "-"), new)
        guests.append({**defined_guest(ET.fromstring(xml)), "active": active, "persistent": True})
    version = "7.2.22" if when == "before" else "10.0.2"
    return {
        "connected": True,
        "uri": "qemu:///system",
        "lib_version": "9.0.0" if when == "before" else "11.3.0",
        "hypervisor_version": version,
        "capabilities": caps,
        "domcapabilities": {"kvm": domcaps},
        "domcapabilities_arch": {"kvm": "x86_64", "qemu": "x86_64"},
        "domains": list(GUESTS),
        "guests": guests,
    }


def verdicts(lv: dict[str, Any]) -> dict[str, tuple[str, str]]:
    f = facts("debian12-pvm")
    f["libvirt"] = lv
    return {x.check_id: (x.verdict.value, x.message) for x in evaluate_stage(LIBVIRT, "lab", f, Profile())}


def test_the_recorded_qemus_differ_as_measured() -> None:
    """Ground truth for the tests below, read from the recorded XML itself."""
    before = {m["name"]: m for m in libvirt_facts("before")["capabilities"]["machine_types"]["x86_64"]}
    after = {m["name"]: m for m in libvirt_facts("after")["capabilities"]["machine_types"]["x86_64"]}
    assert "pc-i440fx-2.3" in before and not before["pc-i440fx-2.3"]["deprecated"]
    assert "pc-i440fx-2.3" not in after and after["pc-i440fx-5.2"]["deprecated"]
    assert not before["pc-i440fx-5.2"]["deprecated"] and not after["pc-i440fx-7.1"]["deprecated"]


def test_before_the_upgrade_both_guests_pass() -> None:
    v = verdicts(libvirt_facts("before"))
    assert v["libvirt.guest-machine-types"][0] == "pass", v["libvirt.guest-machine-types"]
    assert v["libvirt.guest-cpu-models"] == (
        "pass",
        "2 guest(s) with custom CPU models, each offered by QEMU 7.2.22",
    )


def test_after_the_upgrade_the_removed_type_fails_naming_guest_and_change_and_the_deprecated_warns() -> None:
    verdict, message = verdicts(libvirt_facts("after"))["libvirt.guest-machine-types"]
    assert verdict == "fail"
    assert message.startswith("1 guest(s) will not start on QEMU 10.0.2: guest kvmqa-upgrade-old (running)")
    assert "pc-i440fx-2.3: QEMU 10.0.2 no longer offers it" in message
    assert (
        "change its machine type to pc-i440fx-7.1 (the nearest virtual hardware) or pc-i440fx-10.0" in message
    )
    assert (
        "guest kvmqa-upgrade-depr (running): machine type pc-i440fx-5.2 is deprecated in QEMU 10.0.2"
        in message
    )


def test_only_deprecated_is_a_warning() -> None:
    lv = libvirt_facts("after", active=False, **{"pc-i440fx-2.3": "pc-i440fx-7.2"})
    verdict, message = verdicts(lv)["libvirt.guest-machine-types"]
    assert verdict == "warn" and "kvmqa-upgrade-old" not in message
    assert "guest kvmqa-upgrade-depr (shut off): machine type pc-i440fx-5.2 is deprecated" in message


def test_a_cpu_model_qemu_no_longer_offers_fails_and_a_deprecated_one_warns() -> None:
    lv = libvirt_facts("after", **{">qemu64<": ">Westmere-gone<"})
    verdict, message = verdicts(lv)["libvirt.guest-cpu-models"]
    assert verdict == "fail" and "guest kvmqa-upgrade-old (running): CPU model Westmere-gone" in message
    assert "no longer offers it; will not start again" in message
    models = lv["domcapabilities"]["kvm"]["cpu_models"]
    models[:] = [{**m, "deprecated": m["name"] == "qemu64"} for m in models]
    lv = libvirt_facts("after")
    lv["domcapabilities"]["kvm"]["cpu_models"] = models
    verdict, message = verdicts(lv)["libvirt.guest-cpu-models"]
    assert verdict == "warn" and "CPU model qemu64 is deprecated in QEMU 10.0.2" in message


def test_no_guests_pass_and_older_facts_are_undecided() -> None:
    lv = libvirt_facts("after")
    lv["guests"] = []
    v = verdicts(lv)
    assert v["libvirt.guest-machine-types"] == ("pass", "no guests defined: none that cannot start")
    lv = libvirt_facts("after")
    del lv["domcapabilities"]["kvm"]["cpu_models"]  # facts saved by an older kvmqa
    assert verdicts(lv)["libvirt.guest-cpu-models"][0] == "error"


def test_machine_advice_picks_the_oldest_offered_non_deprecated_of_the_family() -> None:
    offered = [
        MachineType("pc-i440fx-5.2", deprecated=True),
        MachineType("pc-i440fx-7.1"),
        MachineType("pc-i440fx-10.0"),
        MachineType("pc-i440fx-7.2"),
        MachineType("pc-q35-2.4"),
    ]
    assert "pc-i440fx-7.1 (the nearest virtual hardware) or pc-i440fx-10.0" in machine_advice(
        "pc-i440fx-2.3", offered
    )
    assert "to one this QEMU offers" in machine_advice("virt-2.1", offered)


def test_baseline_compare_shows_the_capabilities_diff_and_the_regression_first() -> None:
    before = {
        "facts": {"libvirt": libvirt_facts("before")},
        "verdicts": {"libvirt.guest-machine-types": "pass"},
    }
    after_lv = libvirt_facts("after")
    v = verdicts(after_lv)
    after = {
        "facts": {"libvirt": after_lv},
        "verdicts": {"libvirt.guest-machine-types": v["libvirt.guest-machine-types"][0]},
        "messages": {"libvirt.guest-machine-types": v["libvirt.guest-machine-types"][1]},
    }
    diff = compare_host(before, after)
    assert list(diff)[0] == "regressions"
    assert diff["regressions"][0]["check_id"] == "libvirt.guest-machine-types"
    assert "kvmqa-upgrade-old" in diff["regressions"][0]["message"]
    assert {"component": "qemu", "before": "7.2.22", "after": "10.0.2"} in diff["versions"]
    caps = {c["kind"]: c for c in diff["capabilities"]}
    assert "x86_64/pc-i440fx-2.3" in caps["machine types"]["lost"]
    assert "x86_64/pc-i440fx-10.0" in caps["machine types"]["gained"]
    assert "x86_64/pc-i440fx-5.2" in caps["deprecated machine types"]["gained"]


def test_the_terminal_names_a_change_alike_on_every_arch_once_in_version_order() -> None:
    before = {"facts": {"libvirt": libvirt_facts("before")}, "verdicts": {}}
    after = {"facts": {"libvirt": libvirt_facts("after")}, "verdicts": {}}
    caps = {c["kind"]: c for c in compare_host(before, after)["capabilities"]}
    text = capability_text(caps["machine types"])
    assert text.startswith("machine types (i686, x86_64): +pc-i440fx-8.0 ")
    assert "(+6 more) -pc-i440fx-1.4 " in text and text.endswith("-pc-i440fx-2.2 -pc-i440fx-2.3")
    deprecated = capability_text(caps["deprecated machine types"])
    assert "+pc-i440fx-2.9 +pc-i440fx-2.10 " in deprecated  # version order, not string order
