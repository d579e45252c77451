"""Baselines: record each host's facts and verdicts; after an upgrade, show what changed and what regressed.

    pytest suites --inventory fleet.yaml --save-baseline baseline.json        # before the upgrade
    pytest suites --inventory fleet.yaml --compare-baseline baseline.json     # after it

The comparison, per host: version changes (kernel, QEMU, libvirt, packages, vdsm, engine), capability
changes (CPU flags and models, machine types, domain capabilities: features, CPU modes, devices) and
verdict regressions (pass -> fail/warn/error). It is a report section, `baseline_comparison` in
results.json and a line per host on the terminal; any regression makes the exit status non-zero.
Facts come from the in-process sessions or, under xdist, from the `reports/<host>/facts.json` the
workers wrote.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

from kvmqa.core.model import Finding, Verdict

SCHEMA = 1
REGRESSED = (Verdict.FAIL.value, Verdict.WARN.value, Verdict.ERROR.value)


class BaselineError(ValueError):
    """A baseline file that cannot be used; the message names the file and what is wrong."""


# -- what a host is, for comparison -----------------------------------------------------------


def versions_of(facts: dict[str, Any]) -> dict[str, str]:
    """Component -> version, from the facts sections that were gathered (absent ones are left out)."""
    out: dict[str, str] = {}
    if facts.get("os", {}).get("pretty_name"):
        out["os"] = facts["os"]["pretty_name"]
    if facts.get("kernel", {}).get("release"):
        out["kernel"] = facts["kernel"]["release"]
    lv = facts.get("libvirt") or {}
    if lv.get("lib_version"):
        out["libvirt"] = lv["lib_version"]
    if lv.get("hypervisor_version"):
        out["qemu"] = lv["hypervisor_version"]
    pk = facts.get("packages") or {}
    for name, version in sorted((pk.get("installed") or {}).items()):
        out[f"package {name}"] = str(version)
    for name in pk.get("absent") or []:
        out[f"package {name}"] = "(not installed)"
    caps = (facts.get("vdsm") or {}).get("capabilities") or {}
    if caps.get("software_version"):
        out["vdsm"] = "-".join(str(x) for x in (caps["software_version"], caps.get("software_revision")) if x)
    api = (facts.get("engine") or {}).get("api") or {}
    if api.get("full_version"):
        out["engine"] = str(api["full_version"])
    return out


def capabilities_of(facts: dict[str, Any]) -> dict[str, list[str]]:
    """Capability kind -> sorted names. Kinds whose source was not gathered are left out."""
    out: dict[str, list[str]] = {}
    if (facts.get("cpu") or {}).get("flags"):
        out["CPU flags"] = sorted(facts["cpu"]["flags"])
    lv = facts.get("libvirt") or {}
    if lv.get("connected"):
        guests = (lv.get("capabilities") or {}).get("guests") or []
        out["machine types"] = sorted({f"{g['arch']}/{m}" for g in guests for m in g.get("machines", [])})
        out["guest domain types"] = sorted(
            {f"{g['arch']}/{d}" for g in guests for d in g.get("domain_types", [])}
        )
        out["host CPU features"] = sorted((lv.get("capabilities") or {}).get("host_cpu_features") or [])
        types = (lv.get("capabilities") or {}).get("machine_types") or {}
        out["deprecated machine types"] = sorted(
            f"{arch}/{m['name']}" for arch, ms in types.items() for m in ms if m.get("deprecated")
        )
        for virttype, dc in sorted((lv.get("domcapabilities") or {}).items()):
            if "error" in dc:
                continue
            out[f"{virttype} CPU models"] = sorted(dc.get("usable_cpu_models") or [])
            if dc.get("cpu_models") is not None:  # every model QEMU offers (usable here or not); newer facts
                out[f"{virttype} CPU models offered"] = sorted(m["name"] for m in dc["cpu_models"])
                out[f"{virttype} deprecated CPU models"] = sorted(
                    m["name"] for m in dc["cpu_models"] if m.get("deprecated")
                )
            out[f"{virttype} CPU modes"] = sorted(m for m, ok in (dc.get("cpu_modes") or {}).items() if ok)
            out[f"{virttype} features"] = sorted(dc.get("features") or [])
            out[f"{virttype} devices"] = sorted(dc.get("devices") or [])
    caps = (facts.get("vdsm") or {}).get("capabilities") or {}
    if caps.get("ok"):
        out["vdsm CPU models"] = sorted(caps.get("cpu_models") or [])
    return out


def unavailable_of(facts: dict[str, Any]) -> list[str]:
    notes = []
    if (facts.get("reach") or {}).get("error"):
        notes.append(f"host unreachable: {facts['reach']['error']}")
    lv = facts.get("libvirt")
    if isinstance(lv, dict) and not lv.get("connected"):
        notes.append(f"libvirt facts unavailable: {lv.get('error', 'not connected')}")
    return notes


def snapshot(facts: dict[str, Any], findings: list[Finding]) -> dict[str, Any]:
    """A host's facts and verdicts; the messages of what did not pass, so a compare can say why."""
    return {
        "facts": facts,
        "verdicts": {f.check_id: f.verdict.value for f in findings},
        "messages": {f.check_id: f.message for f in findings if f.verdict.value in REGRESSED},
    }


def _rank(verdict: str) -> int:
    return {Verdict.PASS.value: 0, Verdict.WARN.value: 1}.get(verdict, 2)


def is_regression(old: str, new: str) -> bool:
    """pass -> warn/fail/error, and warn -> fail/error: the check got worse."""
    return old in (Verdict.PASS.value, Verdict.WARN.value) and new in REGRESSED and _rank(new) > _rank(old)


# -- compare ----------------------------------------------------------------------------------


DOWNTIME_TOLERANCE_PCT = 50.0  # the profile's migration.downtime_tolerance_pct when it names none


def migrations_of(facts: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The migration stage's moves in a run's facts (the `cluster` pseudo-host's): pair -> outcome and
    downtime."""
    out = {}
    for hop in facts.get("migration", {}).get("hops", []):
        key = f"{hop['source']} → {hop['destination']} ({hop['storage']})"
        out[key] = {"ok": bool(hop.get("ok")), "downtime_ms": (hop.get("figures") or {}).get("downtime_ms")}
    return out


def migration_regressions(
    before: dict[str, Any], after: dict[str, Any], tolerance_pct: float = DOWNTIME_TOLERANCE_PCT
) -> list[dict[str, Any]]:
    """A pair that moved in the baseline and fails now, or whose downtime grew past the tolerance."""
    out = []
    now = migrations_of(after)
    for pair, old in migrations_of(before).items():
        new = now.get(pair)
        if new is None or not old["ok"]:
            continue
        if not new["ok"]:
            out.append({"check_id": "migration.live", "pair": pair, "before": "moved", "after": "failed"})
        elif (
            old["downtime_ms"]
            and new["downtime_ms"] is not None
            and new["downtime_ms"] > old["downtime_ms"] * (1 + tolerance_pct / 100)
        ):
            out.append(
                {
                    "check_id": "migration.downtime",
                    "pair": pair,
                    "before": f"{old['downtime_ms']} ms",
                    "after": f"{new['downtime_ms']} ms (over +{tolerance_pct:g} %)",
                }
            )
    return out


def compare_host(
    before: dict[str, Any], after: dict[str, Any], tolerance_pct: float = DOWNTIME_TOLERANCE_PCT
) -> dict[str, Any]:
    """What changed on one host between two snapshots."""
    bv, av = versions_of(before.get("facts", {})), versions_of(after.get("facts", {}))
    versions: list[dict[str, Any]] = [
        {"component": k, "before": bv[k], "after": av[k]} for k in bv if k in av and bv[k] != av[k]
    ]
    versions += [
        {"component": k, "before": None, "after": av[k]}
        for k in av
        if k not in bv and k.startswith("package ")
    ]
    bc, ac = capabilities_of(before.get("facts", {})), capabilities_of(after.get("facts", {}))
    capabilities = []
    for kind in (k for k in bc if k in ac):  # a kind gathered only once (libvirt down) is a note, not a loss
        old, new = set(bc[kind]), set(ac[kind])
        if old != new:
            capabilities.append({"kind": kind, "gained": sorted(new - old), "lost": sorted(old - new)})
    regressions: list[dict[str, Any]] = []
    improvements: list[dict[str, Any]] = []
    bverd, averd = before.get("verdicts", {}), after.get("verdicts", {})
    messages = after.get("messages") or {}
    for cid, old in bverd.items():
        new = averd.get(cid)
        if new is None or new == old:
            continue
        entry = {"check_id": cid, "before": old, "after": new}
        if cid in messages:
            entry["message"] = messages[cid]
        if is_regression(old, new):
            regressions.append(entry)
        elif old in REGRESSED and new == Verdict.PASS.value:
            improvements.append(entry)
    regressions += migration_regressions(before.get("facts", {}), after.get("facts", {}), tolerance_pct)
    # regressions first: what got worse is what a reader needs; versions and capabilities are changes
    return {
        "regressions": regressions,
        "versions": versions,
        "capabilities": capabilities,
        "improvements": improvements,
        "unavailable": unavailable_of(after.get("facts", {})),
    }


def compare(
    baseline: dict[str, Any],
    current: dict[str, dict[str, Any]],
    tolerance_pct: float = DOWNTIME_TOLERANCE_PCT,
) -> dict[str, Any]:
    hosts: dict[str, Any] = {}
    for name, snap in current.items():
        if name in baseline["hosts"]:
            hosts[name] = {"status": "compared", **compare_host(baseline["hosts"][name], snap, tolerance_pct)}
        else:
            hosts[name] = {
                "status": "new (not in the baseline)",
                "versions": [],
                "capabilities": [],
                "regressions": [],
                "improvements": [],
                "unavailable": [],
            }
    for name in baseline["hosts"]:
        if name not in current:
            hosts[name] = {
                "status": "missing (in the baseline, not in this run)",
                "versions": [],
                "capabilities": [],
                "regressions": [],
                "improvements": [],
                "unavailable": [],
            }
    return {
        "baseline": baseline.get("source", ""),
        "baseline_created": baseline.get("created", ""),
        "hosts": hosts,
        "regressions": sum(len(h["regressions"]) for h in hosts.values()),
        "changed_hosts": sorted(
            n for n, h in hosts.items() if h["versions"] or h["capabilities"] or h["regressions"]
        ),
    }


# -- files ------------------------------------------------------------------------------------


def save_baseline(path: Path, current: dict[str, dict[str, Any]]) -> None:
    data = {
        "tool": "kvmqa",
        "kind": "baseline",
        "schema": SCHEMA,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "hosts": current,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    tmp.replace(path)


def load_baseline(path: Path) -> dict[str, Any]:
    src = str(path)
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise BaselineError(f"{src}: baseline file not found (create it with --save-baseline)") from None
    except ValueError as exc:
        raise BaselineError(f"{src}: not a kvmqa baseline (malformed JSON: {exc})") from None
    if (
        not isinstance(data, dict)
        or data.get("kind") != "baseline"
        or not isinstance(data.get("hosts"), dict)
    ):
        raise BaselineError(
            f"{src}: not a kvmqa baseline (field 'kind' must be 'baseline' and 'hosts' a mapping)"
        )
    if data.get("schema") != SCHEMA:
        raise BaselineError(
            f"{src}: field 'schema': {data.get('schema')!r} is not supported (expected {SCHEMA})"
        )
    for name, snap in data["hosts"].items():
        if (
            not isinstance(snap, dict)
            or not isinstance(snap.get("facts"), dict)
            or not isinstance(snap.get("verdicts"), dict)
        ):
            raise BaselineError(f"{src}: field 'hosts.{name}': needs 'facts' and 'verdicts' mappings")
    data["source"] = src
    return data


# -- report -----------------------------------------------------------------------------------


TERMINAL_ITEMS = 8  # per direction of a capability change on the terminal; results.json and HTML have all


def _natural(name: str) -> list[Any]:
    """pc-i440fx-2.10 after pc-i440fx-2.9."""
    return [int(x) if x.isdigit() else x for x in re.split(r"(\d+)", name)]


def capability_text(change: dict[str, Any]) -> str:
    """'machine types (i686, x86_64): +pc-q35-10.0 ... -pc-i440fx-2.3 ...': names that changed alike on
    every architecture once, in version order, at most TERMINAL_ITEMS each way."""
    kind, gained, lost = change["kind"], change["gained"], change["lost"]
    arches = {x.split("/", 1)[0] for x in gained + lost if "/" in x}
    if arches and all("/" in x for x in gained + lost):
        per_arch = [
            (
                {x.split("/", 1)[1] for x in gained if x.startswith(a + "/")},
                {x.split("/", 1)[1] for x in lost if x.startswith(a + "/")},
            )
            for a in sorted(arches)
        ]
        if all(pa == per_arch[0] for pa in per_arch):
            kind = f"{kind} ({', '.join(sorted(arches))})"
            gained, lost = sorted(per_arch[0][0]), sorted(per_arch[0][1])

    def some(sign: str, items: list[str]) -> list[str]:
        items = sorted(items, key=_natural)
        more = len(items) - TERMINAL_ITEMS
        return [f"{sign}{x}" for x in items[:TERMINAL_ITEMS]] + ([f"({sign}{more} more)"] if more > 0 else [])

    return f"{kind}: " + " ".join(some("+", gained) + some("-", lost))


def comparison_lines(comparison: dict[str, Any]) -> list[str]:
    """One line per host, for the terminal."""
    lines = []
    for host, h in comparison["hosts"].items():
        parts = [h["status"]] if h["status"] != "compared" else []
        if h["regressions"]:  # first: what got worse; versions and capabilities after, as changes
            parts.append(
                "REGRESSIONS: "
                + ", ".join(
                    f"{r['check_id']}{' ' + r['pair'] if r.get('pair') else ''} {r['before']} -> {r['after']}"
                    for r in h["regressions"]
                )
            )
        if h["versions"]:
            parts.append(
                "versions: "
                + ", ".join(f"{v['component']} {v['before'] or '-'} -> {v['after']}" for v in h["versions"])
            )
        for c in h["capabilities"]:
            parts.append(capability_text(c))
        if h.get("improvements"):
            parts.append(
                "improved: "
                + ", ".join(f"{r['check_id']} {r['before']} -> {r['after']}" for r in h["improvements"])
            )
        parts += h["unavailable"]
        lines.append(f"{host}: " + ("; ".join(parts) if parts else "no change"))
        # why each regressed, one line each (snapshots of this kvmqa carry the messages)
        lines += [f"  {r['check_id']}: {r['message']}" for r in h["regressions"] if r.get("message")]
    return lines
