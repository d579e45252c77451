"""Bench: the same kit booted by bare QEMU (TCG) and through the first_vm stage (libvirt), in one run.

    python bench/bench_first_vm.py [--runs 3] [--memory 256] [--vcpus 1]

Bare: ``qemu-system-x86_64 -accel tcg`` with the same memory/vCPUs, a qcow2 virtio disk and a
user-mode NIC restricted to the guest (restrict=on: DHCP is answered inside QEMU, nothing leaves),
serial on stdout, until KVMQA-DONE and QEMU's exit. Stage: define -> start paused -> console ->
resume -> markers -> power-off -> domain and disk removed (`kvmqa.stages.first_vm.boot.boot`); the one-time
workspace set-up (pool, network, kit upload) and teardown are reported separately.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import libvirt  # noqa: E402

from kvmqa.stages.first_vm.boot import BootSpec, boot, stage_kit  # noqa: E402
from kvmqa.stages.first_vm.kit import Kit, build_kit  # noqa: E402
from kvmqa.stages.first_vm.resources import Workspace  # noqa: E402


def bare_boot(kit: Kit, memory: int, vcpus: int, timeout: float = 120) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="kvmqa-bench-") as tmp:
        disk = Path(tmp) / "data.qcow2"
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "64M"], check=True)
        argv = [
            "qemu-system-x86_64",
            "-accel",
            "tcg",
            "-m",
            str(memory),
            "-smp",
            str(vcpus),
            "-nographic",
            "-no-reboot",
            "-nodefaults",
            "-serial",
            "stdio",
            "-kernel",
            str(kit.kernel),
            "-initrd",
            str(kit.initrd),
            "-append",
            kit.cmdline(),
            "-drive",
            f"file={disk},if=virtio,format=qcow2",
            "-nic",
            "user,model=virtio-net-pci,restrict=on",
        ]
        t0 = time.monotonic()
        marks: dict[str, float] = {}
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert proc.stdout is not None
        for raw in proc.stdout:
            now = time.monotonic() - t0
            marks.setdefault("first_byte_s", now)
            line = raw.decode(errors="replace")
            if "KVMQA-BOOT" in line:
                marks["boot_marker_s"] = now
            if "KVMQA-DONE" in line:
                marks["done_marker_s"] = now
            if "reboot: Power down" in line:
                marks["guest_off_s"] = now
            if now > timeout:
                proc.kill()
                break
        proc.wait(timeout=30)
        marks["poweroff_s"] = marks["shutoff_s"] = marks["total_s"] = time.monotonic() - t0
        if "done_marker_s" not in marks:
            raise RuntimeError("bare QEMU boot did not reach KVMQA-DONE")
        return marks


def stage_boot(ws: Workspace, volumes, memory: int, vcpus: int) -> dict[str, float]:  # noqa: ANN001
    t0 = time.monotonic()
    result = boot(ws, volumes, BootSpec("bench", "qemu", memory, vcpus, timeout=120))
    if not result.ok:
        raise RuntimeError(f"stage boot failed: {result.outcome}: {result.error}")
    timings = dict(result.timings)
    timings["total_s"] = time.monotonic() - t0  # includes removing the domain and its disk
    return timings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--memory", type=int, default=256)
    parser.add_argument("--vcpus", type=int, default=1)
    parser.add_argument("--uri", default="qemu:///system")
    parser.add_argument(
        "--as-is",
        action="store_true",
        help="leave libvirtd as it runs (by default a libvirtd whose QEMUs only the late-reaping "
        "PID 1 of this kind of machine would reap is restarted under tini, as on a normal host)",
    )
    args = parser.parse_args()

    if args.uri == "qemu:///system" and not args.as_is:
        from tests.support.daemons import ensure_prompt_reaping

        print(ensure_prompt_reaping())
    kit = build_kit()
    conn = libvirt.open(args.uri)
    bare_runs, stage_runs = [], []
    t_setup = time.monotonic()
    with Workspace(conn) as ws:
        volumes = stage_kit(ws, kit)
        setup_s = time.monotonic() - t_setup
        for _ in range(args.runs):  # interleaved, so load changes hit both sides alike
            bare_runs.append(bare_boot(kit, args.memory, args.vcpus))
            stage_runs.append(stage_boot(ws, volumes, args.memory, args.vcpus))
        t_close = time.monotonic()
    close_s = time.monotonic() - t_close

    def median(runs: list[dict[str, float]], key: str) -> float:
        values = [r[key] for r in runs if key in r]
        return statistics.median(values) if values else float("nan")

    keys = (
        "define_to_running_s",
        "first_byte_s",
        "boot_marker_s",
        "done_marker_s",
        "guest_off_s",
        "poweroff_s",
        "shutoff_s",
        "total_s",
    )
    print(
        f"kit {kit.key} kernel {kit.kernel_release}; {args.runs} runs, median seconds; TCG, "
        f"{args.memory} MiB, {args.vcpus} vCPU"
    )
    print(f"{'':22}{'bare qemu':>12}{'stage':>12}")
    for key in keys:
        print(f"{key:22}{median(bare_runs, key):12.2f}{median(stage_runs, key):12.2f}")
    bare_total, stage_total = median(bare_runs, "total_s"), median(stage_runs, "total_s")
    ratio = stage_total / bare_total
    print(f"stage one-time set-up (pool, network, kit upload): {setup_s:.2f}s; teardown: {close_s:.2f}s")
    print(f"TOTAL bare {bare_total:.2f}s  stage {stage_total:.2f}s  ratio {ratio:.2f}x (goal <= 1.3x)")
    guest = [r["define_to_running_s"] + r.get("guest_off_s", r["poweroff_s"]) for r in stage_runs]
    bare_off = median(bare_runs, "guest_off_s")
    teardown = [r["shutoff_s"] - r.get("guest_off_s", r["poweroff_s"]) for r in stage_runs]
    print(
        f"until the guest printed 'reboot: Power down': bare {bare_off:.2f}s, stage "
        f"{statistics.median(guest):.2f}s "
        f"({statistics.median(guest) / bare_off:.2f}x); libvirt's teardown after that (QEMU exit, reaping, "
        f"cleanup): {statistics.median(teardown):.2f}s"
    )
    per_run_with_setup = (stage_total * args.runs + setup_s + close_s) / args.runs
    print(
        f"stage incl. set-up/teardown spread over the runs: {per_run_with_setup:.2f}s "
        f"({per_run_with_setup / bare_total:.2f}x)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
