"""The probe's raw output -> facts: parsing recorded outputs of real hosts, and the probe itself on this
host."""

from __future__ import annotations

import dataclasses
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from kvmqa.core.facts import HostFacts
from kvmqa.gather import facts as shared
from kvmqa.gather.facts import split_sections
from kvmqa.gather.install import parse_install
from kvmqa.stages.host import facts as host
from kvmqa.stages.packages.facts import Packages
from tests.support.facts import FACTS_DIR, parse, probe_script, probe_text


def test_recorded_debian_host_parses_completely() -> None:
    f = parse(probe_text("debian12-pvm"))
    assert f["os"]["family"] == "debian" and f["os"]["version_id"] == "12"
    assert "hypervisor" in f["cpu"]["flags"] and f["cpu"]["count"] >= 1
    assert f["devices"]["/dev/kvm"]["exists"] and f["devices"]["/dev/vhost-net"] == {"exists": False}
    assert f["cgroups"]["version"] in ("v1", "v2", "hybrid")
    assert f["packages"]["manager"] == "dpkg" and "qemu-system-x86" in f["packages"]["installed"]
    assert f["kvm_probe"]["api_version"] == 12 and f["kvm_probe"]["create_vm"] == "ok"
    assert f["virt_host_validate"]["installed"] and len(f["virt_host_validate"]["lines"]) >= 8
    assert f["init"]["systemd"] is False
    json.dumps(f)  # plain data


def test_recorded_ssh_sudo_probe_has_the_login_users_view() -> None:
    f = parse(probe_text("debian12-pvm-ssh-sudo"))
    assert f["probe"]["sudo_user"] == "kvmqa-ci" and f["probe"]["user"] == "root"
    assert f["kvm_probe_user"]["as_user"] == "kvmqa-ci"


def test_constructed_el9_parses_rpm_and_systemd() -> None:
    f = parse(probe_text("constructed-el9-intel"))
    assert f["os"]["family"] == "el" and f["packages"]["manager"] == "rpm"
    assert f["packages"]["installed"]["libvirt-daemon-kvm"] == "10.0.0-6.el9_4"  # '(none):' epoch dropped
    assert "vdsm" in f["packages"]["absent"]
    assert f["init"]["units"]["virtqemud.socket"] == {"active": "active", "enabled": "enabled"}
    assert f["cgroups"]["version"] == "v2"


def test_sections_split_and_rc() -> None:
    sec = split_sections("junk\n@@kvmqa:a rc=0\nx\ny\n@@kvmqa:b rc=3\n\n@@kvmqa:c rc=0\n")
    assert sec == {"a": (0, "x\ny"), "b": (3, ""), "c": (0, "")}


def test_probe_script_is_posix_sh_and_runs_under_dash(tmp_path: Path) -> None:
    """The probe must run with nothing but a POSIX sh (Debian's dash), read-only."""
    script = probe_script()
    out = subprocess.run(["dash", "-c", script], capture_output=True, text=True, timeout=120)
    sections = split_sections(out.stdout)
    for name in (
        "probe_env",
        "os_release",
        "cpuinfo",
        "modules",
        "devices",
        "cgroups",
        "iommu",
        "meminfo",
        "packages",
        "kvm_probe",
        "virt_host_validate",
        "init",
        "processes",
    ):
        assert name in sections, name
    f = parse(out.stdout)
    assert f["host"]["arch"] == subprocess.run(["uname", "-m"], capture_output=True, text=True).stdout.strip()


def test_a_stages_snippet_runs_only_where_the_stage_applies() -> None:
    """vdsm's probe.sh (stage roles: ovirt-host) is in an oVirt host's probe only."""
    assert "_kq_vdsm_sec" not in probe_script(("kvm-host",))
    assert "_kq_vdsm_sec" in probe_script(("ovirt-host",))


VIEWS = (
    shared.Probe,
    shared.HostInfo,
    shared.Tools,
    shared.OsRelease,
    shared.Kernel,
    shared.Security,
    shared.TargetInfo,
    shared.Reach,
    shared.InstallFacts,
    Packages,
    host.HostPackages,
    host.StaleBinaries,
    host.Hostname,
    host.TimeSync,
    host.Storage,
)


def plain(view: Any) -> dict[str, Any]:
    """A view as the plain section it was built from (raw keys, lists): what facts.json holds."""
    return json.loads(
        json.dumps(
            {
                f.metadata.get("key", f.name): dataclasses.asdict(view)[f.name]
                for f in dataclasses.fields(view)
            }
        )
    )


def recorded() -> list[HostFacts]:
    facts = [parse(p.read_text()) for p in sorted(FACTS_DIR.glob("*.probe.txt"))]
    facts += [HostFacts.load(p) for p in sorted(FACTS_DIR.glob("*.json"))]
    extra = {
        "target": {"name": "h", "url": "ssh://h", "roles": ["kvm-host"], "sudo": True},
        "reach": {"error": "h: cannot reach h", "unusable": True, "stderr": "refused"},
        "install": {
            "rc": 0,
            **parse_install(
                "manager=dpkg\napt_lists=3\npkg.vim=absent\n"
                "live=virtqemud virtlogd\nmodules_load=kvm_intel\n"
                "modprobe=/usr/sbin/modprobe\nuser_groups=a b"
            ),
        },
    }
    return [HostFacts({**f, **extra}) for f in facts]


@pytest.mark.parametrize("view", VIEWS, ids=lambda v: v.__name__)
def test_a_view_holds_every_key_of_its_recorded_section_unchanged(view: Any) -> None:
    """The types say what the parsers write: no key of a recorded section is dropped or defaulted."""
    for facts in recorded():
        raw = facts.get(view.SECTION)
        if isinstance(raw, dict):
            got = plain(facts.view(view))
            assert {k: got.get(k) for k in raw} == json.loads(json.dumps(raw)), view.SECTION
