"""Fleet scaling: 16 SSH targets with `-n 4 --dist loadgroup` against one target, through the real suites.

    .venv/bin/python bench/bench_fleet.py                # 16 sshd on loopback (root), -n 4
    .venv/bin/python bench/bench_fleet.py --hosts 32 --workers 8 --repeat 3
    .venv/bin/python bench/bench_fleet.py --rtt-ms 40     # every target 40 ms away (a delaying TCP proxy)

Each run is `pytest <verify stages> --hosts ...` in a subprocess with a fresh TMPDIR (no warm ssh master).
On loopback every "host" shares this machine's CPUs with the controller, so the fleet is CPU-bound in a
way real fleets are not; --rtt-ms puts the sshd servers behind a proxy adding that round-trip time.
Prints wall time per configuration (median of --repeat), the ratio to one host, and checks that every host
was fully checked in 2 round trips. Goal: 16 hosts with -n 4 in <= 3x the time of one host.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

STAGES = (
    "suites/test_00_reach.py",
    "suites/test_10_cpu.py",
    "suites/test_20_packages.py",
    "suites/test_30_libvirt.py",
)


def busy_cpu_s() -> float:
    """CPU time this machine has spent busy (all processes: controller, ssh, the targets' sshd and probes)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")  # minus idle and iowait


def run(hosts: list[str], fleet_args: list[str], workers: int, reports: Path) -> tuple[float, dict]:
    tmp = tempfile.mkdtemp(prefix="kf-", dir="/tmp")  # fresh ControlPath directory
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        *STAGES,
        "-q",
        "-p",
        "no:randomly",
        "--reports-dir",
        str(reports),
        "--hosts",
        ",".join(hosts),
        *fleet_args,
    ]
    if workers:
        cmd += ["-n", str(workers), "--dist", "loadgroup"]
    started = time.perf_counter()
    proc = subprocess.run(
        cmd, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "TMPDIR": tmp}, timeout=900
    )
    wall = time.perf_counter() - started
    results = json.loads((reports / "results.json").read_text())
    bad = {
        h: s.get("round_trips")
        for h, s in results["hosts"].items()
        if s.get("round_trips") != {"ssh_commands": 1, "libvirt_connections": 1}
    }
    if len(results["hosts"]) != len(hosts) or bad:
        raise SystemExit(f"not every host was fully checked in 2 round trips: {bad}\n{proc.stdout[-2000:]}")
    return wall, results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=16)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--rtt-ms", type=float, default=0, help="every target this many ms away (round trip)")
    args = parser.parse_args()
    from tests.support.daemons import start_libvirtd
    from tests.support.fleet import behind_delay, start_fleet

    start_libvirtd()
    with tempfile.TemporaryDirectory(prefix="kvmqa-bench-fleet-") as work:
        fleet = start_fleet(Path(work) / "sshd", args.hosts)
        proxy = behind_delay(fleet, args.rtt_ms) if args.rtt_ms else None
        try:
            urls = fleet.urls()
            configs = [
                ("1 host", urls[:1], 0),
                (f"1 host, -n {args.workers}", urls[:1], args.workers),
                (f"{args.hosts} hosts, -n {args.workers}", urls, args.workers),
                (f"{args.hosts} hosts, serial", urls, 0),
            ]
            times: dict[str, float] = {}
            cpus: dict[str, float] = {}
            for name, hosts, workers in configs:
                walls, used = [], []
                for i in range(args.repeat):
                    before = busy_cpu_s()
                    walls.append(run(hosts, fleet.args(), workers, Path(work) / f"r{i}")[0])
                    used.append(busy_cpu_s() - before)
                times[name], cpus[name] = statistics.median(walls), statistics.median(used)
        finally:
            fleet.stop()
            if proxy is not None:
                proxy.close()
    one = times["1 host"]
    place = f"on loopback behind a {args.rtt_ms:g} ms RTT proxy" if args.rtt_ms else "on loopback"
    print(
        f"{args.hosts} sshd targets {place}, stages reach/cpu/packages/libvirt, {os.cpu_count()} CPUs, "
        "median "
        f"of {args.repeat}"
    )
    ncpu = os.cpu_count() or 1
    print(f"{'configuration':<26}{'wall s':>8}{'vs 1 host':>11}{'busy CPU s':>12}{'CPU floor s':>13}")
    for name, wall in times.items():
        print(f"{name:<26}{wall:>8.2f}{wall / one:>10.1f}x{cpus[name]:>12.2f}{cpus[name] / ncpu:>13.2f}")
    per_host = (cpus[f"{args.hosts} hosts, -n {args.workers}"] - cpus[f"1 host, -n {args.workers}"]) / (
        args.hosts - 1
    )
    print(
        f"busy CPU is the whole machine's (controller, ssh, and the targets' sshd, sudo, probes, libvirtd); "
        f"CPU floor = busy CPU / {ncpu} CPUs, the least wall time this machine could take. Each extra host "
        "costs "
        f"{per_host:.2f} CPU-s here; 3x one host allows {3 * one:.2f} s"
    )
    fleet = times[f"{args.hosts} hosts, -n {args.workers}"]
    same_n = fleet / times[f"1 host, -n {args.workers}"]
    print(
        f"goal: {args.hosts} hosts with -n {args.workers} in <= 3x the time of one host: {fleet / one:.1f}x "
        f"({'met' if fleet / one <= 3 else 'MISSED'}); {same_n:.1f}x against one host with the same -n "
        f"({'met' if same_n <= 3 else 'MISSED'}); {times[f'{args.hosts} hosts, serial'] / one:.1f}x in one "
        "process "
        "(16 probes in threads)"
    )
    print("every host: 1 ssh command + 1 libvirt connection (checked in results.json)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
