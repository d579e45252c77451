"""Stage migration: a running guest moves between the run's hosts, proven from inside it and by libvirt.

Each check reads `facts.view(Migration)`; every move is one record (`hops`) with its pair, storage mode, the
cluster checks' refusals of that pair that speak about this guest (the prediction), libvirt's outcome and
figures, and the heartbeat read on both consoles. `details["migrations"]` of migration.live carries one
cell per ordered pair for the host x host matrix (prediction and measured outcome, downtime).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kvmqa.config.profile import Profile
from kvmqa.core.checks import StageChecks
from kvmqa.core.facts import HostFacts
from kvmqa.core.model import Level, Outcome, failed, not_applicable, passed, undecided
from kvmqa.stages.migration.facts import Migration

CHECKS = StageChecks("migration")
DEFAULT_MAX_DOWNTIME_MS = 1000
DEFAULT_MAX_TOTAL_S = 60.0
SHOWN = 4


def view(facts: HostFacts) -> Migration:
    return facts.view(Migration)


def pair(hop: dict[str, Any]) -> str:
    return f"{hop['source']} → {hop['destination']} ({hop['storage']})"


def failure_line(hop: dict[str, Any]) -> str:
    """One line per failed move: the pair, libvirt's reason, the check that predicted it (or that none
    did), and where the guest is now."""
    p = hop.get("prediction") or {}
    if p.get("check"):
        said = f"predicted by {p['check']} ({p['reason']})"
    elif p.get("linked"):
        said = f"NOT predicted: {p['linked']} passed this pair"
    else:
        said = "NOT predicted by any cluster check"
    where = (
        f"the guest is still running on {hop['source']}"
        if hop.get("still_on_source")
        else f"the guest is {hop.get('source_state', '?')} on {hop['source']}"
    )
    return f"{pair(hop)} failed: {hop.get('error', '?')}; {said}; {where}"


def shorten(items: list[str]) -> str:
    return "; ".join(items[:SHOWN]) + (f"; and {len(items) - SHOWN} more" if len(items) > SHOWN else "")


def matrix_cells(m: Migration) -> list[dict[str, Any]]:
    """Per move, what the host x host matrix shows in its cell: predicted (the cluster checks refused it
    or not), outcome and downtime."""
    out = []
    for hop in m.hops:
        figs = hop.get("figures") or {}
        out.append(
            {
                "source": hop["source"],
                "destination": hop["destination"],
                "storage": hop["storage"],
                "predicted": "refused" if hop.get("refusals") else "able",
                "predicted_by": [r["check"] for r in hop.get("refusals", [])],
                "ok": bool(hop.get("ok")),
                "reason": "" if hop.get("ok") else str(hop.get("error", "")),
                "downtime_ms": figs.get("downtime_ms"),
                "total_ms": figs.get("total_ms"),
                "guest_gap_s": (hop.get("heartbeat") or {}).get("max_gap_s"),
            }
        )
    return out


MigrationFn = Callable[[HostFacts, Profile], Outcome]


def migration_check(
    check_id: str, title: str, *, level: Level = Level.FAIL, hint: str = ""
) -> Callable[[MigrationFn], MigrationFn]:
    """A check over the stage's moves; not applicable with fewer than two hosts, undecided when the stage
    could not set up."""

    def register(fn: MigrationFn) -> MigrationFn:
        def check(facts: HostFacts, profile: Profile) -> Outcome:
            m = view(facts)
            if len(m.hosts) < 2:
                return not_applicable(
                    f"one host in this run ({', '.join(m.hosts) or 'none'}): nothing to move"
                )
            if m.error and not m.hops:
                return undecided(f"no move tried: {m.error}")
            return fn(facts, profile)

        CHECKS.check(check_id, title, level=level, hint=hint)(check)
        return fn

    return register


@migration_check(
    "migration.live",
    "A running guest live-migrates along each pair",
    hint="Read libvirt's reason and the cluster check named beside it (its hint says what to change); "
    "/var/log/libvirt/qemu/GUEST.log on both hosts has QEMU's side",
)
def live(facts: HostFacts, profile: Profile) -> Outcome:
    m = view(facts)
    failures = [failure_line(h) for h in m.hops if not h.get("ok")]
    if m.error:  # the stage stopped before the last pair
        failures.append(f"stopped: {m.error}")
    cells = matrix_cells(m)
    done = [
        f"{pair(h)} in {h.get('seconds', 0):.1f} s"
        + (
            f", downtime {h['figures']['downtime_ms']} ms"
            if (h.get("figures") or {}).get("downtime_ms")
            else ""
        )
        for h in m.hops
        if h.get("ok")
    ]
    details: dict[str, Any] = {"migrations": cells, "hosts": m.hosts, "storage": m.storage}
    if failures:
        return failed(shorten(failures), **details)
    return passed(f"{len(done)} moves: {'; '.join(done)}", **details)


@migration_check(
    "migration.predicted",
    "Every failed move was predicted by a cluster check",
    hint="A failure no cluster check predicted is a gap in the predictions: report it with the pair, "
    "libvirt's reason and the cluster stage's facts (reports/cluster/facts.json)",
)
def predicted(facts: HostFacts, profile: Profile) -> Outcome:
    m = view(facts)
    gaps = [
        failure_line(h) for h in m.hops if not h.get("ok") and not (h.get("prediction") or {}).get("check")
    ]
    alarms = [
        f"{pair(h)} moved although {', '.join(r['check'] for r in h['refusals'])} refused it "
        f"({h['refusals'][0]['reason']})"
        for h in m.hops
        if h.get("ok") and h.get("refusals")
    ]
    if gaps:
        return failed(shorten(gaps), gaps=gaps, false_alarms=alarms)
    if alarms:
        return failed(shorten(alarms), level=Level.WARN, gaps=[], false_alarms=alarms)
    tried = len(m.hops)
    bad = sum(1 for h in m.hops if not h.get("ok"))
    return passed(f"the cluster checks predicted each of {tried} moves ({bad} refused and failed)")


@migration_check(
    "migration.heartbeat",
    "The guest kept running across each move (its heartbeat goes on, same boot)",
    hint="A guest that restarted or stopped beating on the destination was not live-migrated: see the "
    "consoles' text in the details and QEMU's log on the destination",
)
def heartbeat(facts: HostFacts, profile: Profile) -> Outcome:
    m = view(facts)
    moved = [h for h in m.hops if h.get("ok")]
    if not moved:
        return not_applicable("no move succeeded: no heartbeat to follow")
    problems, seen = [], []
    for h in moved:
        hb = h.get("heartbeat") or {}
        if not hb.get("ok"):
            problems.append(f"{pair(h)}: {', '.join(hb.get('problems', ['not read']))}")
        else:
            lost = f", {hb['lost']} beat(s) cut by the switch-over" if hb.get("lost") else ""
            seen.append(
                f"{pair(h)}: beat {hb['last_on_source']} on {h['source']}, {hb['first_on_destination']} on "
                f"{h['destination']}{lost}, largest gap {hb['max_gap_s']} s (guest clock)"
            )
    beats = {pair(h): h.get("heartbeat") for h in moved}
    if problems:
        return failed(shorten(problems), beats=beats)
    boot_ids = sorted({b for h in moved for b in (h.get("heartbeat") or {}).get("boot_ids", [])})
    note = (
        "; the guest's clock (kvm-clock) does not count the time it was paused: "
        "libvirt's downtime is in migration.downtime"
    )
    return passed(f"{'; '.join(seen)}; boot ids {', '.join(boot_ids)}{note}", beats=beats)


@migration_check(
    "migration.disk",
    "The guest's disk stays writable after each move, and its last write is on the disk where it ended",
    hint="A disk that is read-only or stale after the move: check the storage mode (shared pool mounted "
    "the same on both hosts; --copy-storage-all finished) and QEMU's log on the destination",
)
def disk(facts: HostFacts, profile: Profile) -> Outcome:
    m = view(facts)
    moved = [h for h in m.hops if h.get("ok")]
    if not moved:
        return not_applicable("no move succeeded: no disk to follow")
    problems, seen = [], []
    for h in moved:
        after = (h.get("heartbeat") or {}).get("disk_after", "")
        if not after.startswith("ok:"):
            problems.append(f"{pair(h)}: no token written and read back after the move ({after or 'none'})")
        else:
            seen.append(f"{pair(h)}: token {after[3:]}")
    for g in m.guests:
        token, wrote = g.get("disk_token") or {}, g.get("last_token_seen")
        if not g.get("where") and not token:
            continue
        if wrote is None:
            continue
        if token.get("n") is None or token.get("boot") != g.get("boot_id") or token["n"] < wrote:
            problems.append(
                f"{g['name']}: the guest wrote token {wrote} on {token.get('host')}, the disk there holds "
                f"{token.get('n', token.get('error', 'no token'))}"
            )
        else:
            seen.append(f"{g['name']} ended on {token['host']} with token {token['n']} on its disk")
    if problems:
        return failed(shorten(problems), guests=m.guests)
    return passed("; ".join(seen), guests=m.guests)


@migration_check(
    "migration.downtime",
    "libvirt's figures of each move are within the profile's limits",
    hint="Downtime or total time over the limit: check the migration network's bandwidth and latency, the "
    "guest's dirty rate, and QEMU's downtime-limit (virsh migrate-setmaxdowntime); a nested lab needs "
    "the nested-lab profile's limits",
)
def downtime(facts: HostFacts, profile: Profile) -> Outcome:
    m = view(facts)
    moved = [h for h in m.hops if h.get("ok")]
    if not moved:
        return not_applicable("no move succeeded: no figures")
    limits = profile.stage("migration")
    max_ms = int(limits.get("max_downtime_ms", DEFAULT_MAX_DOWNTIME_MS))
    max_s = float(limits.get("max_total_s", DEFAULT_MAX_TOTAL_S))
    problems, seen = [], []
    for h in moved:
        f = h.get("figures") or {}
        if f.get("downtime_ms") is None or f.get("total_ms") is None:
            problems.append(
                f"{pair(h)}: libvirt reported no completed-job figures ({h.get('stats_error', '')})"
            )
            continue
        data = f"{(f.get('data_bytes') or 0) / 2**20:.1f} MiB"
        dirty = (
            f", dirty rate {f['dirty_rate_pages_s']} pages/s"
            if f.get("dirty_rate_pages_s") is not None
            else ""
        )
        text = (
            f"{pair(h)}: total {f['total_ms'] / 1000:.1f} s, downtime {f['downtime_ms']} ms, "
            f"setup {f.get('setup_ms')} ms, {data}{dirty}"
        )
        seen.append(text)
        if f["downtime_ms"] > max_ms:
            problems.append(f"{pair(h)}: downtime {f['downtime_ms']} ms > {max_ms} ms")
        if f["total_ms"] / 1000 > max_s:
            problems.append(f"{pair(h)}: total {f['total_ms'] / 1000:.1f} s > {max_s:g} s")
    figures = {pair(h): h.get("figures") for h in moved}
    limits_text = f"limits: downtime {max_ms} ms, total {max_s:g} s"
    if problems:
        return failed(f"{shorten(problems)}; {limits_text}", figures=figures)
    return passed(f"{'; '.join(seen)}; {limits_text}", figures=figures)


@migration_check(
    "migration.cleanup",
    "Nothing the stage made is left on any host",
    hint="Remove what is named with `kvmqa --cleanup` (or virsh destroy / vol-delete / pool-destroy on the "
    "host named)",
)
def cleanup(facts: HostFacts, profile: Profile) -> Outcome:
    m = view(facts)
    left = {h: items for h, items in m.leftovers.items() if items}
    removed = sum(len(v) for v in m.removed.values())
    if left:
        return failed(
            "; ".join(f"left on {h}: {', '.join(items)}" for h, items in left.items()), leftovers=left
        )
    others = {h: items for h, items in m.other_leftovers.items() if items}
    note = f"; other kvmqa- objects (not this run's): {others}" if others else ""
    return passed(f"{removed} objects removed on {len(m.removed)} hosts, none left{note}", removed=m.removed)
