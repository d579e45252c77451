"""first_vm.host-dmesg: new host kernel messages at level err or worse while the first VM ran fail the stage.

For real on this machine: a stage run during which an err-level line reaches the kernel log (written to
/dev/kmsg while the guest runs), compared with dmesg read here independently; the same reader as an
unprivileged user, who cannot read the log (kernel.dmesg_restrict), gives an honest "not checked".
"""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path
from typing import Any

import pytest

from kvmqa.config.profile import Profile, ProfileError, load_profile
from kvmqa.core.facts import HostFacts
from kvmqa.core.gate import evaluate_stage
from kvmqa.core.model import Verdict
from kvmqa.stages import builtin
from kvmqa.stages.first_vm.checks import CHECKS
from kvmqa.stages.first_vm.gather import FirstVmSettings, observe
from kvmqa.stages.first_vm.hostlog import RAW, kernel_log_mark, kernel_log_since, new_dmesg_lines
from kvmqa.stages.first_vm.kit import build_kit
from kvmqa.stages.first_vm.runner import RunResult

RECORDED_DMESG = """\
<6>[  331.930844] kvmqa-c40489: port 1(vnet1) entered disabled state
<6>[  342.475973] kvmqa-c40489: port 1(vnet1) entered disabled state
<3>[  342.500001] virtio_net virtio0: output.0:id 3 is not a head!
<4>[  343.100000] kvm: vcpu 0, guest rIP: 0xffffffff81000000 unhandled rdmsr: 0xc0010007
<11>[  344.000000] kvmqa-test: a user-space err line written to /dev/kmsg
<2>[  345.250000] Memory failure: 0x1234: recovery action for dirty LRU page: Recovered
"""


def finding(log: dict[str, Any] | None) -> tuple[Verdict, str]:
    obs = {"host_kernel_log": log} if log is not None else {"boots": {}}
    f = {f.check_id: f for f in evaluate_stage(CHECKS, "h", HostFacts(first_vm=obs), Profile())}[
        "first_vm.host-dmesg"
    ]
    return f.verdict, f.message


def test_only_lines_after_the_mark_count_and_only_err_or_worse_fail() -> None:
    seen = new_dmesg_lines(RECORDED_DMESG, mark_s=331.930844)
    assert seen["new"] == 5
    assert seen["errors"] == [
        "<err> [342.500] virtio_net virtio0: output.0:id 3 is not a head!",
        "<err> [344.000] kvmqa-test: a user-space err line written to /dev/kmsg",
        "<crit> [345.250] Memory failure: 0x1234: recovery action for dirty LRU page: Recovered",
    ]
    verdict, message = finding({"source": "dmesg", "mark_s": 331.9, **seen})
    assert verdict == Verdict.FAIL and message.startswith(
        "3 new host kernel message(s) at level err or worse"
    )
    assert "virtio_net virtio0: output.0:id 3 is not a head!" in message and "(dmesg)" in message
    assert new_dmesg_lines(RECORDED_DMESG, mark_s=345.25) == {"new": 0, "errors": []}


def test_clean_log_passes_with_the_count_and_unreadable_log_is_not_a_pass() -> None:
    verdict, message = finding({"source": "dmesg", "mark_s": 1.0, "new": 12, "errors": []})
    assert verdict == Verdict.PASS and message.startswith("12 new kernel message(s), none at level err")
    verdict, message = finding({"source": "journal", "errors": [], "new": None})
    assert verdict == Verdict.PASS and "(journalctl -k)" in message
    verdict, message = finding(
        {"error": "dmesg: read kernel buffer failed: Operation not permitted; journalctl -k: rc=1"}
    )
    assert verdict == Verdict.INFO and message.startswith("not checked: the host's kernel log cannot be read")
    verdict, message = finding(None)
    assert verdict == Verdict.SKIP


def test_many_errors_are_counted_and_the_first_ones_quoted() -> None:
    errors = [f"<err> [{i}.000] e{i}" for i in range(8)]
    verdict, message = finding({"source": "dmesg", "mark_s": 0.0, "new": 8, "errors": errors})
    assert (
        verdict == Verdict.FAIL
        and message.startswith("8 new")
        and "e4" in message
        and "and 3 more" in message
    )


def as_nobody(command: str, timeout: float) -> RunResult:
    proc = subprocess.run(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "sh", "-c", command],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return RunResult(proc.returncode, proc.stdout, proc.stderr)


def test_a_user_who_cannot_read_the_kernel_log_gets_not_checked_with_the_reason() -> None:
    if Path("/proc/sys/kernel/dmesg_restrict").read_text().strip() != "1":
        pytest.skip("kernel.dmesg_restrict is 0 here: every user can read dmesg")
    truth = subprocess.run(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "dmesg"],
        capture_output=True,
        text=True,
    )
    assert truth.returncode != 0  # ground truth: this user really cannot read it
    mark = kernel_log_mark(as_nobody)
    assert "Operation not permitted" in mark["error"]
    verdict, message = finding(kernel_log_since(as_nobody, mark))
    assert verdict == Verdict.INFO and "not checked" in message and "Operation not permitted" in message


def kmsg(line: str) -> None:
    Path("/dev/kmsg").write_text(line + "\n")


def dmesg_now() -> list[str]:
    return subprocess.run(["dmesg", "-r"], capture_output=True, text=True, check=True).stdout.splitlines()


def test_an_err_line_in_the_kernel_log_while_the_guest_runs_fails_the_stage(
    libvirtd: None, tmp_path: Path
) -> None:
    if not Path("/dev/kmsg").exists() or subprocess.run(["dmesg", "-r"], capture_output=True).returncode != 0:
        pytest.skip("needs root to read dmesg and write /dev/kmsg")
    tag = f"kvmqa-test-{secrets.token_hex(3)}"
    kmsg(f"<3>{tag}: written before the first VM started")
    written: list[str] = []

    def write(
        line: str,
    ) -> None:  # progress lines arrive while the guest runs (after 5 s): write one err line then
        if not written:
            kmsg(f"<3>{tag}: written while the first VM ran")
            written.append(line)

    import libvirt

    conn = libvirt.open("qemu:///system")
    settings = FirstVmSettings(
        attempt_kvm=False, allow_emulation=True, virt_install=False, cmdline_extra="kvmqa.hold=8"
    )
    try:
        obs = observe(conn, settings, build_kit(), host="local", console_dir=tmp_path, write=write)
    finally:
        conn.close()
    assert obs["boots"]["emulated"]["ok"], obs["boots"]["emulated"]["error"]
    assert written and written[0].startswith("kvmqa first_vm [local] kvmqa-tcg-local-")
    log = obs["host_kernel_log"]
    assert log["source"] == "dmesg" and log["new"] >= 1
    mine = [e for e in log["errors"] if tag in e]
    assert (
        len(mine) == 1
        and mine[0].startswith("<err> [")
        and mine[0].endswith(f"{tag}: written while the first VM ran")
    )
    # ground truth: dmesg read here, after the stage, holds every line kvmqa quoted, stamped after its mark
    truth = {
        f"[{float(m.group(2)):.3f}] {m.group(3).strip()}"
        for m in map(RAW.match, dmesg_now())
        if m and float(m.group(2)) > log["mark_s"] and int(m.group(1)) & 7 <= 3
    }
    assert {e.split(" ", 1)[1] for e in log["errors"]} <= truth
    assert any(f"{tag}: written before" in line for line in dmesg_now())  # there, but before the mark
    verdict, message = finding(log)
    assert verdict == Verdict.FAIL and f"{tag}: written while the first VM ran" in message
    assert "written before the first VM started" not in message


LAB_HOST_DMESG = """\
<6>[  300.441983] kvmqa-lab: port 1(vnet11) entered blocking state
<3>[  303.068842] kvm [854]: vcpu0, guest rIP: 0xffffffff90473744 Unhandled WRMSR(0xc0010007) = 0xffff
<6>[  320.579785] kvmqa-lab: port 1(vnet11) entered disabled state
"""  # recorded on a bookworm lab host (tests/lab) while kvmqa's KVM guest booted: once per nested boot


def test_kvm_s_unhandled_msr_line_on_every_nested_boot_is_known_harmless_not_a_failure() -> None:
    seen = new_dmesg_lines(LAB_HOST_DMESG, mark_s=300.0)
    assert seen["errors"] == [
        "<err> [303.069] kvm [854]: vcpu0, guest rIP: 0xffffffff90473744 Unhandled WRMSR(0xc0010007) = 0xffff"
    ]
    verdict, message = finding({"source": "dmesg", "mark_s": 300.0, **seen})
    assert verdict == Verdict.PASS
    assert "known-harmless ones: KVM: the guest touched an MSR KVM does not handle (x1)" in message
    both = {
        "source": "dmesg",
        "mark_s": 0.0,
        "new": 3,
        "errors": seen["errors"] + ["<err> [310.000] vhost: oops"],
    }
    verdict, message = finding(both)
    assert (
        verdict == Verdict.FAIL
        and message.startswith("1 new host kernel message(s)")
        and "vhost: oops" in message
    )


def test_a_profile_can_declare_its_lab_s_own_harmless_lines() -> None:
    log = {
        "source": "dmesg",
        "mark_s": 0.0,
        "new": 1,
        "errors": ["<err> [1.000] ACPI BIOS Error (bug): Could not resolve"],
    }
    facts = HostFacts(first_vm={"host_kernel_log": log})
    profile = Profile(stages={"first_vm": {"dmesg_ignore": [r"ACPI BIOS Error \(bug\)"]}})
    f = {f.check_id: f for f in evaluate_stage(CHECKS, "h", facts, profile)}["first_vm.host-dmesg"]
    assert f.verdict == Verdict.PASS and "profile first_vm.dmesg_ignore" in f.message
    assert finding(log)[0] == Verdict.FAIL  # without the profile's line it fails


def test_a_profile_s_broken_dmesg_ignore_is_one_clear_error_naming_file_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "lab.yaml"
    bad.write_text("first_vm:\n  dmesg_ignore: ['ACPI (BIOS']\n")
    with pytest.raises(ProfileError) as err:
        load_profile(bad, builtin().columns())
    assert str(err.value).startswith(
        f"{bad}: field 'first_vm.dmesg_ignore': 'ACPI (BIOS' is not a regular expression"
    )
    bad.write_text("first_vm:\n  dmesg_ignore: ACPI\n")
    with pytest.raises(ProfileError, match="must be a list of regular expressions"):
        load_profile(bad, builtin().columns())
    nested = load_profile(
        Path(__file__).resolve().parents[1] / "fixtures" / "profiles" / "nested-lab.yaml", builtin().columns()
    )
    assert nested.stage("first_vm")["cmdline_extra"] == "loglevel=6" and nested.min_cpus == 1
