"""What a cluster test does to lab hosts, and the plain commands that say what is true there (never kvmqa).

    sync_clock(lab, "lab2", "lab1")           # lab2's clock set from lab1's over the segment
    with clock_off(lab, "lab2", 5.0, "lab1"), migration_port_dropped(lab2, 1), pool_only_on(lab1):
        ...                                   # each fault undone when the block ends, also on errors

Every thing made is named kvmqa-... (the iptables rule's comment, the pool, its directory).
"""

from __future__ import annotations

import contextlib
import json
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.lab.boot import LabHost
from tests.lab.cluster import Lab, segment_address

REPO = Path(__file__).resolve().parents[2]
MIGRATION_PORT = 49152  # qemu.conf's migration_port_min on a stock Debian host
RULE_TAG = "kvmqa-lab-fault"
FAULT_POOL = "kvmqa-fault-pool"

# On a host, as root: a peer's clock against its own, read through one ssh connection (the tightest of seven
# brackets): "offset bound". An ssh client's start-up biases it one way; sync_clock reads both ways.
READ_PY = r"""
import subprocess, sys, time
peer = sys.argv[1]
mux = ["ssh", "-o", "BatchMode=yes", "-o", "ControlPath=/tmp/kvmqa-sync-%s" % peer]
subprocess.run(mux + ["-o", "ControlMaster=yes", "-o", "ControlPersist=30", "-fN", "root@" + peer],
               check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
best = None
for _ in range(7):
    t0 = time.time()
    theirs = float(subprocess.run(mux + ["root@" + peer, "date +%s.%N"], capture_output=True, text=True,
                                  stdin=subprocess.DEVNULL).stdout)
    t1 = time.time()
    if best is None or t1 - t0 < best[0]:
        best = (t1 - t0, theirs - (t0 + t1) / 2)
subprocess.run(mux + ["-O", "exit", "root@" + peer], stderr=subprocess.DEVNULL)
print("%.4f %.4f" % (best[1], best[0] / 2))
"""


def read_clock(host: LabHost, peer: str) -> tuple[float, float]:
    """On host: how far peer's clock is ahead of host's, ± half the tightest bracket."""
    out = host.sudo(f"python3 -c {shlex.quote(READ_PY)} {peer}", check=True, timeout=180).stdout.split()
    return float(out[0]), float(out[1])


def sync_clock(lab: Lab, name: str, reference: str) -> tuple[float, float]:
    """Set host `name`'s clock to `reference`'s, as a time daemon would (there is no time server on the
    segment): read both ways, the bias of each reading cancels; the seconds it moved, ± the bound."""
    there, u1 = read_clock(lab[name], reference)  # reference - name, + bias
    back, u2 = read_clock(lab[reference], name)  # name - reference, + bias
    low, high = max(there - u1, -back - u2), min(there + u1, -back + u2)
    lead, bound = ((low + high) / 2, (high - low) / 2) if low <= high else ((there - back) / 2, (u1 + u2) / 2)
    shift_clock(lab[name], lead)
    return lead, bound


def shift_clock(host: LabHost, seconds: float) -> None:
    host.sudo(
        f"python3 -c 'import time; time.clock_settime(time.CLOCK_REALTIME, time.time() + {seconds})'",
        check=True,
        timeout=120,
    )


def clock_gap(source: LabHost, peer: str) -> tuple[float, float]:
    """Plain commands on source: `date +%s.%N` there, on peer over ssh, there again. The peer's lead over
    source lies between (its clock - after) and (its clock - before); ssh's log-in comes before the peer's
    `date`, so the first is the nearer."""
    out = source.sudo(
        f"date +%s.%N; ssh -o BatchMode=yes root@{peer} date +%s.%N; date +%s.%N", check=True, timeout=180
    ).stdout.split()
    before, theirs, after = map(float, out)
    return theirs - after, theirs - before


@contextlib.contextmanager
def clock_off(lab: Lab, name: str, seconds: float, reference: str) -> Iterator[None]:
    """Host `name`'s clock `seconds` ahead for the block; afterwards set from `reference`'s again."""
    shift_clock(lab[name], seconds)
    try:
        yield
    finally:
        sync_clock(lab, name, reference)


@contextlib.contextmanager
def migration_port_dropped(host: LabHost, peer_index: int, port: int = MIGRATION_PORT) -> Iterator[str]:
    """An iptables rule on host dropping TCP to `port` from the peer's segment address; removed afterwards."""
    rule = (
        f"INPUT -s {segment_address(peer_index)} -p tcp --dport {port} -j DROP "
        f"-m comment --comment {RULE_TAG}"
    )
    host.sudo(f"iptables -I {rule}", check=True)
    try:
        yield rule
    finally:
        host.sudo(f"while iptables -D {rule} 2>/dev/null; do :; done")


@contextlib.contextmanager
def pool_only_on(host: LabHost, name: str = FAULT_POOL) -> Iterator[str]:
    """A dir pool started on this host only (transient); destroyed with its directory afterwards."""
    path = f"/var/lib/libvirt/{name}"
    host.sudo(f"mkdir -p {path} && virsh -q pool-create-as {name} dir --target {path} >/dev/null", check=True)
    try:
        yield name
    finally:
        host.sudo(f"virsh -q pool-destroy {name} >/dev/null 2>&1; rmdir {path} 2>/dev/null; true")


def port_state(source: LabHost, peer: str, port: int) -> str:
    """Plain bash on source: TCP to peer:port within 3 s -> open / refused / filtered (a timeout)."""
    proc = source.run(f"timeout 3 bash -c 'exec 3<>/dev/tcp/{peer}/{port}'", timeout=60)
    if proc.returncode == 0:
        return "open"
    return "filtered" if proc.returncode == 124 else ("refused" if "refused" in proc.stderr else proc.stderr)


def machines(host: LabHost) -> set[str]:
    """The machine types the host's QEMU offers (`qemu-system-x86_64 -machine help`), aliases included."""
    out = host.run("qemu-system-x86_64 -machine help", check=True, timeout=120).stdout
    return {line.split()[0] for line in out.splitlines()[1:] if line.strip()}


def default_machine(host: LabHost) -> str:
    """The machine type libvirt gives a KVM guest that names none (`virsh domcapabilities`' <machine>)."""
    xml = host.sudo("virsh domcapabilities --virttype kvm", check=True, timeout=120).stdout
    found = re.search(r"<machine>([^<]+)</machine>", xml)
    return found.group(1) if found else ""


def host_model_compare(lab: Lab, source: str, destination: str) -> tuple[int, str]:
    """On source: its own domcapabilities (host-model CPU) compared on destination over qemu+ssh:
    `virsh hypervisor-cpu-compare --error`; exit status and libvirt's sentence."""
    proc = lab[source].sudo(
        f"virsh domcapabilities --virttype kvm > /tmp/kvmqa-caps.xml && "
        f"virsh -c qemu+ssh://root@{destination}/system hypervisor-cpu-compare --error "
        "/tmp/kvmqa-caps.xml; rc=$?; rm -f /tmp/kvmqa-caps.xml; exit $rc",
        timeout=240,
    )
    return proc.returncode, (proc.stdout + proc.stderr).strip()


def run_cluster_stage(
    lab: Lab, reports: Path, *, by_url: bool = False, select: tuple[str, ...] = ("suites/test_65_cluster.py",)
) -> tuple[dict[str, Any], str, float]:
    """`pytest suites/...` (what ./run suite runs) against the lab, through a kvmqa inventory or (by_url) as
    `--hosts ssh://qa@127.0.0.1:PORT,... --sudo`: results.json, the terminal's cluster section and the
    seconds it took."""
    if by_url:
        known = reports.parent / f"{reports.name}-known_hosts"
        known.write_text("".join(h.known_hosts.read_text() for h in lab.hosts))
        keys = {str(h.key) for h in lab.hosts}
        assert len(keys) == 1, f"--hosts takes one identity file: {keys}"
        where = [
            "--hosts",
            ",".join(h.url() for h in lab.hosts),
            "--sudo",
            "--ssh-identity-file",
            keys.pop(),
            "--known-hosts",
            str(known),
        ]
    else:
        where = ["--inventory", str(lab.write_inventory(reports.parent / f"{reports.name}-inventory.yaml"))]
    started = time.monotonic()
    command = [
        sys.executable,
        "-m",
        "pytest",
        *select,
        *where,
        "--reports-dir",
        str(reports),
        "-p",
        "no:cacheprovider",
    ]
    proc = subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, timeout=1200, stdin=subprocess.DEVNULL
    )
    seconds = time.monotonic() - started
    results = reports / "results.json"
    if not results.exists():
        raise AssertionError(
            f"no results.json (exit {proc.returncode}): {proc.stdout[-3000:]}{proc.stderr[-2000:]}"
        )
    text = proc.stdout
    start = text.find("kvmqa: hosts x stages")
    return (
        json.loads(results.read_text()),
        text[start : text.find("reports:", start)] if start >= 0 else "",
        seconds,
    )


def verdicts(results: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {r["check_id"]: (r["verdict"], r["message"]) for r in results["results"] if r["host"] == "cluster"}
