"""Stage cluster: whether the run's hosts can take each other's guests, decided before anything moves.

Each check reads the cluster's facts (`facts.view(Cluster)`: hosts, missing, members, cross) and names
the ordered pairs it blocks in `details["pairs"]` ({source, destination, reason}): the report's host x host
matrix shows, per pair, the first failing check and its reason. With one host every check is not applicable;
a host whose facts could not be gathered is named as not judged (an ERROR), never left out.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from kvmqa.config.profile import Profile
from kvmqa.core.checks import StageChecks
from kvmqa.core.facts import HostFacts
from kvmqa.core.model import Level, Outcome, failed, not_applicable, passed, undecided
from kvmqa.stages.cluster.facts import SSH_PORT, Cluster, peer_offset

CHECKS = StageChecks("cluster")
DEFAULT_TIME_SKEW_S = 0.5
REACHABLE = ("open", "refused")  # a refused connection is an answer: the host is there, nothing listens yet
SHOWN = 4  # reasons a message spells out; the details carry all


@dataclass(frozen=True)
class Problem:
    """Why a pair cannot move guests (source -> destination), or why a host cannot (destination or source
    '')."""

    reason: str
    source: str = ""
    destination: str = ""
    host: str = ""  # a host-wide problem: every pair with this host


def view(facts: HostFacts) -> Cluster:
    return facts.view(Cluster)


def members(facts: HostFacts) -> list[str]:
    found = view(facts)
    return list(found.members or [*found.hosts, *found.missing])


def ordered_pairs(names: list[str]) -> list[tuple[str, str]]:
    return [(a, b) for a in names for b in names if a != b]


def present_pairs(facts: HostFacts) -> list[tuple[str, str]]:
    return ordered_pairs([n for n in members(facts) if n in view(facts).hosts])


def pair_rows(names: list[str], problems: list[Problem]) -> list[dict[str, str]]:
    """Each problem as the ordered pairs it blocks, the first reason per pair."""
    rows: dict[tuple[str, str], str] = {}
    for p in problems:
        for a, b in ordered_pairs(names):
            if (p.host and p.host in (a, b)) or (p.source == a and p.destination == b):
                rows.setdefault((a, b), p.reason)
    return [{"source": a, "destination": b, "reason": r} for (a, b), r in rows.items()]


def conclude(
    facts: HostFacts,
    problems: list[Problem],
    ok: str,
    note: str = "",
    cluster_wide: bool = False,
    **details: Any,
) -> Outcome:
    """The outcome of a cluster check: hosts not judged first (an ERROR naming them), then its problems (the
    note closes the message either way). A cluster-wide check's problems refuse no pair of the matrix (only
    its hosts not judged do): the pairs are the pairwise checks' to decide."""
    names = members(facts)
    not_judged = [Problem(f"{h} not judged: {why}", host=h) for h, why in view(facts).missing.items()]
    problems = not_judged + problems
    details = {**details, "pairs": pair_rows(names, not_judged if cluster_wide else problems), "hosts": names}
    if not problems:
        return passed(f"{ok}; {note}" if note else ok, **details)
    reasons = list(dict.fromkeys(p.reason for p in problems))
    text = "; ".join(reasons[:SHOWN]) + (f"; and {len(reasons) - SHOWN} more" if len(reasons) > SHOWN else "")
    text += f"; {note}" if note else ""
    if view(facts).missing:
        return undecided(text, **details)
    return failed(text, **details)


ClusterFn = Callable[[HostFacts, Profile], Outcome]


# What each check needs measured between the hosts (the cluster's one round trip per host); a check not named
# here decides from the hosts' own facts alone, so the Ansible path (`kvmqa evaluate-cluster`) decides it too.
MEASURED: dict[str, str] = {}


def cluster_check(
    check_id: str, title: str, *, level: Level = Level.FAIL, hint: str = "", measured: str = ""
) -> Callable[[ClusterFn], ClusterFn]:
    """A check over the cluster's facts; with fewer than two hosts in the run it is not applicable.
    `measured`: what it needs measured between the hosts; without that (facts from probe outputs alone) it
    says so and decides nothing."""

    def register(fn: ClusterFn) -> ClusterFn:
        def check(facts: HostFacts, profile: Profile) -> Outcome:
            names = members(facts)
            if len(names) < 2:
                return not_applicable(
                    f"one host in this run ({', '.join(names) or 'none'}): "
                    "a cluster check compares two or more",
                    hosts=names,
                )
            if measured and view(facts).offline:
                return not_applicable(
                    f"not measured: it needs {measured}, and {view(facts).offline}; run kvmqa's suites "
                    "over the same hosts (pytest suites --inventory INVENTORY) to measure it",
                    hosts=names,
                    pairs=[],
                    needs=measured,
                )
            return fn(facts, profile)

        if measured:
            MEASURED[check_id] = measured

        CHECKS.check(check_id, title, level=level, hint=hint)(check)
        return fn

    return register


def host(facts: HostFacts, name: str) -> dict[str, Any]:
    return dict(view(facts).hosts[name])


def cross(facts: HostFacts, *keys: str) -> Any:
    value: Any = view(facts).cross
    for k in keys:
        value = value.get(k, {}) if isinstance(value, Mapping) else {}
    return value


def listing(values: Mapping[str, str]) -> str:
    return ", ".join(f"{v} ({h})" for h, v in values.items())


# -- CPU -----------------------------------------------------------------------------------------------------
@cluster_check(
    "cluster.cpu-vendor-arch",
    "One CPU vendor and architecture on every host",
    hint="Guests cannot move between CPU vendors or architectures: keep such hosts in separate clusters",
)
def cpu_vendor_arch(facts: HostFacts, profile: Profile) -> Outcome:
    kinds = {
        n: f"{host(facts, n)['vendor'] or '?'} {host(facts, n)['arch'] or '?'}" for n in view(facts).hosts
    }
    problems = [
        Problem(f"{a} is {kinds[a]}, {b} is {kinds[b]}", a, b)
        for a, b in present_pairs(facts)
        if kinds[a] != kinds[b]
    ]
    return conclude(facts, problems, f"every host is {next(iter(kinds.values()), '?')}", kinds=kinds)


@cluster_check(
    "cluster.cpu-baseline",
    "libvirt computes a common CPU model every host runs",
    hint="Give guests the baseline CPU (virsh hypervisor-cpu-baseline --features --migratable over "
    "every host's domcapabilities) or a named model below it; a host that cannot run it needs "
    "its CPU features (BIOS, microcode, kernel) brought in line or another cluster",
    measured="libvirt's baseline CPU computed over every host's domain capabilities by a host's libvirt",
)
def cpu_baseline(facts: HostFacts, profile: Profile) -> Outcome:
    cpu = cross(facts, "cpu")
    if not cpu or cpu.get("error"):
        return conclude(
            facts,
            [Problem(f"no baseline: {cpu.get('error', 'not computed')}", host=h) for h in view(facts).hosts],
            "",
            cluster_wide=True,
        )
    base = cpu["baseline"]
    required = set(base["require"])
    dropped: dict[str, list[str]] = {}
    for name, own in cpu["own"].items():
        for feature in sorted(set(own.get("require", [])) - required):
            dropped.setdefault(feature, []).append(name)
    problems = []
    for name, result in cpu["compare"].items():
        if result["result"] not in ("identical", "superset"):
            lacks = (
                f": lacks {', '.join(result['missing'])}"
                if result.get("missing")
                else f": {result['message']}"
            )
            problems.append(Problem(f"{name} cannot run the baseline {base['model']}{lacks}", host=name))
    minimum = profile.stage("cluster").get("min_cpu_model")
    for name, result in cpu.get("min_model", {}).items():
        if result["result"] not in ("identical", "superset"):
            lacks = f"lacks {', '.join(result['missing'])}" if result.get("missing") else result["message"]
            problems.append(Problem(f"{name} cannot run the cluster CPU type {minimum}: {lacks}", host=name))
    drop_text = "; ".join(f"{f} ({', '.join(h)})" for f, h in dropped.items()) or "none"
    refused = "; ".join(
        f"{n}'s libvirt cannot compute it: {e}" for n, e in cpu.get("baseline_refused", {}).items()
    )
    ok = (
        f"baseline {base['model']} with {len(base['require'])} features (computed on {base['computed_on']}), "
        f"every host runs it{f', and the cluster CPU type {minimum}' if minimum else ''}; "
        f"features dropped (on which hosts): {drop_text}"
    )
    return conclude(
        facts,
        problems,
        ok,
        refused,
        cluster_wide=True,
        model=base["model"],
        features=base["require"],
        disabled=base.get("disable", []),
        dropped=dropped,
    )


@cluster_check(
    "cluster.cpu-pairwise",
    "A guest with a host's host-model CPU runs on each other host",
    hint="Guests with <cpu mode='host-model'> on the source cannot start on this destination: define "
    "them with the cluster's baseline CPU model (cluster.cpu-baseline), or move them one way only",
    measured="each host's host-model CPU compared by each other host's libvirt",
)
def cpu_pairwise(facts: HostFacts, profile: Profile) -> Outcome:
    pairs = cross(facts, "cpu", "pairs")
    if not pairs:
        why = cross(facts, "cpu").get("error") or "no libvirt answer"
        return conclude(
            facts, [Problem(f"host-model CPUs not compared: {why}", host=h) for h in view(facts).hosts], ""
        )
    problems = []
    able = []
    for a, b in present_pairs(facts):
        result = pairs.get(a, {}).get(b, {"result": "error", "message": "not compared"})
        model = host(facts, a).get("host_model", {}).get("model", "?")
        if result["result"] in ("identical", "superset"):
            able.append(f"{a}→{b}")
        elif result.get("missing"):
            problems.append(
                Problem(f"{a}'s host-model CPU ({model}) lacks on {b}: {', '.join(result['missing'])}", a, b)
            )
        else:
            problems.append(Problem(f"{a}'s host-model CPU ({model}) on {b}: {result['message']}", a, b))
    return conclude(facts, problems, f"every pair can: {', '.join(able)}", able=able)


# -- versions and machine types ------------------------------------------------------------------------------
def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", name))


def nearest(machines: list[str], wanted: str) -> str:
    """The newest machine of the same family ('pc-i440fx-', 'pc-q35-') among `machines`, or ''."""
    family = re.sub(r"[\d.]+$", "", wanted)
    same = (
        [m for m in machines if m.startswith(family) and m != family and re.search(r"\d$", m)]
        if family
        else []
    )
    return max(same, key=_version_key, default="")


@cluster_check(
    "cluster.machine-types",
    "Each host's default machine type and its guests' exist on the others",
    hint="A guest's machine type must exist on the destination's QEMU: define guests with a machine type "
    "every host has (the oldest host's newest, e.g. pc-q35-7.2), or upgrade the older hosts' QEMU",
)
def machine_types(facts: HostFacts, profile: Profile) -> Outcome:
    problems = []
    for a, b in present_pairs(facts):
        src, dst = host(facts, a), host(facts, b)
        wanted = [(f"{a}'s default machine type", src["default_machine"])] + [
            (f"guest {g['name']} on {a}", g["machine"]) for g in src["guests"] if g.get("machine")
        ]
        for what, machine in wanted:
            machine = src["machine_aliases"].get(machine, machine)
            if machine and machine not in dst["machines"]:
                near = nearest(dst["machines"], machine)
                problems.append(
                    Problem(
                        f"{what} {machine} (QEMU {src['qemu']}) is not on {b} (QEMU {dst['qemu']}"
                        + (f", newest {near})" if near else ")"),
                        a,
                        b,
                    )
                )
    defaults = {n: host(facts, n)["default_machine"] for n in view(facts).hosts}
    return conclude(
        facts,
        problems,
        f"each host's default machine type and its guests' exist on the others: {listing(defaults)}",
        defaults=defaults,
    )


@cluster_check(
    "cluster.versions",
    "QEMU and libvirt versions are the same on every host",
    level=Level.WARN,
    hint="Mixed versions work one way (older -> newer) at best: upgrade the hosts to one version "
    "(a rolling upgrade moves guests from older hosts to newer ones only)",
)
def versions(facts: HostFacts, profile: Profile) -> Outcome:
    qemu = {n: host(facts, n)["qemu"] or "?" for n in view(facts).hosts}
    lv = {n: host(facts, n)["libvirt"] or "?" for n in view(facts).hosts}
    os_names = {n: host(facts, n)["os"] or "?" for n in view(facts).hosts}
    text = f"QEMU {listing(qemu)}; libvirt {listing(lv)}; OS {listing(os_names)}"
    details: dict[str, Any] = {
        "qemu": qemu,
        "libvirt": lv,
        "os": os_names,
        "hosts": members(facts),
        "pairs": [],
    }
    if view(facts).missing:
        return conclude(facts, [], text, **details)
    if len(set(qemu.values())) > 1 or len(set(lv.values())) > 1:
        return failed(f"versions differ: {text}", **details)  # a warning: the machine types decide the pairs
    return passed(
        f"one version everywhere: QEMU {next(iter(qemu.values()))}, libvirt {next(iter(lv.values()))}",
        **details,
    )


# -- time ----------------------------------------------------------------------------------------------------
def pair_skew(facts: HostFacts, a: str, b: str) -> tuple[float, float, str] | None:
    """How far b's clock is ahead of a's, ± what bound, measured how. Straight between the hosts: each read
    the other's clock over ssh inside a bracket of its own clock; the true skew lies in both brackets, so
    their overlap is the answer (an ssh client's start-up biases each reading one way, the overlap cancels
    it). Else both against this controller's clock."""
    direct = []
    if (there := peer_offset((seen(facts, a, b) or {}).get("clock", []))) is not None:
        direct.append((there["offset_s"], there["uncertainty_s"], f"from {a}"))
    if (back := peer_offset((seen(facts, b, a) or {}).get("clock", []))) is not None:
        direct.append((-back["offset_s"], back["uncertainty_s"], f"from {b}"))
    low = max((d[0] - d[1] for d in direct), default=0.0)
    high = min((d[0] + d[1] for d in direct), default=0.0)
    if len(direct) == 2 and low <= high:
        return (low + high) / 2, (high - low) / 2, f"between {a} and {b} both ways"
    if direct:  # one way only (or brackets that miss each other: the clocks moved between the reads)
        return min(direct, key=lambda d: d[1])
    clock = cross(facts, "clock")
    if "offset_s" in clock.get(a, {}) and "offset_s" in clock.get(b, {}):
        return (
            clock[b]["offset_s"] - clock[a]["offset_s"],
            clock[a]["uncertainty_s"] + clock[b]["uncertainty_s"],
            "against this controller",
        )
    return None


@cluster_check(
    "cluster.time-skew",
    "Host clocks agree within the limit (default 0.5 s)",
    hint="Run a time daemon (chrony) against the same servers on every host; a guest's clock jumps by "
    "the skew when it moves (profile: cluster: {time_skew_limit_s: ...})",
    measured="the hosts' clocks read against each other",
)
def time_skew(facts: HostFacts, profile: Profile) -> Outcome:
    limit = float(profile.stage("cluster").get("time_skew_limit_s", DEFAULT_TIME_SKEW_S))
    clock = cross(facts, "clock")
    daemons = {n: host(facts, n)["time_daemon"] or "no time daemon" for n in view(facts).hosts}
    problems = [
        Problem(
            f"{n}'s clock not measured: {cross(facts, 'script', n).get('error') or clock.get(n, {})}", host=n
        )
        for n in view(facts).hosts
        if cross(facts, "script", n).get("error")
    ]
    unsure, skews = [], []
    measured = [n for n in view(facts).hosts if "offset_s" in clock.get(n, {})]
    for i, a in enumerate(view(facts).hosts):
        for b in list(view(facts).hosts)[i + 1 :]:
            pair = pair_skew(facts, a, b)
            if pair is None:
                continue
            skew, bound, how = pair
            ahead, behind = (b, a) if skew > 0 else (a, b)
            text = (
                f"{ahead}'s clock is {abs(skew):.2f} s ± {bound:.2f} s ahead of {behind}'s "
                f"(limit {limit} s, measured {how})"
            )
            skews.append(f"{ahead} {abs(skew):.3f} s ± {bound:.3f} s ahead of {behind}, measured {how}")
            if abs(skew) - bound > limit:  # beyond the limit even at the bound's nearer end
                problems += [Problem(text, a, b), Problem(text, b, a)]
            elif abs(skew) > limit:  # beyond it as measured, within it at the bound's nearer end
                unsure.append(text)
    offsets = {n: f"{clock[n]['offset_s']:+.3f} s ± {clock[n]['uncertainty_s']:.3f} s" for n in measured}
    against = f"against this controller's clock: {listing(offsets)}; time daemons: {listing(daemons)}"
    if not problems and unsure:
        return Outcome(
            False,
            f"cannot tell within the bound: {'; '.join(unsure)}; {against}",
            {"offsets": clock, "daemons": daemons, "hosts": members(facts), "pairs": []},
            level=Level.WARN,
        )
    return conclude(
        facts,
        problems,
        f"clocks agree within {limit} s as measured ({'; '.join(skews)})",
        against,
        offsets=clock,
        daemons=daemons,
    )


# -- what the hosts see of each other ------------------------------------------------------------------------
def seen(facts: HostFacts, a: str, b: str) -> dict[str, Any] | None:
    """What host a's script measured of peer b (None: a's script did not run)."""
    peers = cross(facts, "peers")
    return peers.get(a, {}).get(b) if a in peers else None


def script_problem(facts: HostFacts, a: str, b: str) -> Problem | None:
    if seen(facts, a, b) is None:
        error = cross(facts, "script", a).get("error", "no output about this peer")
        return Problem(f"{a} → {b} not measured: {error}", a, b)
    return None


def measured_pairs(facts: HostFacts, problems: list[Problem]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """The ordered pairs whose source's script measured its peer, with what it saw; the others become
    problems."""
    for a, b in present_pairs(facts):
        if (p := script_problem(facts, a, b)) is not None:
            problems.append(p)
        else:
            yield a, b, seen(facts, a, b) or {}


@cluster_check(
    "cluster.names",
    "Each host's name resolves on the others to an address that reaches it",
    hint="Migration URIs are built from the destination's host name: put every host's migration "
    "address in DNS or /etc/hosts on every host (not 127.0.1.1 as Debian's installer writes)",
    measured="each host's name resolved on the other hosts",
)
def names(facts: HostFacts, profile: Profile) -> Outcome:
    problems: list[Problem] = []
    for a, b, peer in measured_pairs(facts, problems):
        dst = host(facts, b)
        resolved, name = peer.get("resolved", []), dst["hostname"] or b
        mine = set(host(facts, a)["addresses"])
        if not resolved:
            problems.append(Problem(f"{name} ({b}) does not resolve on {a}", a, b))
        elif any(r.startswith("127.") or r == "::1" for r in resolved):
            problems.append(Problem(f"{name} resolves on {a} to loopback {' '.join(resolved)}", a, b))
        elif set(resolved) & mine:
            problems.append(
                Problem(f"{name} resolves on {a} to {a}'s own address {' '.join(resolved)}", a, b)
            )
        elif not set(resolved) & set(dst["addresses"]):
            problems.append(
                Problem(f"{name} resolves on {a} to {' '.join(resolved)}, not an address of {b}", a, b)
            )
        elif peer.get("tcp", {}).get(str(SSH_PORT)) not in REACHABLE:
            problems.append(
                Problem(f"{name} resolves on {a} to {' '.join(resolved)}, which does not answer", a, b)
            )
    return conclude(
        facts,
        problems,
        "every host name resolves on the others to an address of that host that answers",
        resolved={
            a: {b: (seen(facts, a, b) or {}).get("resolved") for b in view(facts).hosts if b != a}
            for a in view(facts).hosts
        },
    )


def port_state(state: str | None) -> str:
    return {
        "filtered": "filtered (no answer)",
        "unreachable": "unreachable (no route)",
        None: "not tried",
    }.get(state, str(state))


@cluster_check(
    "cluster.reach",
    "Each host reaches the others' migration transport and QEMU's migration port",
    hint="Open TCP from every host to the others' ssh (qemu+ssh) and QEMU's migration ports "
    "(qemu.conf migration_port_min..migration_port_max, default 49152-49215) in the firewall",
    measured="TCP from each host to the others' ports",
)
def reach(facts: HostFacts, profile: Profile) -> Outcome:
    problems: list[Problem] = []
    for a, b, peer in measured_pairs(facts, problems):
        tcp = peer.get("tcp", {})
        if not tcp:
            problems.append(
                Problem(
                    f"{a} → {b}: no TCP test ({b}'s name did not resolve, or {a} has neither "
                    "python3 nor bash)",
                    a,
                    b,
                )
            )
            continue
        ssh = tcp.get(str(SSH_PORT))
        if ssh != "open":
            problems.append(Problem(f"{a} → {b}: ssh port {SSH_PORT} {port_state(ssh)}", a, b))
        port = host(facts, b)["migration_port_min"]
        state = tcp.get(str(port))
        if state not in REACHABLE:
            problems.append(Problem(f"{a} → {b}: QEMU migration port {port} {port_state(state)}", a, b))
    return conclude(
        facts,
        problems,
        "every host reaches the others' ssh port and QEMU's migration port",
        tcp={
            a: {b: (seen(facts, a, b) or {}).get("tcp") for b in view(facts).hosts if b != a}
            for a in view(facts).hosts
        },
    )


@cluster_check(
    "cluster.mtu",
    "The migration network's MTU matches and a full-size packet crosses each pair",
    hint="Set one MTU on every host's migration interface and on the switches between them "
    "(a jumbo-frame mismatch stalls migrations mid-way)",
    measured="each host's route to the others and a full-size ping between them",
)
def mtu(facts: HostFacts, profile: Profile) -> Outcome:
    problems: list[Problem] = []
    untried: list[str] = []  # pairs no full-size packet was tried on (neither ping nor python3 there)
    unknown: list[str] = []  # pairs where even a small datagram got no answer (UDP or ICMP filtered)
    via: set[str] = set()
    for a, b, there in measured_pairs(facts, problems):
        back = seen(facts, b, a) or {}
        if there.get("mtu") is None:
            problems.append(Problem(f"{a} has no route to {b}", a, b))
            continue
        if back.get("mtu") is not None and back["mtu"] != there["mtu"]:
            problems.append(
                Problem(
                    f"MTU {there['mtu']} on {a} ({there.get('device')}) but {back['mtu']} on "
                    f"{b} ({back.get('device')})",
                    a,
                    b,
                )
            )
        df = there.get("ping")
        if df == "fail":
            how = "ping" if there.get("df_via", "ping") == "ping" else "UDP"
            problems.append(
                Problem(
                    f"a full-size packet (MTU {there['mtu']}, don't fragment, {how}) from {a} does not "
                    f"reach {b}, a small one does",
                    a,
                    b,
                )
            )
        elif df == "ok":
            via.add(there.get("df_via", "ping"))
        elif df is None:
            untried.append(f"{a}→{b}")
        else:
            unknown.append(f"{a}→{b}")
    mtus = {
        a: f"{(seen(facts, a, b) or {}).get('mtu')} on {(seen(facts, a, b) or {}).get('device')}"
        for a, b in present_pairs(facts)
    }
    notes = []
    if via and not untried and not unknown:
        notes.append(f"a full-size don't-fragment packet crossed each pair ({' and '.join(sorted(via))})")
    if untried:
        notes.append(f"no full-size packet tried on {', '.join(untried)} (neither ping nor python3 there)")
    if unknown:
        notes.append(
            f"not proven on {', '.join(unknown)}: even a small UDP datagram got no answer "
            "(UDP or ICMP filtered)"
        )
    note = "; " + "; ".join(notes) if notes else ""
    return conclude(facts, problems, f"MTU {listing(mtus)}{note}", untried=untried, unknown=unknown)


def missing_on_peers(
    facts: HostFacts, kind: str, section: str, needed: Callable[[dict[str, Any]], dict[str, str]]
) -> list[Problem]:
    """For each pair A -> B: what A has active or its guests use (name -> why) that B lacks or has
    inactive."""
    problems = []
    for a, b in present_pairs(facts):
        theirs = {o["name"]: o for o in host(facts, b)[section]}
        for name, why in needed(host(facts, a)).items():
            if name not in theirs:
                problems.append(Problem(f"{kind} {name} ({why} on {a}) is missing on {b}", a, b))
            elif not theirs[name].get("active"):
                problems.append(Problem(f"{kind} {name} ({why} on {a}) is not active on {b}", a, b))
    return problems


@cluster_check(
    "cluster.storage",
    "The same storage pools on every host; shared pools shared",
    hint="Define and start the pool on every host under the same name (virsh pool-define, pool-start, "
    "pool-autostart); a shared pool must be the same export on each",
)
def storage(facts: HostFacts, profile: Profile) -> Outcome:
    problems = missing_on_peers(
        facts,
        "pool",
        "pools",
        lambda h: (
            {p["name"]: f"{p['type']}, active" for p in h["pools"] if p.get("active")}
            | {pool: "used by a guest, active" for g in h["guests"] for pool in g.get("pools", [])}
        ),
    )
    shared = cross(facts, "storage")
    for pool, record in shared.items():
        if record.get("error"):
            problems.append(Problem(f"shared pool {pool}: {record['error']}", host=record["writer"]))
        for reader, result in record.get("read", {}).items():
            if result != "ok":
                written = f"{record['volume']} written on {record['writer']}"
                text = f"shared pool {pool}: {written}, on {reader}: {result}"
                problems += [Problem(text, record["writer"], reader), Problem(text, reader, record["writer"])]
    pools = sorted({p["name"] for n in view(facts).hosts for p in host(facts, n)["pools"] if p.get("active")})
    shared_text = (
        "; ".join(
            f"{p}: a file written on {r['writer']} read on {', '.join(r['read'])}" for p, r in shared.items()
        )
        or (f"shared pools not written and read back ({view(facts).offline})" if view(facts).offline else "")
        or "no shared pool tried"
    )
    return conclude(
        facts, problems, f"pools on every host: {', '.join(pools) or 'none'}; {shared_text}", shared=shared
    )


@cluster_check(
    "cluster.networks",
    "The guest networks a guest would use exist on every host",
    hint="Define and start the network on every host under the same name (virsh net-define, net-start, "
    "net-autostart), bridged to the same segment",
)
def networks(facts: HostFacts, profile: Profile) -> Outcome:
    problems = missing_on_peers(
        facts,
        "network",
        "networks",
        lambda h: (
            {n["name"]: "active" for n in h["networks"] if n.get("active")}
            | {net: f"used by guest {g['name']}" for g in h["guests"] for net in g["networks"]}
        ),
    )
    used = sorted(
        {n["name"] for h in view(facts).hosts for n in host(facts, h)["networks"] if n.get("active")}
    )
    return conclude(
        facts, problems, f"the networks guests use are active on every host: {', '.join(used) or 'none'}"
    )


@cluster_check(
    "cluster.trust",
    "Each host opens qemu+ssh to the others as root without a prompt",
    hint="For peer-to-peer migration the source's libvirtd (root) logs in to the destination: give root "
    "a key authorized on every host and every host's key in root's known_hosts",
    measured="qemu+ssh opened from each host to the others",
)
def trust(facts: HostFacts, profile: Profile) -> Outcome:
    problems: list[Problem] = []
    for a, b, peer in measured_pairs(facts, problems):
        result = peer.get("trust") or {"rc": None, "output": "not tried"}
        uri = f"qemu+ssh://root@{host(facts, b)['hostname'] or b}/system"
        if result["rc"] != 0:
            problems.append(
                Problem(
                    f"{a} cannot open {uri} without a prompt (exit {result['rc']}): {result['output'][:160]}",
                    a,
                    b,
                )
            )
    users = {n: cross(facts, "script", n).get("user", "?") for n in view(facts).hosts}
    note = (
        ""
        if set(users.values()) <= {"root"}
        else f" (tried as {listing(users)}: run with --sudo to try as root)"
    )
    return conclude(
        facts, problems, f"every host opens qemu+ssh://root@PEER/system to the others{note}", users=users
    )
