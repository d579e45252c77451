"""The first VM under real (nested) KVM on a lab host, through `./run suite` as a user runs it (tests/lab).

The lab host is a Debian KVM host booted under TCG with `-cpu max` (AMD-V emulated, kvm_amd nested=1); kvmqa
reaches it over ssh with sudo and boots its guest there through libvirt with `-accel kvm`. kvmqa's verdicts
are
compared with what the lab host says itself, read here over plain ssh: the QEMU command line libvirt logged,
dnsmasq's DHCPACK in the journal, and the kernel log.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from kvmqa.stages.first_vm.checks import HARMLESS_KERNEL_ERRORS
from tests.support.suite import run_suite

ROOT = Path(__file__).resolve().parents[1]
PROFILE = ROOT / "fixtures" / "profiles" / "nested-lab.yaml"
pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def first_vm_run(
    lab_bookworm: Any, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Any, Any, dict[str, Any]]:
    lab = lab_bookworm
    assert lab.sudo("cat /sys/module/kvm_amd/parameters/nested").stdout.strip() in (
        "1",
        "Y",
    )  # a nested KVM host
    assert lab.sudo("test -c /dev/kvm && grep -cw svm /proc/cpuinfo").returncode == 0
    run = run_suite(
        tmp_path_factory.mktemp("lab-first-vm"),
        *lab.suite_args(),
        "--profile",
        str(PROFILE),
        paths=("suites/test_60_first_vm.py",),
        timeout=1200,
    )
    facts = json.loads(next(run.reports.glob("*/facts.json")).read_text())["first_vm"]
    return lab, run, facts


def test_the_first_vm_boots_under_nested_kvm_labelled_kvm(
    first_vm_run: tuple[Any, Any, dict[str, Any]],
) -> None:
    lab, run, obs = first_vm_run
    host = lab.address
    kvm = obs["boots"]["kvm"]
    assert run.verdict(host, "first_vm.kvm-boot") == "pass", (
        kvm.get("outcome"),
        kvm.get("error"),
        run.stdout[-3000:],
    )
    assert kvm["label"] == "KVM" and kvm["virt_type"] == "kvm" and "emulated" not in obs["boots"]
    assert run.verdict(host, "first_vm.emulated-boot") == "skip"
    assert kvm["accelerator"]["kvm"] == {"enabled": True, "present": True}
    assert run.verdict(host, "first_vm.accelerator") == "pass"
    # ground truth: the QEMU that libvirt started on the lab host ran with KVM (its own log of the command
    # line)
    qemu_log = lab.sudo(f"cat /var/log/libvirt/qemu/{kvm['name']}.log").stdout
    assert re.search(r"-accel kvm|accel=kvm", qemu_log) and "-accel tcg" not in qemu_log, qemu_log[:2000]
    assert "KVMQA-DONE" in Path(kvm["console_file"]).read_text()


def test_boot_marker_disk_and_dhcp_are_proven_from_inside_and_match_the_lab_host(
    first_vm_run: tuple[Any, Any, dict[str, Any]],
) -> None:
    lab, run, obs = first_vm_run
    host, kvm = lab.address, obs["boots"]["kvm"]
    for check in ("boot-marker", "disk-roundtrip", "dhcp-lease", "cleanup"):
        assert run.verdict(host, f"first_vm.{check}") == "pass", run.findings()[(host, f"first_vm.{check}")][
            "message"
        ]
    boot = kvm["markers"]["BOOT"]
    assert boot["kernel"] == obs["kit"]["kernel_release"] and boot["cpus"] == "1"
    assert kvm["markers"]["DISK"]["status"] == "ok"
    net = kvm["markers"]["NET"]
    # ground truth: the lab host's dnsmasq acknowledged exactly that address to exactly that MAC
    acks = lab.sudo("journalctl -q --no-pager -o cat -t dnsmasq-dhcp | grep DHCPACK").stdout
    assert re.search(rf"DHCPACK\(\S+\) {re.escape(net['ip'])} {re.escape(net['mac'])}", acks), acks[-1000:]
    # nothing of the stage is left on the lab host (read there, not from kvmqa's own sweep)
    created = {item.split()[1].split("/")[-1] for item in obs["workspace"]["created"]}
    listed = lab.sudo(
        "virsh -q list --all --name; virsh -q net-list --all --name; virsh -q pool-list --all --name; "
        "ls -1 /var/lib/libvirt/images"
    ).stdout.split()
    assert kvm["name"] in created and not created & set(listed), created & set(listed)


def test_the_host_kernel_log_verdict_matches_the_lab_host_dmesg(
    first_vm_run: tuple[Any, Any, dict[str, Any]],
) -> None:
    lab, run, obs = first_vm_run
    log = obs["host_kernel_log"]
    assert log["source"] == "dmesg" and "error" not in log
    truth = []
    for line in lab.sudo("dmesg -r").stdout.splitlines():
        match = re.match(r"^<(\d+)>\[\s*(\d+\.\d+)\]\s?(.*)$", line)
        if match and float(match.group(2)) > log["mark_s"] and int(match.group(1)) & 7 <= 3:
            truth.append(match.group(3).strip())
    assert [e.split("] ", 1)[1] for e in log["errors"]] == truth[: len(log["errors"])]
    # KVM's "Unhandled WRMSR(0xc0010007)" comes with every nested boot here: known-harmless, so not a failure
    real = [
        line
        for line in truth[: len(log["errors"])]
        if not any(re.search(p, line) for p in HARMLESS_KERNEL_ERRORS.values())
    ]
    assert run.verdict(lab.address, "first_vm.host-dmesg") == ("fail" if real else "pass")
