"""packages and libvirt checks over recorded facts, and the virt-host-validate comparison."""

from __future__ import annotations

import json

from kvmqa.config.profile import Profile
from kvmqa.core.gate import evaluate_stage
from kvmqa.stages import builtin
from kvmqa.stages.libvirt.checks import CHECKS as LIBVIRT
from kvmqa.stages.libvirt.checks import compare_with_vhv
from kvmqa.stages.libvirt.facts import VirtHostValidate
from kvmqa.stages.packages.checks import CHECKS as PACKAGES
from tests.support.facts import facts, parse, probe_text, with_section

LIBVIRT_FACTS = {
    "connected": True,
    "uri": "qemu:///system",
    "lib_version": "9.0.0",
    "hypervisor_version": "7.2.22",
    "connect_s": 0.01,
    "capabilities": {
        "guests": [{"os_type": "hvm", "arch": "x86_64", "domain_types": ["kvm", "qemu"], "machines": ["pc"]}]
    },
    "domcapabilities": {
        "kvm": {
            "machine": "pc-i440fx-7.2",
            "max_vcpus": 255,
            "cpu_modes": {"host-passthrough": True},
            "loader_supported": True,
            "loader_values": ["/usr/share/OVMF/OVMF_CODE.fd"],
        },
        "qemu": {"machine": "pc-i440fx-7.2"},
    },
    "networks": [
        {
            "name": "default",
            "active": True,
            "autostart": True,
            "bridge": "virbr0",
            "forward": "nat",
            "address": "192.168.122.1",
        }
    ],
    "pools": [
        {
            "name": "default",
            "active": True,
            "autostart": True,
            "type": "dir",
            "path": "/var/lib/libvirt/images",
            "capacity": 100 * 1024**3,
            "available": 50 * 1024**3,
        }
    ],
}


def run(stage, f, profile=None):
    return {
        x.check_id: (x.verdict.value, x.message) for x in evaluate_stage(stage, "h", f, profile or Profile())
    }


def test_debian_packages_recorded_versions() -> None:
    v = run(PACKAGES, facts("debian12-pvm"))
    assert v["packages.distro"][0] == "pass"
    assert v["packages.qemu"] == ("pass", "qemu-system-x86 1:7.2+dfsg-7+deb12u18+b3 (minimum 6.2.0)")
    assert v["packages.libvirt-daemon"][0] == "pass"


def test_el9_packages_through_rpm() -> None:
    v = run(PACKAGES, facts("constructed-el9-intel"))
    assert v["packages.manager"][0] == "pass"
    assert v["packages.qemu"][1].startswith("qemu-kvm 17:8.2.0")


def test_minimum_versions_from_the_profile() -> None:
    v = run(PACKAGES, facts("debian12-pvm"), Profile(min_versions={"qemu": "8.2", "libvirt-daemon": "9.0"}))
    assert v["packages.qemu"][0] == "fail" and "older than the profile's minimum 8.2" in v["packages.qemu"][1]
    assert v["packages.libvirt-daemon"][0] == "pass"


def test_missing_ovmf_is_a_warning_and_missing_qemu_a_failure() -> None:
    text = probe_text("debian12-pvm")
    body = "\n".join(
        line
        for line in text.split("@@kvmqa:packages rc=0\n")[1].split("@@kvmqa:")[0].splitlines()
        if not line.startswith(("ovmf", "qemu-system-x86"))
    )
    v = run(PACKAGES, parse(with_section(text, "packages", body)))
    assert v["packages.ovmf"][0] == "warn"
    assert v["packages.qemu"][0] == "fail" and "qemu-system-x86" in v["packages.qemu"][1]


def test_unknown_distro_is_a_clear_error() -> None:
    f = facts("debian12-pvm", os_release='ID=plan9\nPRETTY_NAME="Plan 9"')
    v = run(PACKAGES, f)
    assert v["packages.distro"][0] == "fail"
    assert "unknown distro ID='plan9'" in v["packages.distro"][1]
    assert v["packages.qemu"][0] == "skip" and "packages.distro" in v["packages.qemu"][1]


def test_id_like_maps_derivatives() -> None:
    f = facts("debian12-pvm", os_release='ID=linuxmint\nID_LIKE="ubuntu debian"')
    assert f.family == "debian"


def test_libvirt_monolithic_without_systemd() -> None:
    f = facts("debian12-pvm")
    f["libvirt"] = LIBVIRT_FACTS
    v = run(LIBVIRT, f)
    assert v["libvirt.daemon"][0] == "pass" and "monolithic libvirtd" in v["libvirt.daemon"][1]
    assert "no systemd" in v["libvirt.daemon"][1]
    for cid in ("libvirt.connect", "libvirt.kvm-guest", "libvirt.default-network", "libvirt.storage-pool"):
        assert v[cid][0] == "pass", (cid, v[cid])


def test_libvirt_modular_with_systemd() -> None:
    f = facts("constructed-el9-intel")
    f["libvirt"] = LIBVIRT_FACTS
    v = run(LIBVIRT, f)
    assert v["libvirt.daemon"][0] == "pass" and "modular virtqemud" in v["libvirt.daemon"][1]
    assert v["libvirt.socket"][1].startswith("/run/libvirt/virtqemud-sock")


def test_daemon_down_skips_connection_checks_naming_it() -> None:
    f = facts("debian12-pvm", processes="sshd\nvirtlogd", sockets="")
    f["libvirt"] = {"connected": False, "uri": "qemu:///system", "error": "Failed to connect socket"}
    v = run(LIBVIRT, f)
    assert v["libvirt.daemon"][0] == "fail"
    assert v["libvirt.connect"][0] == "skip" and "libvirt.daemon" in v["libvirt.connect"][1]
    assert v["libvirt.kvm-guest"][0] == "skip"


def test_no_kvm_guest_type_and_inactive_network_and_no_pool() -> None:
    f = facts("debian12-pvm")
    lv = json.loads(json.dumps(LIBVIRT_FACTS))
    lv["capabilities"]["guests"][0]["domain_types"] = ["qemu"]
    lv["networks"][0]["active"] = False
    lv["pools"] = [
        {
            "name": "kvmqa-pool-x",
            "active": True,
            "autostart": False,
            "type": "dir",
            "path": "/x",
            "capacity": 1,
            "available": 1,
        }
    ]
    f["libvirt"] = lv
    v = run(LIBVIRT, f)
    assert v["libvirt.kvm-guest"][0] == "fail" and "domaintype=kvm" in v["libvirt.kvm-guest"][1]
    assert v["libvirt.default-network"][0] == "fail" and "inactive" in v["libvirt.default-network"][1]
    assert v["libvirt.storage-pool"][0] == "fail"  # kvmqa's own pools don't count


def test_virt_host_validate_disagreements_have_reasons() -> None:
    f = facts("constructed-el9-intel")
    f["libvirt"] = LIBVIRT_FACTS
    v = run(LIBVIRT, f)
    msg = v["libvirt.virt-host-validate"][1]
    assert "cgroup 'devices'" in msg and "v2" in msg  # its cgroup v2 false alarm, explained
    assert "secure guest" in msg


def test_vhv_mapping_on_this_machine_agrees_on_hw_virt() -> None:
    f = facts("debian12-pvm")
    ours = {"cpu.hw-virt": "fail", "cpu.tun": "pass", "cpu.vhost-net": "warn"}
    rows = compare_with_vhv(f.view(VirtHostValidate).lines, ours)
    hw = next(r for r in rows if "hardware virtualization" in r["vhv_check"])
    assert hw["agree"] == "yes"
    assert next(r for r in rows if "/dev/net/tun" in r["vhv_check"])["agree"] == "yes"


def test_lab_host_daemon_names_systemd_and_socket_activation_and_vhv_access_is_explained() -> None:
    """Recorded on the bookworm lab host (systemd, libvirtd.socket active), reached as qa with --sudo."""
    f = facts("lab-bookworm-ssh-sudo")
    v = {x.check_id: x for x in evaluate_stage(LIBVIRT, "h", f, Profile())}
    assert v["libvirt.daemon"].verdict.value == "pass"
    assert "(systemd, socket activation: libvirtd.socket)" in v["libvirt.daemon"].message
    rows = {r["vhv_check"]: r for r in v["libvirt.virt-host-validate"].details["rows"]}
    access = next(r for k, r in rows.items() if "/dev/kvm is accessible" in k)
    assert access["vhv"] == "PASS" and access["kvmqa"] == "warn" and "qemu:///session" in access["reason"]


# --- issue 13: nova's version floors, the host's own architecture, launchSecurity
# -------------------------------
def test_default_floors_are_novas_and_a_profile_overrides_them() -> None:
    f = facts("debian12-pvm")
    f["libvirt"] = LIBVIRT_FACTS  # libvirt 9.0.0, QEMU 7.2.22 (Debian 12, recorded here)
    v = run(LIBVIRT, f)["libvirt.versions"]
    assert v[0] == "warn"
    assert (
        "meets the minimum (libvirt >= 8.0.0, qemu >= 6.2.0) but is below the recommended libvirt 9.0.0 < "
        "10.0.0; "
        "qemu 7.2.22 < 8.2.2" in v[1]
    )
    old = json.loads(json.dumps(LIBVIRT_FACTS))
    old.update(lib_version="7.0.0", hypervisor_version="5.2.0")
    f["libvirt"] = old
    low = run(LIBVIRT, f)["libvirt.versions"]
    assert low[0] == "fail" and "libvirt 7.0.0 < 8.0.0; qemu 5.2.0 < 6.2.0" in low[1]
    f["libvirt"] = LIBVIRT_FACTS
    from kvmqa.config.profile import profile_from_dict

    relaxed = profile_from_dict(
        {"warn_versions": {"libvirt": "0", "qemu": "7.0"}}, "<test>", builtin().columns()
    )
    assert relaxed.min_versions == {"libvirt": "8.0.0", "qemu": "6.2.0"}
    assert run(LIBVIRT, f, relaxed)["libvirt.versions"] == (
        "pass",
        "libvirt 9.0.0, QEMU 7.2.22 (minimum libvirt >= 8.0.0, qemu >= 6.2.0)",
    )
    stricter = profile_from_dict({"min_versions": {"qemu": "8.0"}}, "<test>", builtin().columns())
    assert run(LIBVIRT, f, stricter)["libvirt.versions"][0] == "fail"


def test_kvm_guest_is_looked_for_in_the_host_architecture() -> None:
    f = facts("constructed-debian12-aarch64", processes="libvirtd\nvirtlogd")
    lv = json.loads(json.dumps(LIBVIRT_FACTS))
    lv["capabilities"] = {
        "host_arch": "aarch64",
        "guests": [
            {"os_type": "hvm", "arch": "aarch64", "domain_types": ["kvm", "qemu"], "machines": ["virt"]},
            {"os_type": "hvm", "arch": "x86_64", "domain_types": ["qemu"], "machines": ["pc"]},
        ],
    }
    f["libvirt"] = lv
    v = run(LIBVIRT, f)["libvirt.kvm-guest"]
    assert v[0] == "pass" and v[1].startswith("aarch64 hvm guests: domain types kvm, qemu")
    assert "first_vm" not in v[1]  # the first VM has an aarch64 kit: it proves a KVM boot there
    s390 = json.loads(json.dumps(lv))
    s390["capabilities"]["host_arch"] = "s390x"
    s390["capabilities"]["guests"][0]["arch"] = "s390x"
    f["libvirt"] = s390
    v = run(LIBVIRT, f)["libvirt.kvm-guest"]
    assert v[0] == "pass" and "guest kits for x86_64, aarch64 only" in v[1], v
    lv["capabilities"]["guests"][0]["domain_types"] = ["qemu"]
    f["libvirt"] = lv  # set again: a typed view is rebuilt when its section is set, not when it is edited
    v = run(LIBVIRT, f)["libvirt.kvm-guest"]
    assert v[0] == "fail" and "arch=aarch64 domaintype=kvm" in v[1]


def test_domcapabilities_of_this_machine_and_launch_security_sectypes() -> None:
    from pathlib import Path

    from kvmqa.stages.libvirt.gather import parse_domcapabilities
    from tests.support.facts import FACTS_DIR

    xml = Path(
        FACTS_DIR / "debian12-domcapabilities-qemu-x86_64.xml"
    ).read_text()  # recorded here, libvirt 9.0.0
    here = parse_domcapabilities(xml)
    assert here["launch_security"] == [] and "sev" not in here["features"]  # <sev supported='no'/>
    snp = xml.replace(
        "<sev supported='no'/>",
        "<sev supported='yes'><cbitpos>51</cbitpos></sev>"
        "<launchSecurity supported='yes'><enum name='sectype'><value>sev</value><value>sev-snp</value>"
        "</enum></launchSecurity>",
    )
    caps = parse_domcapabilities(snp)  # constructed: the shape libvirt >= 10.x documents (formatdomaincaps)
    assert caps["launch_security"] == ["sev", "sev-snp"]
    assert {"launchSecurity.sev-snp", "launchSecurity.sev"} <= set(caps["features"])  # what baselines compare
    f = facts("constructed-el9-intel")
    lv = json.loads(json.dumps(LIBVIRT_FACTS))
    lv["domcapabilities"]["kvm"]["launch_security"] = caps["launch_security"]
    f["libvirt"] = lv
    assert "launch security: sev, sev-snp" in run(LIBVIRT, f)["libvirt.domcapabilities"][1]
