"""Lab hosts for a person: build (or reuse) the image, boot it, print how to run kvmqa against it, wait.

    .venv/bin/python -m tests.lab up [--suite bookworm|trixie] [--smp N] [--for SECONDS]
    .venv/bin/python -m tests.lab up --hosts 2 [--suite bookworm,trixie] [--cpu max,Opteron_G5] [--no-cluster]
    .venv/bin/python -m tests.lab build [--suite ...]      # only build (or find) the image

`./run lab ...` is the same as `... -m tests.lab up ...`.
"""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from tests.lab import cluster
from tests.lab.boot import LabBootError, LabHost, start
from tests.lab.image import BuiltImage, LabBuildError
from tests.lab.image_arm64 import ALL_IMAGES, build_lab_image

T = TypeVar("T")


def _say(msg: str) -> None:
    print(f"kvmqa lab: {msg}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m tests.lab", description="Build and boot lab KVM hosts (tests/lab)."
    )
    ap.add_argument("command", choices=("up", "build"))
    ap.add_argument(
        "--hosts",
        type=int,
        default=1,
        help="how many hosts (default 1); from 2 on: lab1..labN on a private segment, a cluster",
    )
    ap.add_argument(
        "--suite",
        default="bookworm",
        help=f"the Debian release ({', '.join(sorted(ALL_IMAGES))}); a comma list: one per host",
    )
    ap.add_argument(
        "--cpu",
        default="max",
        help=f"QEMU CPU model ({', '.join(cluster.CPUS_WITH_SVM_NPT)}), or a comma list, one per host",
    )
    ap.add_argument(
        "--no-cluster",
        action="store_true",
        help="several hosts: only boot them and join the segment (no trust, pool, network)",
    )
    ap.add_argument("--smp", type=int, default=None, help="vCPUs of a single lab host (default 2)")
    ap.add_argument(
        "--for",
        dest="seconds",
        type=float,
        default=None,
        help="stop after SECONDS instead of waiting for Ctrl-C",
    )
    ap.add_argument(
        "--run-dir",
        type=Path,
        default=None,
        help="where overlays, console logs (and the segment) go (default: a temp dir)",
    )
    args = ap.parse_args(argv)
    try:
        plans = cluster.plan_hosts(args.hosts, args.suite, args.cpu)
    except ValueError as exc:
        ap.error(str(exc))
    # Ctrl-C (even where a shell started us with SIGINT ignored) and SIGTERM stop the hosts the same way.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    if args.command == "build":
        done = _attempt(lambda: [_image(suite) for suite in dict.fromkeys(p.suite for p in plans)])
        return done if isinstance(done, int) else 0
    if args.hosts > 1:
        return _lab_up(plans, args)
    return _single_up(plans[0], args)


def _wait(alive: Callable[[], bool], seconds: float | None) -> bool:
    """Until Ctrl-C, `seconds`, or until a host is gone; False when a host is gone."""
    deadline = None if seconds is None else time.monotonic() + seconds
    if deadline is None:
        _say("Ctrl-C stops it and removes its overlay")
    while alive() and (deadline is None or time.monotonic() < deadline):
        time.sleep(1)
    return alive()


def _attempt(step: Callable[[], T]) -> T | int:
    """The step's value, or the exit status after saying why it failed (1) or that it was interrupted
    (130)."""
    try:
        return step()
    except (LabBuildError, LabBootError, RuntimeError) as exc:
        _say(str(exc))
        return 1
    except KeyboardInterrupt:
        _say("interrupted")
        return 130


def _image(suite: str) -> BuiltImage:
    image = build_lab_image(ALL_IMAGES[suite], log=_say)
    built = f"built in {image.build_seconds:.0f} s" if image.build_seconds else "from the cache"
    _say(f"image {suite}: {image.dir} ({built})")
    return image


def _single_up(plan: cluster.HostPlan, args: argparse.Namespace) -> int:
    run_dir = args.run_dir or Path(tempfile.mkdtemp(prefix=f"kvmqa-lab-{plan.suite}-"))
    smp = args.smp or 2

    def boot() -> LabHost:
        image = _image(plan.suite)
        _say(f"booting {plan.suite} (-smp {smp}, -cpu {plan.cpu}); console: {run_dir / 'console.log'}")
        return start(image, run_dir, smp=smp, cpu=plan.cpu)

    host = _attempt(boot)
    if isinstance(host, int):
        return host
    try:
        _say(
            f"{plan.suite} answers ssh after {host.timings.get('ssh', 0):.0f} s, "
            f"systemd up after {host.boot_seconds:.0f} s"
        )
        # a nested KVM host boots its first VM far slower than metal: the nested-lab profile gives it the room
        profile = "fixtures/profiles/nested-lab.yaml"
        print(
            "Run kvmqa against it (the nested-lab profile: a longer first-VM deadline for nested KVM):\n"
            "  ./run suite " + shlex.join([*host.suite_args(), "--profile", profile])
        )
        print(f"Reach it yourself:\n  {shlex.join(host.ssh_argv())}", flush=True)
        if not _wait(host.alive, args.seconds):
            _say(f"QEMU exited by itself; console tail:\n{host.console_tail()}")
            return 1
    except KeyboardInterrupt:
        pass
    finally:
        host.stop()
        _say(f"stopped; overlay removed ({run_dir})")
    return 0


def _lab_up(plans: list[cluster.HostPlan], args: argparse.Namespace) -> int:
    run_dir = args.run_dir or Path(tempfile.mkdtemp(prefix="kvmqa-lab-hosts-"))
    t0 = time.monotonic()
    lab = _attempt(lambda: cluster.start_lab(plans, run_dir, say=_say))
    if isinstance(lab, int):
        return lab
    try:
        _say(
            f"{len(plans)} hosts up and on the segment after {time.monotonic() - t0:.0f} s "
            f"(joined in {lab.timings['join']:.0f} s)"
        )
        if not args.no_cluster:
            seconds = cluster.setup_cluster(lab)
            _say(
                f"cluster set up in {seconds:.0f} s: qemu+ssh trust, NFS pool {cluster.SHARED_POOL} "
                f"(exported by lab1), network {cluster.GUEST_NETWORK}"
            )
        inventory = lab.write_inventory(run_dir / "inventory.yaml")
        print(
            "Run kvmqa against them (the nested-lab profile: a longer first-VM deadline for nested KVM):\n"
            "  ./run suite "
            + shlex.join(["--inventory", str(inventory), "--profile", "fixtures/profiles/nested-lab.yaml"])
        )
        print("Reach them yourself (inside, the hosts are lab1..labN on 192.168.77.0/24):")
        for index, host in enumerate(lab.hosts):
            print(f"  {lab.describe(index)}: {shlex.join(host.ssh_argv())}", flush=True)
        if not _wait(lambda: all(h.alive() for h in lab.hosts), args.seconds):
            gone = next(h for h in lab.hosts if not h.alive())
            _say(f"{gone.name}: QEMU exited by itself; console tail:\n{gone.console_tail()}")
            return 1
    except KeyboardInterrupt:
        pass
    except RuntimeError as exc:  # a set-up step failed on a host
        _say(str(exc))
        return 1
    finally:
        lab.stop()
        _say(f"stopped; overlays and the segment removed ({run_dir})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
