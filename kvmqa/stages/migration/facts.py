"""The migration stage's facts: what the guest printed (heartbeats), what libvirt measured (job statistics),
and which cluster check a libvirt failure points at. Pure functions, read from recorded text in the tests.

    >>> [b.n for b in parse_beats("KVMQA-HB n=7 boot=b disk=- up=3.1\\nKVMQA-HB n=8 boot=b disk=- up=3.6\\n")]
    [7, 8]
    >>> link_failure("unable to connect to server at 'lab2:49152': Connection timed out")
    'cluster.reach'
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

BEAT = re.compile(r"KVMQA-HB n=(\d+) boot=(\S+) disk=(\S+) up=([0-9.]+)\s*$")
BOOT_MARK = "KVMQA-BOOT "
TOKEN = re.compile(r"KVMQA-HB:([0-9a-f-]+):(\d+)")

# libvirt's words for a failed migration -> the cluster check that looks at that condition (first match wins)
FAILURE_PATTERNS: tuple[tuple[str, str], ...] = (
    (r"machine type|unsupported machine|machine '[^']*' .*not supported", "cluster.machine-types"),
    (r"cpu|features?\b.*(missing|lacks|not supported|requires)|host cpu", "cluster.cpu-pairwise"),
    (r"host key|permission denied|authentication|publickey|could not read from remote", "cluster.trust"),
    (r"could not resolve|name or service not known|temporary failure in name resolution", "cluster.names"),
    (
        r"connect(ion)? to server|connection (timed out|refused)|no route to host|network is unreachable"
        r"|port \d+|:\d{4,5}'",
        "cluster.reach",
    ),
    (r"storage pool|no storage vol|cannot access storage|no such file or directory", "cluster.storage"),
    (r"network '[^']*' not found|network .* is not active", "cluster.networks"),
)
# the cluster checks that speak about a guest only when the guest is of a kind (see relevant_checks)
CPU_MODES_OF_THE_HOST = ("host-model", "host-passthrough")


@dataclass(frozen=True)
class Beat:
    """One heartbeat line of the guest: counter, boot id, the disk token result, the guest's monotonic
    clock (seconds since its boot, /proc/uptime)."""

    n: int
    boot: str
    disk: str  # "-" (not this beat), "ok:N" (token N written and read back past the cache), "fail:N"
    up: float


def complete_lines(text: str) -> list[str]:
    """The lines of a console log that are complete (a line cut by the switch-over is not one)."""
    return [line.rstrip("\r") for line in text.split("\n")[:-1]]


def parse_beats(text: str) -> list[Beat]:
    out = []
    for line in complete_lines(text):
        found = BEAT.search(line)
        if found:
            out.append(Beat(int(found[1]), found[2], found[3], float(found[4])))
    return out


def boots(text: str) -> int:
    """How often the guest's /init started in this console text (a restart shows as a second one)."""
    return sum(1 for line in complete_lines(text) if BOOT_MARK in line)


def hop_heartbeat(before: str, after: str, interval_s: float) -> dict[str, Any]:
    """The proof from inside the guest for one move: the source's console until the switch-over (`before`),
    the destination's after it. The guest kept running when both show beats of one boot id, the counter goes
    on strictly increasing on the destination, and no new boot started there; the largest gap between two
    beats is measured on the guest's own monotonic clock."""
    src, dst = parse_beats(before), parse_beats(after)
    beats = src + dst
    ids = sorted({b.boot for b in beats})
    increasing = all(b.n > a.n for a, b in zip(beats, beats[1:], strict=False))
    gaps = [round(b.up - a.up, 3) for a, b in zip(beats, beats[1:], strict=False)]
    disk_after = next((b.disk for b in dst if b.disk != "-"), "")
    out: dict[str, Any] = {
        "source_beats": len(src),
        "destination_beats": len(dst),
        "last_on_source": src[-1].n if src else None,
        "first_on_destination": dst[0].n if dst else None,
        "boot_ids": ids,
        "restarted": boots(after) > 0,
        "increasing": increasing,
        "lost": (dst[0].n - src[-1].n - 1) if src and dst else None,
        "max_gap_s": max(gaps) if gaps else None,
        "interval_s": interval_s,
        "disk_after": disk_after,
    }
    problems = []
    if not src:
        problems.append("no heartbeat on the source's console before the move")
    if not dst:
        problems.append("no heartbeat on the destination's console after the move")
    if len(ids) > 1:
        problems.append(f"{len(ids)} boot ids ({', '.join(ids)}): the guest restarted")
    if out["restarted"]:
        problems.append("the guest's /init started again on the destination")
    if not increasing:
        problems.append("the heartbeat counter went back")
    out["problems"] = problems
    out["ok"] = not problems
    return out


def disk_token(data: bytes) -> tuple[str, int] | None:
    """The heartbeat token in the disk's second sector as the host reads it: (boot id, counter)."""
    found = TOKEN.search(data.decode("ascii", "replace"))
    return (found[1], int(found[2])) if found else None


# -- libvirt's job statistics ------------------------------------------------------------------------------
def figures(stats: Mapping[str, Any]) -> dict[str, Any]:
    """The figures of a completed migration job (virDomainGetJobStats with VIR_DOMAIN_JOB_STATS_COMPLETED,
    what `virsh domjobinfo --completed` prints), in one shape: times in ms, data in bytes, dirty rate in
    pages/s where QEMU reports it (None where it does not)."""

    def num(key: str) -> int | None:
        value = stats.get(key)
        return int(value) if isinstance(value, (int, float)) else None

    return {
        "total_ms": num("time_elapsed"),
        "downtime_ms": num("downtime"),
        "setup_ms": num("setup_time"),
        "data_bytes": num("data_processed") if num("data_processed") is not None else num("data_total"),
        "memory_bytes": num("memory_processed"),
        "disk_bytes": num("disk_processed"),
        "dirty_rate_pages_s": num("memory_dirty_rate"),
        "iterations": num("memory_iteration"),
    }


UNITS = {"B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3, "TiB": 1024**4}
DOMJOBINFO = {
    "Time elapsed": "time_elapsed",
    "Total downtime": "downtime",
    "Setup time": "setup_time",
    "Data processed": "data_processed",
    "Data total": "data_total",
    "Memory processed": "memory_processed",
    "File processed": "disk_processed",
    "Dirty rate": "memory_dirty_rate",
    "Iteration": "memory_iteration",
}


def parse_domjobinfo(text: str) -> dict[str, int]:
    """`virsh domjobinfo --completed` as plain text -> the job stats keys libvirt's API uses (times in ms,
    sizes in bytes: virsh rounds them to 0.001 of its unit)."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        name = DOMJOBINFO.get(key.strip())
        words = value.split()
        if name is None or not words:
            continue
        try:
            number = float(words[0])
        except ValueError:
            continue
        scale = UNITS.get(words[1], 1) if len(words) > 1 else 1
        out[name] = int(round(number * scale))
    return out


# -- predictions -------------------------------------------------------------------------------------------
def link_failure(message: str) -> str:
    """The cluster check that looks at what libvirt's failure message names ('' when none does)."""
    lowered = message.lower()
    return next((check for pattern, check in FAILURE_PATTERNS if re.search(pattern, lowered)), "")


def relevant_checks(
    refusals: Sequence[Mapping[str, str]], cpu: str, machine: str, storage: str
) -> list[dict]:
    """The cluster checks' refusals of a pair that speak about this guest: cluster.cpu-pairwise only for a
    guest with its host's CPU (host-model), cluster.machine-types only for a guest on the source's default
    machine type, cluster.storage only for a guest whose disk is on the shared pool."""
    out = []
    for r in refusals:
        if r["check"] == "cluster.cpu-pairwise" and cpu not in CPU_MODES_OF_THE_HOST:
            continue
        if r["check"] == "cluster.machine-types" and machine:
            continue
        if r["check"] == "cluster.storage" and storage != "shared":
            continue
        out.append(dict(r))
    return out


def predicted_by(message: str, refusals: Sequence[Mapping[str, str]]) -> dict[str, str]:
    """How a failed move relates to what the cluster checks said of its pair: the check libvirt's reason
    points at when that check refused the pair; else the pair's first refusal when libvirt's words name no
    check; else nothing (a gap in the predictions: `linked` says which check should have seen it)."""
    linked = link_failure(message)
    by_check = {r["check"]: r for r in refusals}
    if linked and linked in by_check:
        return {"check": linked, "reason": by_check[linked]["reason"], "linked": linked}
    if not linked and refusals:
        return {"check": refusals[0]["check"], "reason": refusals[0]["reason"], "linked": ""}
    return {"check": "", "reason": "", "linked": linked}


def plan_pairs(hosts: Sequence[str], how: str = "ring") -> list[tuple[str, str]]:
    """The ordered pairs to migrate: a ring (each host once source, once destination: a→b, b→c, c→a) or
    every ordered pair ('all'), ordered so that the guest can travel from one to the next."""
    if len(hosts) < 2:
        return []
    ring = [(hosts[i], hosts[(i + 1) % len(hosts)]) for i in range(len(hosts))]
    if how != "all" or len(hosts) == 2:
        return ring
    rest = [(a, b) for a in hosts for b in hosts if a != b and (a, b) not in ring]
    out, here = list(ring), hosts[0]
    while rest:
        step = next((p for p in rest if p[0] == here), rest[0])
        rest.remove(step)
        out.append(step)
        here = step[1]
    return out


@dataclass(frozen=True)
class Migration:
    """facts["migration"], what the checks read: the hosts, the settings, the pairs planned, the cluster
    checks' refusals per pair (predictions[source][destination]), each move (`hops`), each guest and what
    every host still holds afterwards."""

    SECTION: ClassVar[str] = "migration"
    hosts: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    storage: list[str] = field(default_factory=list)
    pairs: list[list[str]] = field(default_factory=list)
    predictions: dict[str, dict[str, list[dict[str, str]]]] = field(default_factory=dict)
    hops: list[dict[str, Any]] = field(default_factory=list)
    guests: list[dict[str, Any]] = field(default_factory=list)
    removed: dict[str, list[str]] = field(default_factory=dict)
    leftovers: dict[str, list[str]] = field(default_factory=dict)
    other_leftovers: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    error: str = ""
    duration_s: float = 0.0
