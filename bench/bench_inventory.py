"""Ansible inventories and fleet runs through Ansible: what kvmqa adds to ansible-core, and what Ansible
costs.

    .venv/bin/python bench/bench_inventory.py                      # 1,000 and 5,000 hosts; fleet of 6 sshd,
    -n 4 / -f 4
    .venv/bin/python bench/bench_inventory.py --sizes 1000 --fleet 0 --repeat 1
    .venv/bin/python bench/bench_inventory.py --sizes 0 --fleet 8 --workers 4

1. Loading: generated INI inventories (racks of 100 hosts as ranges, [rack:vars] ports and users,
   [kvm_hosts:children], [all:vars] become) read by `ansible-inventory --list` alone, and by kvmqa's
   load_inventory (which runs the same ansible-inventory and maps every host to a Target). The "templated"
   variant also has `ansible_host: "{{ inventory_hostname }}.mgmt.lab"` in group vars, so kvmqa renders one
   template per host with ansible-core's Templar. Each measurement is a fresh process: wall time and CPU
   (that process and its children).
2. Fleet: the same loopback sshd targets (root starts them) checked by `pytest suites --inventory INV -n 4`
   (reach..libvirt) and by `ansible-playbook ansible/kvmqa.yml -f 4` over the same inventory: wall time and
   the
   controller's CPU (every process the run started: pytest/xdist or ansible-playbook and its forks, the ssh
   clients, kvmqa evaluate/merge; not the targets' sshd). Per host and as ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BIN = Path(sys.executable).parent
STAGES = (
    "suites/test_00_reach.py",
    "suites/test_10_cpu.py",
    "suites/test_20_packages.py",
    "suites/test_30_libvirt.py",
)


def generate_inventory(path: Path, hosts: int, templated: bool) -> Path:
    racks = max(1, hosts // 100)
    lines = []
    for r in range(1, racks + 1):
        lines += [
            f"[rack{r:03d}]",
            f"rack{r:03d}-hv[001:{hosts // racks:03d}].lab",
            "",
            f"[rack{r:03d}:vars]",
            f"ansible_port={2200 + r % 50}",
            f"ansible_user=qa{r % 7}",
            "",
        ]
    lines += [
        "[kvm_hosts:children]",
        *(f"rack{r:03d}" for r in range(1, racks + 1)),
        "",
        "[all:vars]",
        "ansible_become=true",
        "ansible_ssh_private_key_file=~/.ssh/lab_key",
        "",
    ]
    if templated:
        lines += ["[kvm_hosts:vars]", 'ansible_host="{{ inventory_hostname }}.mgmt.lab"', ""]
    path.write_text("\n".join(lines))
    return path


def measured(
    cmd: list[str], env: dict[str, str] | None = None, timeout: float = 1800
) -> tuple[float, float, subprocess.CompletedProcess[str]]:
    """Wall seconds and CPU seconds (user+sys of everything the command started and waited for)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run(
        cmd, cwd=ROOT, capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=timeout
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), proc


KVMQA_LOAD = (
    "import sys; from pathlib import Path; from kvmqa.config.inventory import load_inventory; "
    "t, _ = load_inventory(Path(sys.argv[1])); print(len(t))"
)


def bench_loading(sizes: list[int], repeat: int, work: Path) -> None:
    print(f"\n== loading generated inventories (median of {repeat}) ==")
    print(
        f"{'hosts':>6} {'variant':10} {'ansible-inventory --list':>26} {'kvmqa load_inventory':>24} "
        f"{'kvmqa/ansible':>20}"
        f" {'kvmqa CPU ms/host':>18} {'of which kvmqa':>15}"
    )
    for n in sizes:
        for templated in (False, True):
            inv = generate_inventory(work / f"inv-{n}-{int(templated)}", n, templated)
            a_wall, a_cpu, k_wall, k_cpu = [], [], [], []
            for _ in range(repeat):
                w, c, p = measured([str(BIN / "ansible-inventory"), "-i", str(inv), "--list"])
                assert p.returncode == 0, p.stderr[-1000:]
                assert len(json.loads(p.stdout)["_meta"]["hostvars"]) == n
                a_wall.append(w)
                a_cpu.append(c)
                w, c, p = measured([sys.executable, "-c", KVMQA_LOAD, str(inv)])
                assert p.returncode == 0 and int(p.stdout) == n, p.stderr[-1000:]
                k_wall.append(w)
                k_cpu.append(c)
            aw, ac, kw, kc = (statistics.median(x) for x in (a_wall, a_cpu, k_wall, k_cpu))
            print(
                f"{n:>6} {'templated' if templated else 'plain':10} {aw:>8.2f} s wall {ac:>6.2f} s CPU "
                f"{kw:>6.2f} s wall {kc:>6.2f} s CPU {kw / aw:>6.2f}x wall {kc / ac:>5.2f}x CPU "
                f"{1000 * kc / n:>12.2f}"
                f" {1000 * (kc - ac) / n:>15.2f}"
            )


def write_fleet(work: Path, count: int) -> tuple[Path, list]:
    from tests.support.sshd import client_key, start_sshd

    key = client_key(work)
    servers = [start_sshd(work / f"t{i}", key) for i in range(count)]
    known = work / "known_hosts"
    known.write_text("".join(s.known_hosts.read_text() for s in servers))
    inv = work / "fleet"
    inv.write_text(
        "[kvm_hosts]\n"
        + "".join(f"hv{i} ansible_host=127.0.0.1 ansible_port={s.port}\n" for i, s in enumerate(servers))
        + "[kvm_hosts:vars]\nansible_user=kvmqa-ci\nansible_become=true\n"
        f"ansible_ssh_private_key_file={key}\n"
        f"ansible_ssh_common_args='-o UserKnownHostsFile={known}'\n"
    )
    return inv, servers


def bench_fleet(count: int, workers: int, repeat: int, work: Path) -> None:
    inv, servers = write_fleet(work, count)
    suite_run, play_run = f"pytest -n {workers}", f"ansible-playbook -f {workers}"
    rows: dict[str, list[tuple[float, float, dict]]] = {suite_run: [], play_run: []}
    try:
        for i in range(repeat):
            tmp = tempfile.mkdtemp(prefix="kb-", dir="/tmp")  # fresh ssh ControlPath dirs: no warm masters
            env = {
                "TMPDIR": tmp,
                "ANSIBLE_SSH_CONTROL_PATH_DIR": f"{tmp}/cp",
                "ANSIBLE_SSH_TRANSFER_METHOD": "piped",
                "ANSIBLE_NOCOLOR": "1",
            }
            w, c, p = measured(
                [
                    sys.executable,
                    "-m",
                    "pytest",
                    *STAGES,
                    "-q",
                    "-p",
                    "no:randomly",
                    "--inventory",
                    str(inv),
                    "--reports-dir",
                    str(work / f"suite-{i}"),
                    "-n",
                    str(workers),
                ],
                env,
            )
            suite = json.loads((work / f"suite-{i}" / "results.json").read_text())
            rows[suite_run].append((w, c, suite["matrix"]))
            w, c, p = measured(
                [
                    str(BIN / "ansible-playbook"),
                    "-i",
                    str(inv),
                    str(ROOT / "ansible" / "kvmqa.yml"),
                    "-f",
                    str(workers),
                    "-e",
                    f"kvmqa_reports_dir={work / f'play-{i}'}",
                    "-e",
                    "kvmqa_stages=reach,cpu,packages,libvirt",
                ],
                env,
            )
            assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
            play = json.loads((work / f"play-{i}" / "results.json").read_text())
            rows[play_run].append((w, c, play["matrix"]))
    finally:
        for s in servers:
            s.stop()
    print(f"\n== fleet: {count} loopback sshd targets, stages reach..libvirt (median of {repeat}) ==")
    print(f"{'run':24} {'wall':>8} {'wall/host':>10} {'controller CPU':>15} {'CPU/host':>9}  matrix")
    base = None
    for name, runs in rows.items():
        wall = statistics.median(r[0] for r in runs)
        cpu = statistics.median(r[1] for r in runs)
        cells = sorted({v for r in runs for m in r[2].values() for v in m.values()})
        print(
            f"{name:24} {wall:>6.2f} s {wall / count:>8.2f} s {cpu:>12.2f} s {cpu / count:>7.2f} s  "
            f"{len(runs[0][2])} hosts, cells {'/'.join(cells)}"
        )
        if base is None:
            base = (wall, cpu)
        else:
            print(f"{'playbook / pytest':24} {wall / base[0]:>7.2f}x {'':>10} {cpu / base[1]:>13.2f}x")
    for i, (ours, theirs) in enumerate(zip(rows[suite_run], rows[play_run], strict=True)):
        diff = {
            (h, st): (v, theirs[2].get(h, {}).get(st))
            for h, m in ours[2].items()
            for st, v in m.items()
            if theirs[2].get(h, {}).get(st) != v
        }
        # on a shared machine another run may change libvirt's networks and pools between the two runs
        print(
            f"run {i + 1}: the same host x stage matrix from both: "
            f"{not diff and ours[2].keys() == theirs[2].keys()}" + (f" (differs: {diff})" if diff else "")
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,5000", help="inventory sizes, comma-separated (0: skip)")
    parser.add_argument(
        "--fleet", type=int, default=6, help="loopback sshd targets for the fleet part (0: skip)"
    )
    parser.add_argument("--workers", type=int, default=4, help="pytest -n and ansible-playbook -f")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(
        f"load average at start: {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs "
        "(a shared machine: wall times include waiting for a CPU; CPU seconds do not)"
    )
    with tempfile.TemporaryDirectory(prefix="kvmqa-bench-inv-") as d:
        work = Path(d)
        sizes = [int(s) for s in args.sizes.split(",") if int(s)]
        if sizes:
            bench_loading(sizes, args.repeat, work)
        if args.fleet:
            os.chmod(work, 0o755)
            bench_fleet(args.fleet, args.workers, args.repeat, work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
