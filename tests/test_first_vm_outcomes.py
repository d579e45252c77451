"""Truthful verdicts on slow and failing boots, made to happen for real with TCG guests on the real libvirtd:
a deadline that ends a guest still printing, a guest that resets itself (reboot -f, sysrq b), a guest
destroyed
from outside, and the progress lines a long boot writes."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import libvirt
import pytest

from kvmqa.config.profile import Profile
from kvmqa.core.facts import HostFacts
from kvmqa.core.gate import evaluate_stage
from kvmqa.core.model import Verdict
from kvmqa.stages.first_vm.boot import BootResult, BootSpec, KitVolumes, boot, stage_kit
from kvmqa.stages.first_vm.checks import CHECKS
from kvmqa.stages.first_vm.kit import build_kit
from kvmqa.stages.first_vm.progress import BootProgress
from kvmqa.stages.first_vm.resources import Workspace, leftovers

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def conn(libvirtd: None) -> Iterator[libvirt.virConnect]:
    c = libvirt.open("qemu:///system")
    yield c
    c.close()


@pytest.fixture(scope="module")
def kit(conn: libvirt.virConnect) -> Iterator[tuple[Workspace, KitVolumes]]:
    with Workspace(conn) as ws:
        yield ws, stage_kit(ws, build_kit())


def verdict_of(
    result: BootResult, check_id: str = "first_vm.emulated-boot", **settings: Any
) -> tuple[Verdict, str, str]:
    obs = {"boots": {"emulated": result.to_json()}, "settings": {"allow_emulation": True, **settings}}
    finding = {f.check_id: f for f in evaluate_stage(CHECKS, "h", HostFacts(first_vm=obs), Profile())}[
        check_id
    ]
    return finding.verdict, finding.message, finding.hint


def test_a_guest_still_printing_at_the_deadline_is_still_booting_and_kvmqa_says_it_destroyed_it(
    kit: tuple[Workspace, KitVolumes],
) -> None:
    ws, volumes = kit
    lines: list[str] = []
    progress = BootProgress("here", lines.append, after=1.0, every=1.0)
    result = boot(
        ws,
        volumes,
        BootSpec(
            "slow",
            "qemu",
            timeout=3,
            silent_timeout=10,
            network=False,
            cmdline_extra="kvmqa.hold=60",
            progress=progress,
        ),
    )
    assert result.outcome == "still-booting" and not result.ok
    assert result.kernel_s is not None and 0 < result.kernel_s < 60  # the kernel's own last timestamp
    assert f"kernel at {result.kernel_s:.1f} s" in result.error
    assert result.stopped_by == "kvmqa" and result.stop_reason == "at the deadline"
    assert result.error.startswith("still booting at the 3.0 s deadline (console advancing, kernel at ")
    assert "kvmqa destroyed it (at the deadline)" in result.error and "by itself" not in result.error
    verdict, message, hint = verdict_of(result, boot_timeout=3)
    assert verdict == Verdict.FAIL and "still booting" in message
    assert "raise first_vm.boot_timeout" in hint and "now 3 s" in hint
    # progress: host, guest, elapsed, kernel time and the last console line, while it booted
    assert lines and all(line.startswith(f"kvmqa first_vm [here] {result.name} EMULATED: ") for line in lines)
    assert any("console: '" in line for line in lines)
    assert not set(leftovers(ws.conn)) & {f"domain {result.name}"}


@pytest.mark.parametrize("how", ["reboot", "sysrq"])
def test_a_guest_that_resets_is_reported_as_a_reset_with_the_kernel_time_it_reached(
    kit: tuple[Workspace, KitVolumes], how: str
) -> None:
    ws, volumes = kit
    result = boot(
        ws,
        volumes,
        BootSpec(f"reset-{how}", "qemu", timeout=60, network=False, cmdline_extra=f"kvmqa.reset={how}"),
    )
    assert result.outcome == "reset" and not result.ok, (result.outcome, result.error, result.console_tail)
    assert "RESET" in result.markers and "DONE" not in result.markers
    assert result.reset_at_kernel_s is not None and result.reset_at_kernel_s > 0
    if how == "reboot":  # the kernel said so before it reset
        assert result.restart_requested and "the kernel printed 'reboot: Restarting system'" in result.error
    else:  # sysrq b resets without a word: the second kernel banner shows it
        assert result.boots >= 2 and "kernel boots" in result.error
    assert result.error.startswith(f"guest reset at kernel time {result.reset_at_kernel_s:.1f} s")
    assert result.stopped_by == "kvmqa" and "stopped without" not in result.error
    verdict, message, hint = verdict_of(result)
    assert verdict == Verdict.FAIL and "outcome=reset" in message and "reset itself" in hint


def test_a_guest_destroyed_from_outside_is_not_called_a_power_off_or_kvmqa_s_doing(
    kit: tuple[Workspace, KitVolumes], conn: libvirt.virConnect
) -> None:
    ws, volumes = kit
    other = libvirt.open("qemu:///system")  # someone else (virsh destroy, another run's --cleanup)
    killed: list[str] = []

    def destroy_from_outside(result: BootResult, elapsed: float, reading: Any) -> None:
        if not killed and reading.kernel_s is not None and reading.kernel_s > 0.5:
            other.lookupByName(result.name).destroy()
            killed.append(result.name)

    try:
        result = boot(
            ws,
            volumes,
            BootSpec(
                "outside",
                "qemu",
                timeout=60,
                network=False,
                cmdline_extra="kvmqa.hold=60",
                progress=destroy_from_outside,
            ),
        )
    finally:
        other.close()
    assert killed == [result.name]
    assert result.outcome == "destroyed" and result.state == "shutoff/destroyed"
    assert result.stopped_by == "" and "kvmqa destroyed" not in result.error
    assert "destroyed from outside this boot" in result.error and "by itself" not in result.error
    verdict, message, hint = verdict_of(result)
    assert verdict == Verdict.FAIL and "destroyed from outside" in message and "destroyed the guest" in hint


PROBE_TEST = """
from kvmqa.stages.first_vm.progress import terminal_writer

def test_boot_progress(pytestconfig):
    terminal_writer(pytestconfig)("kvmqa first_vm [h] guest KVM: 15 s, kernel at 9.1 s, console: 'x'")
    print("captured, not shown")
"""


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["plain", "xdist"])
def test_progress_lines_reach_the_terminal_past_capturing_also_under_xdist(
    tmp_path: Path, xdist: list[str]
) -> None:
    """pytest captures output by default, and an xdist worker has no terminal: the line must still be seen."""
    (tmp_path / "test_probe.py").write_text(PROBE_TEST)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            str(tmp_path / "test_probe.py"),
            "-q",
            "-c",
            str(ROOT / "pytest.ini"),
            "-p",
            "no:randomly",
            "--rootdir",
            str(tmp_path),
            "--reports-dir",
            str(tmp_path / "r"),
            *xdist,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    seen = [
        line for line in (proc.stdout + proc.stderr).splitlines() if "kvmqa first_vm [h] guest KVM" in line
    ]
    assert len(seen) == 1 and "captured, not shown" not in proc.stdout
    assert seen[0].startswith("[gw") if xdist else seen[0].startswith("kvmqa first_vm")
