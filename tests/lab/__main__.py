"""A lab host for a person: build (or reuse) the image, boot it, print how to run kvmqa against it, wait.

    .venv/bin/python -m tests.lab up [--suite bookworm|trixie] [--smp N] [--for SECONDS]
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
from pathlib import Path

from tests.lab.boot import LabBootError, start
from tests.lab.image import LAB_IMAGES, LabBuildError, build_image


def _say(msg: str) -> None:
    print(f"kvmqa lab: {msg}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m tests.lab", description="Build and boot a lab KVM host (tests/lab)."
    )
    ap.add_argument("command", choices=("up", "build"))
    ap.add_argument(
        "--suite", choices=sorted(LAB_IMAGES), default="bookworm", help="the Debian release of the lab host"
    )
    ap.add_argument("--smp", type=int, default=2, help="vCPUs of the lab host (default 2)")
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
        help="where the overlay and console log go (default: a temp dir)",
    )
    args = ap.parse_args(argv)
    try:
        image = build_image(LAB_IMAGES[args.suite], log=_say)
        built = f"built in {image.build_seconds:.0f} s" if image.build_seconds else "from the cache"
        _say(f"image {args.suite}: {image.dir} ({built})")
        if args.command == "build":
            return 0
        run_dir = args.run_dir or Path(tempfile.mkdtemp(prefix=f"kvmqa-lab-{args.suite}-"))
        # Ctrl-C (even where a shell started us with SIGINT ignored) and SIGTERM stop the host the same way.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        _say(f"booting {args.suite} (-smp {args.smp}); console: {run_dir / 'console.log'}")
        host = start(image, run_dir, smp=args.smp)
    except (LabBuildError, LabBootError) as exc:
        _say(str(exc))
        return 1
    except KeyboardInterrupt:
        _say("interrupted")
        return 130
    try:
        _say(
            f"{args.suite} answers ssh after {host.timings.get('ssh', 0):.0f} s, systemd up after "
            f"{host.boot_seconds:.0f} s"
        )
        # a nested KVM host boots its first VM far slower than metal: the nested-lab profile gives it the room
        profile = "fixtures/profiles/nested-lab.yaml"
        print(
            "Run kvmqa against it (the nested-lab profile: a longer first-VM deadline for a nested KVM "
            "host):\n"
            "  ./run suite " + shlex.join([*host.suite_args(), "--profile", profile])
        )
        print(f"Reach it yourself:\n  {shlex.join(host.ssh_argv())}", flush=True)
        if args.seconds is None:
            _say("Ctrl-C stops it and removes its overlay")
            while host.alive():
                time.sleep(1)
        else:
            deadline = time.monotonic() + args.seconds
            while host.alive() and time.monotonic() < deadline:
                time.sleep(1)
        if not host.alive():
            _say(f"QEMU exited by itself; console tail:\n{host.console_tail()}")
            return 1
    except KeyboardInterrupt:
        pass
    finally:
        host.stop()
        _say(f"stopped; overlay removed ({run_dir})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
