"""Baselines: save, change the host, compare — the changes and regressions a person must see after an upgrade.

The real test changes one ssh target without touching the machine: its sshd is restarted in a private
mount namespace where a CPU flag is gone, a package has a newer version and libvirt's socket is hidden
(tests/support/fleet.start_changed_sshd). The compare run uses -n 2, so facts come from worker files.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from kvmqa.policy.baseline import (
    BaselineError,
    compare,
    compare_host,
    comparison_lines,
    load_baseline,
    save_baseline,
)
from tests.support.fleet import (
    Fleet,
    drop_ssh_master,
    have_unshare,
    restart_plain_sshd,
    start_changed_sshd,
    start_fleet,
)
from tests.support.suite import run_suite

STAGES = (
    "suites/test_00_reach.py",
    "suites/test_10_cpu.py",
    "suites/test_20_packages.py",
    "suites/test_30_libvirt.py",
)


@pytest.fixture()
def two_hosts(tmp_path: Path) -> Iterator[Fleet]:
    f = start_fleet(tmp_path / "fleet", 2)
    yield f
    f.stop()


@pytest.mark.skipif(not have_unshare(), reason="needs unshare --mount (root)")
@pytest.mark.usefixtures("libvirtd")
def test_upgrade_changes_and_regressions_are_reported(tmp_path: Path, two_hosts: Fleet) -> None:
    baseline = tmp_path / "baseline.json"
    hosts = ["--hosts", two_hosts.hosts_arg(), *two_hosts.args()]
    before = run_suite(tmp_path / "before", *hosts, "--save-baseline", str(baseline), paths=STAGES)
    changed_name, same_name = two_hosts.names()
    assert before.verdict(changed_name, "libvirt.connect") == "pass", before.stdout[-2000:]
    saved = json.loads(baseline.read_text())
    assert sorted(saved["hosts"]) == sorted(two_hosts.names())
    assert saved["hosts"][changed_name]["verdicts"]["libvirt.socket"] == "pass"

    server, view = start_changed_sshd(two_hosts.servers[0], tmp_path / "changed")
    try:
        drop_ssh_master(server, two_hosts.known_hosts)
        after = run_suite(
            tmp_path / "after",
            *hosts,
            "-n",
            "2",
            "--dist",
            "loadgroup",
            "--compare-baseline",
            str(baseline),
            paths=STAGES,
        )
    finally:
        server.stop()
        drop_ssh_master(server, two_hosts.known_hosts)
        two_hosts.servers[0] = restart_plain_sshd(server)

    comparison = after.results["baseline_comparison"]
    host = comparison["hosts"][changed_name]
    assert {
        "component": f"package {view.package}",
        "before": view.old_version,
        "after": view.new_version,
    } in host["versions"]
    flags = next(c for c in host["capabilities"] if c["kind"] == "CPU flags")
    assert flags["lost"] == [view.flag_removed] and flags["gained"] == []
    regressed = {r["check_id"]: r for r in host["regressions"]}
    assert regressed["libvirt.socket"]["before"] == "pass" and regressed["libvirt.socket"]["after"] == "fail"
    assert "libvirt.connect" in regressed
    assert any("libvirt facts unavailable" in n for n in host["unavailable"])
    assert (
        comparison["hosts"][same_name]["regressions"] == []
        and comparison["hosts"][same_name]["versions"] == []
    )
    assert comparison["regressions"] == len(host["regressions"]) and comparison["changed_hosts"] == [
        changed_name
    ]
    # its own report section, the terminal and the exit status
    html = (after.reports / "report.html").read_text()
    assert 'id="kvmqa-baseline"' in html and "REGRESSION" in html and view.new_version in html
    assert "compared with baseline" in after.stdout
    line = next(x for x in after.stdout.splitlines() if x.startswith(f"{changed_name}: "))
    # regressions first, then the versions and capabilities that changed
    assert line.startswith(f"{changed_name}: REGRESSIONS: ") and f"; versions: package {view.package}" in line
    assert after.rc != 0


def test_regressions_alone_fail_the_run(tmp_path: Path) -> None:
    """A run whose own checks all pass still fails when a check regressed against the baseline."""
    reports = tmp_path / "r"
    first = run_suite(
        reports, "--save-baseline", str(tmp_path / "b.json"), paths=("suites/test_00_reach.py",)
    )
    assert first.rc == 0, first.stdout[-1500:]
    data = json.loads((tmp_path / "b.json").read_text())
    data["hosts"]["local"]["verdicts"]["reach.probe"] = (
        "fail"  # the past was worse: an improvement, not a failure
    )
    (tmp_path / "improved.json").write_text(json.dumps(data))
    improved = run_suite(
        reports, "--compare-baseline", str(tmp_path / "improved.json"), paths=("suites/test_00_reach.py",)
    )
    assert improved.rc == 0 and improved.results["baseline_comparison"]["hosts"]["local"]["improvements"]
    data["hosts"]["local"]["verdicts"]["reach.probe"] = "pass"
    data["hosts"]["ghost"] = {"facts": {}, "verdicts": {"reach.probe": "pass"}}
    (tmp_path / "ghost.json").write_text(json.dumps(data))
    ghost = run_suite(
        reports, "--compare-baseline", str(tmp_path / "ghost.json"), paths=("suites/test_00_reach.py",)
    )
    assert ghost.results["baseline_comparison"]["hosts"]["ghost"]["status"].startswith("missing")


def _facts(**over: object) -> dict[str, object]:
    base: dict[str, object] = {
        "kernel": {"release": "6.1.0-18-amd64"},
        "cpu": {"flags": ["vmx", "aes", "avx2"]},
        "packages": {
            "installed": {"qemu-system-x86": "1:7.2", "libvirt-daemon-system": "9.0.0"},
            "absent": ["ovmf"],
        },
        "libvirt": {
            "connected": True,
            "lib_version": "9.0.0",
            "hypervisor_version": "7.2.0",
            "capabilities": {
                "guests": [
                    {
                        "arch": "x86_64",
                        "machines": ["pc-q35-7.2", "pc-i440fx-7.2"],
                        "domain_types": ["kvm", "qemu"],
                    }
                ],
                "host_cpu_features": ["vmx"],
            },
            "domcapabilities": {
                "kvm": {
                    "usable_cpu_models": ["Haswell", "Skylake-Client"],
                    "features": ["sev"],
                    "cpu_modes": {"host-passthrough": True, "host-model": True},
                    "devices": ["disk"],
                },
                "qemu": {"error": "no emulator"},
            },
        },
        "vdsm": {
            "capabilities": {
                "ok": True,
                "software_version": "4.50.3",
                "software_revision": "1",
                "cpu_models": ["Haswell"],
            }
        },
        "engine": {"api": {"full_version": "4.5.4-1.el8"}},
    }
    base.update(over)
    return base


def test_compare_host_names_every_kind_of_change() -> None:
    after = _facts(
        kernel={"release": "6.1.0-21-amd64"},
        cpu={"flags": ["vmx", "avx2", "avx512f"]},
        packages={
            "installed": {"qemu-system-x86": "1:8.0", "libvirt-daemon-system": "9.0.0", "ovmf": "2023"},
            "absent": [],
        },
        vdsm={
            "capabilities": {
                "ok": True,
                "software_version": "4.50.5",
                "software_revision": "1",
                "cpu_models": [],
            }
        },
        engine={"api": {"full_version": "4.5.5-1.el8"}},
    )
    lv = json.loads(json.dumps(after["libvirt"]))
    lv["hypervisor_version"] = "8.0.0"
    lv["capabilities"]["guests"][0]["machines"] = ["pc-q35-8.0", "pc-i440fx-7.2"]
    lv["domcapabilities"]["kvm"]["cpu_modes"]["host-model"] = False
    lv["domcapabilities"]["kvm"]["usable_cpu_models"] = ["Haswell"]
    lv["domcapabilities"]["kvm"]["features"] = []
    after["libvirt"] = lv
    result = compare_host(
        {
            "facts": _facts(),
            "verdicts": {"cpu.hw-virt": "pass", "libvirt.connect": "pass", "cpu.tdx": "skip"},
        },
        {"facts": after, "verdicts": {"cpu.hw-virt": "warn", "libvirt.connect": "pass", "cpu.tdx": "pass"}},
    )
    versions = {v["component"]: (v["before"], v["after"]) for v in result["versions"]}
    assert versions == {
        "kernel": ("6.1.0-18-amd64", "6.1.0-21-amd64"),
        "qemu": ("7.2.0", "8.0.0"),
        "package qemu-system-x86": ("1:7.2", "1:8.0"),
        "package ovmf": ("(not installed)", "2023"),
        "vdsm": ("4.50.3-1", "4.50.5-1"),
        "engine": ("4.5.4-1.el8", "4.5.5-1.el8"),
    }
    caps = {c["kind"]: (c["gained"], c["lost"]) for c in result["capabilities"]}
    assert caps["CPU flags"] == (["avx512f"], ["aes"])
    assert caps["machine types"] == (["x86_64/pc-q35-8.0"], ["x86_64/pc-q35-7.2"])
    assert caps["kvm CPU modes"] == ([], ["host-model"])
    assert caps["kvm CPU models"] == ([], ["Skylake-Client"])
    assert caps["kvm features"] == ([], ["sev"])
    assert caps["vdsm CPU models"] == ([], ["Haswell"])
    assert result["regressions"] == [{"check_id": "cpu.hw-virt", "before": "pass", "after": "warn"}]
    line = comparison_lines(
        compare(
            {"hosts": {"h": {"facts": _facts(), "verdicts": {"cpu.hw-virt": "pass"}}}},
            {
                "h": {"facts": after, "verdicts": {"cpu.hw-virt": "warn"}},
                "new": {"facts": {}, "verdicts": {}},
            },
        )
    )
    assert "REGRESSIONS: cpu.hw-virt pass -> warn" in line[0] and line[1].startswith("new: new")


def test_bad_baseline_files_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    with pytest.raises(BaselineError, match="nope.json: baseline file not found"):
        load_baseline(missing)
    (tmp_path / "results.json").write_text('{"tool": "kvmqa", "results": []}')
    with pytest.raises(BaselineError, match="results.json: not a kvmqa baseline"):
        load_baseline(tmp_path / "results.json")
    save_baseline(tmp_path / "ok.json", {"h": {"facts": {}, "verdicts": {}}})
    data = json.loads((tmp_path / "ok.json").read_text())
    data["hosts"]["h"] = {"facts": {}}
    (tmp_path / "bad.json").write_text(json.dumps(data))
    with pytest.raises(BaselineError, match=r"bad.json: field 'hosts.h'"):
        load_baseline(tmp_path / "bad.json")
    run = run_suite(tmp_path / "r", "--compare-baseline", str(missing), paths=("suites/test_00_reach.py",))
    assert run.rc == 4 and f"{missing}: baseline file not found" in run.stdout
