"""Bench: the first-VM stage under real (nested) KVM on a lab host, against bare QEMU -accel kvm there, beside
TCG here.

    python bench/bench_lab_first_vm.py [--runs 3] [--smp 1] [--image bookworm] [--tcg-runs 3]
    python bench/bench_lab_first_vm.py --lab ssh://qa@127.0.0.1:PORT --key KEY --known-hosts FILE   # a
    running lab host

Inside the lab host (tests/lab: a Debian KVM host under TCG with -cpu max, kvm_amd nested=1), each run boots
the
same kit twice, interleaved: bare ``qemu-system-x86_64 -accel kvm`` started on the lab host (same memory and
vCPUs, a qcow2 virtio disk, a user-mode NIC with restrict=on, serial on stdout, timed by the lab host's clock
until KVMQA-DONE and QEMU's exit), and kvmqa's stage boot through libvirt over ssh
(`kvmqa.stages.first_vm.boot.boot`: define,
start paused, console, query-kvm, resume, markers, power-off, domain and disk removed). The TCG column is
bench/bench_first_vm.py's measurement on this machine, run here in the same invocation. Prints figures and
ratios; not a test.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_first_vm import bare_boot as tcg_bare_boot  # noqa: E402
from bench.bench_first_vm import stage_boot  # noqa: E402
from kvmqa.config.options import RunOptions  # noqa: E402
from kvmqa.config.profile import Profile  # noqa: E402
from kvmqa.session.host import HostSession  # noqa: E402
from kvmqa.stages import builtin  # noqa: E402
from kvmqa.stages.first_vm.boot import BootSpec, boot, stage_kit  # noqa: E402
from kvmqa.stages.first_vm.kit import Kit, build_kit  # noqa: E402
from kvmqa.stages.first_vm.resources import Workspace  # noqa: E402
from kvmqa.transport.target import Target  # noqa: E402

KEYS = (
    "define_to_running_s",
    "first_byte_s",
    "boot_marker_s",
    "done_marker_s",
    "guest_off_s",
    "poweroff_s",
    "shutoff_s",
    "total_s",
)

# Runs on the lab host (python3 is part of the lab image): bare QEMU with KVM, marks timed by the lab host's
# clock.
BARE = r"""
import json, subprocess, sys, time
kernel, initrd, disk, cmdline, memory, vcpus, timeout = sys.argv[1:8]
subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", disk, "64M"], check=True)
argv = ["qemu-system-x86_64", "-accel", "kvm", "-m", memory, "-smp", vcpus, "-nographic", "-no-reboot",
        "-nodefaults", "-serial", "stdio", "-kernel", kernel, "-initrd", initrd, "-append", cmdline,
        "-drive", "file=%s,if=virtio,format=qcow2" % disk, "-nic", "user,model=virtio-net-pci,restrict=on"]
t0 = time.monotonic()
marks = {}
proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
for raw in proc.stdout:
    now = time.monotonic() - t0
    marks.setdefault("first_byte_s", now)
    line = raw.decode(errors="replace")
    for needle, key in (("KVMQA-BOOT", "boot_marker_s"), ("KVMQA-DONE", "done_marker_s"),
                        ("reboot: Power down", "guest_off_s")):
        if needle in line:
            marks[key] = now
    if now > float(timeout):
        proc.kill()
        break
proc.wait(timeout=60)
marks["poweroff_s"] = marks["shutoff_s"] = marks["total_s"] = time.monotonic() - t0
print(json.dumps(marks))
"""


class Lab:
    """A lab host reached over plain OpenSSH (tests/lab's LabHost, or one given on the command line)."""

    def __init__(self, url: str, key: Path, known_hosts: Path) -> None:
        self.target = Target.from_url(url, sudo=True, identity_file=key, known_hosts=known_hosts)
        self.url, self.key, self.known_hosts = url, key, known_hosts
        rest = url.split("://", 1)[1]
        self.login, _, port = rest.rpartition(":")
        self.ssh = [
            "ssh",
            "-F",
            "none",
            "-i",
            str(key),
            "-p",
            port,
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            f"UserKnownHostsFile={known_hosts}",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "LogLevel=ERROR",
            self.login,
        ]

    def run(self, command: str, stdin: bytes | None = None, timeout: float = 600) -> str:
        proc = subprocess.run([*self.ssh, command], input=stdin, capture_output=True, timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(
                f"{command[:60]!r} on the lab host: rc={proc.returncode} {proc.stderr.decode()[-300:]}"
            )
        return proc.stdout.decode()


def lab_bare_boot(lab: Lab, kit: Kit, memory: int, vcpus: int, extra: str) -> dict[str, float]:
    where = "/tmp/kvmqa-bench-kit"
    args = [
        f"{where}/vmlinuz",
        f"{where}/initrd.img",
        f"{where}/data.qcow2",
        kit.cmdline(extra),
        str(memory),
        str(vcpus),
        "600",
    ]
    out = lab.run(f"sudo python3 - {shlex.join(args)}", stdin=BARE.encode())
    marks = json.loads(out.strip().splitlines()[-1])
    if "done_marker_s" not in marks:
        raise RuntimeError("bare QEMU -accel kvm on the lab host did not reach KVMQA-DONE")
    return marks  # type: ignore[no-any-return]


def lab_stage_boot(
    ws: Workspace, volumes: Any, memory: int, vcpus: int, timeout: float, extra: str
) -> dict[str, float]:
    t0 = time.monotonic()
    result = boot(
        ws,
        volumes,
        BootSpec("bench", "kvm", memory, vcpus, timeout=timeout, silent_timeout=timeout, cmdline_extra=extra),
    )
    if not result.ok:
        raise RuntimeError(f"stage boot under nested KVM failed: {result.outcome}: {result.error}")
    if not (result.accelerator.get("kvm") or {}).get("enabled"):
        raise RuntimeError(f"stage boot did not run with KVM: {result.accelerator}")
    timings = dict(result.timings)
    timings["total_s"] = time.monotonic() - t0
    return timings


def median(runs: list[dict[str, float]], key: str) -> float:
    values = [r[key] for r in runs if key in r]
    return statistics.median(values) if values else float("nan")


def measure_lab(
    lab: Lab, kit: Kit, runs: int, memory: int, vcpus: int, timeout: float, extra: str
) -> tuple[list, list, float]:
    lab.run("mkdir -p /tmp/kvmqa-bench-kit")
    for src, name in ((kit.kernel, "vmlinuz"), (kit.initrd, "initrd.img")):
        lab.run(f"cat > /tmp/kvmqa-bench-kit/{name}", stdin=Path(src).read_bytes())
    with tempfile.TemporaryDirectory(prefix="kvmqa-bench-lab-") as reports:
        session = HostSession(lab.target, Profile(), RunOptions(reports_dir=Path(reports)), builtin())
        bare_runs, stage_runs = [], []
        try:
            t_setup = time.monotonic()
            with Workspace(session.libvirt()) as ws:
                volumes = stage_kit(ws, kit)
                setup_s = time.monotonic() - t_setup
                for i in range(runs):  # interleaved, so load changes hit both sides alike
                    bare_runs.append(lab_bare_boot(lab, kit, memory, vcpus, extra))
                    stage_runs.append(lab_stage_boot(ws, volumes, memory, vcpus, timeout, extra))
                    print(
                        f"  run {i + 1}: bare {bare_runs[-1]['total_s']:.1f} s, stage "
                        f"{stage_runs[-1]['total_s']:.1f} s",
                        flush=True,
                    )
        finally:
            session.close_libvirt()
            lab.run("rm -rf /tmp/kvmqa-bench-kit")
    return bare_runs, stage_runs, setup_s


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--tcg-runs", type=int, default=3, help="runs of the TCG bench on this machine (0: skip)"
    )
    parser.add_argument("--memory", type=int, default=256)
    parser.add_argument("--vcpus", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=600, help="deadline of one nested boot")
    parser.add_argument(
        "--cmdline-extra",
        default="",
        help="guest kernel arguments for both sides of the lab runs (e.g. loglevel=6, as nested-lab.yaml)",
    )
    parser.add_argument("--image", default="bookworm", help="tests/lab image to build/boot (without --lab)")
    parser.add_argument("--smp", type=int, default=1, help="vCPUs of the lab host (without --lab)")
    parser.add_argument(
        "--lab", help="ssh://USER@127.0.0.1:PORT of a running lab host (sudo without password)"
    )
    parser.add_argument("--key", type=Path)
    parser.add_argument("--known-hosts", type=Path)
    args = parser.parse_args()

    kit = build_kit()
    tcg: tuple[list, list] = ([], [])
    if args.tcg_runs:
        import libvirt

        with Workspace(libvirt.open("qemu:///system")) as ws:
            volumes = stage_kit(ws, kit)
            for _ in range(args.tcg_runs):
                tcg[0].append(tcg_bare_boot(kit, args.memory, args.vcpus))
                tcg[1].append(stage_boot(ws, volumes, args.memory, args.vcpus))
    host = None
    if args.lab:
        lab = Lab(args.lab, args.key, args.known_hosts)
        where = args.lab
    else:
        from tests.lab import LAB_IMAGES, build_image
        from tests.lab.boot import start

        image = build_image(LAB_IMAGES[args.image], log=print)
        host = start(image, Path(tempfile.mkdtemp(prefix="kvmqa-bench-labhost-")), smp=args.smp)
        print(f"lab host {args.image} (-smp {args.smp}) up in {host.boot_seconds:.0f} s")
        lab = Lab(host.url(), host.key, host.known_hosts)
        where = f"tests/lab {args.image}, -smp {args.smp}"
    try:
        bare, stage, setup_s = measure_lab(
            lab, kit, args.runs, args.memory, args.vcpus, args.timeout, args.cmdline_extra
        )
    finally:
        if host is not None:
            host.stop()

    print(f"kit {kit.key} kernel {kit.kernel_release}; median seconds; {args.memory} MiB, {args.vcpus} vCPU")
    print(
        f"nested KVM on the lab host ({where}), {args.runs} runs, guest cmdline extra "
        f"{args.cmdline_extra!r}; "
        f"TCG on this machine, {args.tcg_runs} runs, default cmdline"
    )
    print(f"{'':22}{'KVM bare':>11}{'KVM stage':>11}{'TCG bare':>11}{'TCG stage':>11}")
    for key in KEYS:
        print(
            f"{key:22}{median(bare, key):11.2f}{median(stage, key):11.2f}"
            f"{median(tcg[0], key):11.2f}{median(tcg[1], key):11.2f}"
        )
    kvm_ratio = median(stage, "total_s") / median(bare, "total_s")
    line = f"RATIO stage/bare: nested KVM {kvm_ratio:.2f}x"
    if args.tcg_runs:
        line += f", TCG {median(tcg[1], 'total_s') / median(tcg[0], 'total_s'):.2f}x"
    print(line)
    off = [r["define_to_running_s"] + r.get("guest_off_s", r["poweroff_s"]) for r in stage]
    print(
        f"nested KVM until 'reboot: Power down': bare {median(bare, 'guest_off_s'):.2f} s, stage "
        f"{statistics.median(off):.2f} s ({statistics.median(off) / median(bare, 'guest_off_s'):.2f}x); "
        f"stage one-time set-up on the lab host (pool, network, kit upload): {setup_s:.2f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
