"""first_vm checks over observation dicts recorded from real boots on this machine (fixtures/first_vm/)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from kvmqa.config.profile import Profile
from kvmqa.core.facts import HostFacts
from kvmqa.core.gate import evaluate_stage
from kvmqa.core.model import Verdict
from kvmqa.stages.first_vm.boot import BootResult
from kvmqa.stages.first_vm.checks import CHECKS, deciding_boot
from kvmqa.stages.first_vm.console import read_console
from kvmqa.stages.first_vm.progress import BootProgress

SAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "first_vm"


def sample(name: str) -> dict[str, Any]:
    return json.loads((SAMPLES / f"{name}.json").read_text())


def verdicts(obs: dict[str, Any]) -> dict[str, tuple[Verdict, str]]:
    facts = HostFacts(first_vm=obs)
    return {f.check_id: (f.verdict, f.message) for f in evaluate_stage(CHECKS, "h", facts, Profile())}


def kvm_worked(obs: dict[str, Any]) -> dict[str, Any]:
    """What a host with working KVM records: the emulated boot relabelled (only the labels differ)."""
    obs = copy.deepcopy(obs)
    boot = obs["boots"].pop("emulated")
    boot.update(virt_type="kvm", label="KVM")
    boot["accelerator"]["kvm"]["enabled"] = True
    obs["boots"] = {"kvm": boot}
    obs["settings"]["allow_emulation"] = False
    return obs


def test_kvm_failure_with_emulation_allowed_warns_with_evidence_and_emulated_boot_decides() -> None:
    v = verdicts(sample("kvm-fails-emulation-allowed"))
    verdict, message = v["first_vm.kvm-boot"]
    assert verdict == Verdict.WARN
    assert "no console output within 10s" in message and "query-kvm enabled=true" in message
    assert "RIP=" in message and "qemu log:" in message
    assert v["first_vm.emulated-boot"][0] == Verdict.PASS and "EMULATED" in v["first_vm.emulated-boot"][1]
    for check in ("boot-marker", "disk-roundtrip", "dhcp-lease", "accelerator", "virt-install", "cleanup"):
        assert v[f"first_vm.{check}"][0] == Verdict.PASS, (check, v[f"first_vm.{check}"])
    assert "EMULATED" in v["first_vm.boot-marker"][1] and "1 vCPU" in v["first_vm.boot-marker"][1]
    assert v["first_vm.timings"][0] == Verdict.INFO and "poweroff=" in v["first_vm.timings"][1]
    assert v["first_vm.guest-image"][0] == Verdict.SKIP


def test_kvm_failure_without_emulation_fails_and_skips_what_needs_a_guest() -> None:
    v = verdicts(sample("kvm-fails-no-emulation"))
    assert v["first_vm.kvm-boot"][0] == Verdict.FAIL and "outcome=no-output" in v["first_vm.kvm-boot"][1]
    assert v["first_vm.emulated-boot"][0] == Verdict.SKIP
    assert (
        v["first_vm.boot-marker"][0] == Verdict.SKIP and "first_vm.kvm-boot" in v["first_vm.boot-marker"][1]
    )
    assert v["first_vm.disk-roundtrip"][0] == Verdict.SKIP
    assert v["first_vm.virt-install"][0] == Verdict.SKIP
    assert v["first_vm.cleanup"][0] == Verdict.PASS


def test_kvm_warn_profile_makes_the_kvm_failure_a_warning() -> None:
    obs = sample("kvm-fails-no-emulation")
    obs["settings"]["kvm"] = "warn"
    assert verdicts(obs)["first_vm.kvm-boot"][0] == Verdict.WARN


def test_a_working_kvm_host_passes_and_decides_on_the_kvm_boot() -> None:
    obs = kvm_worked(sample("kvm-fails-emulation-allowed"))
    assert deciding_boot(HostFacts(first_vm=obs)).label == "KVM"
    v = verdicts(obs)
    assert v["first_vm.kvm-boot"][0] == Verdict.PASS
    assert v["first_vm.emulated-boot"][0] == Verdict.SKIP
    assert (
        v["first_vm.accelerator"][0] == Verdict.PASS and "KVM: enabled=true" in v["first_vm.accelerator"][1]
    )
    # with emulation allowed, a host whose KVM guest booted gets no emulated boot (the gatherer skips it)
    obs["settings"]["allow_emulation"] = True
    verdict, message = verdicts(obs)["first_vm.emulated-boot"]
    assert verdict == Verdict.SKIP and "the KVM guest booted: no emulated boot needed" in message


def test_silent_tcg_fallback_under_a_kvm_label_is_caught() -> None:
    obs = kvm_worked(sample("kvm-fails-emulation-allowed"))
    obs["boots"]["kvm"]["accelerator"]["kvm"]["enabled"] = False
    verdict, message = verdicts(obs)["first_vm.accelerator"]
    assert verdict == Verdict.FAIL and "KVM boot: query-kvm enabled=false, expected true" in message


def test_lease_mismatch_and_missing_lease_fail() -> None:
    obs = sample("kvm-fails-emulation-allowed")
    obs["boots"]["emulated"]["lease"]["ip"] = "192.168.150.250"
    verdict, message = verdicts(obs)["first_vm.dhcp-lease"]
    assert verdict == Verdict.FAIL and "host lease says 192.168.150.250" in message
    obs["boots"]["emulated"]["lease"] = None
    obs["boots"]["emulated"]["timings"]["lease_wait_s"] = 20.0
    verdict, message = verdicts(obs)["first_vm.dhcp-lease"]
    assert (
        verdict == Verdict.FAIL
        and "has no lease" in message
        and "asked for 20 s after the guest stopped" in message
    )


def test_leases_libvirt_could_not_list_are_an_error_not_a_missing_lease() -> None:
    obs = sample("kvm-fails-emulation-allowed")
    obs["boots"]["emulated"]["lease"] = None
    obs["boots"]["emulated"]["lease_error"] = "Network not found: no network with matching name 'kvmqa-net-x'"
    verdict, message = verdicts(obs)["first_vm.dhcp-lease"]
    assert (
        verdict == Verdict.ERROR and "could not list the leases" in message and "Network not found" in message
    )


def test_disk_failure_and_wrong_vcpu_count_fail() -> None:
    obs = sample("kvm-fails-emulation-allowed")
    obs["boots"]["emulated"]["markers"]["DISK"] = {"status": "fail", "token": "ab", "read": ""}
    assert verdicts(obs)["first_vm.disk-roundtrip"][0] == Verdict.FAIL
    obs["boots"]["emulated"]["vcpus"] = 2
    verdict, message = verdicts(obs)["first_vm.boot-marker"]
    assert verdict == Verdict.FAIL and "guest sees 1 vCPUs, the domain has 2" in message


def test_guest_panic_fails_the_boot_with_the_console_tail() -> None:
    v = verdicts(sample("emulated-panic"))
    verdict, message = v["first_vm.emulated-boot"]
    assert verdict == Verdict.FAIL
    assert "Kernel panic" in message or "sysrq" in message.lower() or "KVMQA-PANIC" in message


def test_leftovers_fail_cleanup() -> None:
    obs = sample("kvm-fails-emulation-allowed")
    obs["leftovers"] = ["domain kvmqa-tcg-local-abc123"]
    verdict, message = verdicts(obs)["first_vm.cleanup"]
    assert verdict == Verdict.FAIL and "kvmqa-tcg-local-abc123" in message


def test_virt_install_missing_is_a_warning() -> None:
    obs = sample("kvm-fails-emulation-allowed")
    obs["virt_install"] = {"skipped": "virt-install is not installed on the host", "missing": True}
    assert verdicts(obs)["first_vm.virt-install"][0] == Verdict.WARN


def test_guest_image_agent_answer_and_silence() -> None:
    obs = sample("kvm-fails-emulation-allowed")
    image = copy.deepcopy(obs["boots"]["emulated"])
    image["markers"]["CLOUDINIT"] = {"status": "ok"}
    image["markers"]["AGENT"] = {"present": "yes"}
    image.update(
        image="/images/x.qcow2",
        seed={"tool": "genisoimage", "format": "iso", "label": "cidata"},
        agent={"ok": True, "reply": {}},
    )
    obs["guest_image"] = image
    verdict, message = verdicts(obs)["first_vm.guest-image"]
    assert verdict == Verdict.PASS and "guest agent answered guest-ping" in message
    image["agent"] = {"ok": False, "error": "Guest agent is not responding"}
    verdict, message = verdicts(obs)["first_vm.guest-image"]
    assert verdict == Verdict.WARN and "not responding" in message


def test_a_check_never_crashes_on_an_empty_observation() -> None:
    v = verdicts({})
    assert all(verdict in (Verdict.SKIP, Verdict.INFO) for verdict, _ in v.values()), v


def recorded_boot(name: str, key: str = "emulated") -> dict[str, Any]:
    """A BootResult recorded from a real boot on this machine (tests/test_first_vm_outcomes.py makes them
    happen)."""
    return {"boots": {key: sample(name)}, "settings": {"allow_emulation": True, "boot_timeout": 3}}


def test_recorded_still_booting_guest_is_not_called_dead_and_the_hint_says_raise_the_timeout() -> None:
    facts = HostFacts(first_vm=recorded_boot("tcg-still-booting"))
    finding = {f.check_id: f for f in evaluate_stage(CHECKS, "h", facts, Profile())}["first_vm.emulated-boot"]
    assert finding.verdict == Verdict.FAIL
    assert "still booting at the 3.0 s deadline (console advancing, kernel at 1.0 s" in finding.message
    assert "kvmqa destroyed it (at the deadline)" in finding.message
    assert "stopped" not in finding.message and "no console output" not in finding.message
    assert "raise first_vm.boot_timeout" in finding.hint and "now 3 s" in finding.hint


def test_recorded_resets_name_the_kernel_time_and_how_the_reset_showed() -> None:
    for name, how in (
        ("tcg-reset-sysrq", "the console shows 2 kernel boots"),
        ("tcg-reset-reboot", "the kernel printed 'reboot: Restarting system'"),
    ):
        v = verdicts(recorded_boot(name))
        verdict, message = v["first_vm.emulated-boot"]
        reached = sample(name)["reset_at_kernel_s"]
        assert verdict == Verdict.FAIL and f"guest reset at kernel time {reached:.1f} s ({how})" in message
        assert "without the KVMQA-DONE marker" not in message and "outcome=reset" in message


def test_kvmqa_s_own_destroy_and_a_destroy_from_outside_are_told_apart() -> None:
    mine = sample("tcg-still-booting")
    assert mine["stopped_by"] == "kvmqa"
    assert "kvmqa destroyed it" in verdicts(recorded_boot("tcg-still-booting"))["first_vm.emulated-boot"][1]
    silent = copy.deepcopy(mine)  # the same guest, had its console stopped 2 s after start
    silent.update(outcome="timeout", error=None)
    silent["timings"]["last_byte_s"] = 2.0
    message = verdicts({"boots": {"emulated": silent}, "settings": {}})["first_vm.emulated-boot"][1]
    assert (
        "no power-off within the 3.0 s deadline and the console stopped advancing (console silent since 2.0 s"
        in message
    )
    assert "kvmqa destroyed it (at the deadline)" in message and "still booting" not in message
    outside = copy.deepcopy(mine)
    outside.update(
        outcome="destroyed", state="shutoff/destroyed", stopped_by="", stop_reason="", kernel_s=2.5
    )
    obs = {"boots": {"emulated": outside}, "settings": {"allow_emulation": True}}
    message = verdicts(obs)["first_vm.emulated-boot"][1]
    assert "destroyed from outside this boot (shutoff/destroyed, kernel at 2.5 s)" in message
    assert "kvmqa destroyed it" not in message and "by itself" not in message
    stopped = dict(outside, outcome="stopped", state="shutoff/shutdown")
    message = verdicts({"boots": {"emulated": stopped}, "settings": {}})["first_vm.emulated-boot"][1]
    assert (
        "guest powered off by itself without the KVMQA-DONE marker (shutoff/shutdown, kernel at 2.5 s)"
        in message
    )


def test_console_reading_counts_boots_and_the_time_reached_before_a_reset() -> None:
    text = sample("tcg-reset-sysrq")["console_tail"]
    reading = read_console(text)
    assert reading.reset and not reading.restart_requested
    quiet = (
        "KVMQA-BOOT kernel=k cpus=1 mem_kb=1 up=4.20\nKVMQA-RESET requested up=4.30\nKVMQA-BOOT kernel=k "
        "up=1.10\n"
    )
    reading = read_console(quiet)
    assert reading.boots == 2 and reading.reset_at_kernel_s == 4.3 and reading.kernel_s == 1.1
    assert (
        read_console("[    1.250000] x\n[    9.500000] reboot: Restarting system\n").reset_at_kernel_s == 9.5
    )
    assert read_console("").kernel_s is None and not read_console("").reset


@pytest.mark.parametrize(
    "name", ["lab-bookworm-nested-kvm-pass", "lab-bookworm-smp1-nested-lab-profile-pass"]
)
def test_the_recorded_nested_kvm_boots_on_a_lab_host_pass(name: str) -> None:
    obs = sample(name)
    v = verdicts(obs)
    assert v["first_vm.kvm-boot"][0] == Verdict.PASS and v["first_vm.accelerator"][0] == Verdict.PASS
    assert "KVM: enabled=true" in v["first_vm.accelerator"][1]
    if "host_kernel_log" in obs:  # KVM's unhandled-MSR line, recorded there, is known-harmless
        assert any("Unhandled WRMSR" in e for e in obs["host_kernel_log"]["errors"])
        assert v["first_vm.host-dmesg"][0] == Verdict.PASS and "known-harmless" in v["first_vm.host-dmesg"][1]


def test_progress_lines_start_after_a_few_seconds_then_come_every_ten() -> None:
    lines: list[str] = []
    progress = BootProgress("lab1", lines.append)  # after 5 s, then every 10 s
    result = BootResult("kvmqa-kvm-lab1-abc123", "kvm", "KVM")
    reading = read_console("[    9.312000] virtio_net virtio1 enp0s2: renamed from eth0\n")
    for elapsed in (0.5, 4.9, 5.0, 5.1, 14.9, 15.2, 40.0, 41.0):
        progress(result, elapsed, reading)
    assert lines == [
        "kvmqa first_vm [lab1] kvmqa-kvm-lab1-abc123 KVM: 5 s, kernel at 9.3 s, "
        "console: '[    9.312000] virtio_net virtio1 enp0s2: renamed from eth0'",
        *[
            f"kvmqa first_vm [lab1] kvmqa-kvm-lab1-abc123 KVM: {s} s, kernel at 9.3 s, "
            "console: '[    9.312000] virtio_net virtio1 enp0s2: renamed from eth0'"
            for s in (15, 40)
        ],
    ]
    silent = BootProgress("h", lines.append, after=0, every=1)
    silent(BootResult("g", "qemu", "EMULATED"), 0.0, read_console(""))
    assert lines[-1] == "kvmqa first_vm [h] g EMULATED: 0 s, no kernel output yet, console: (nothing yet)"
