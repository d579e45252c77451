"""Merge results.json files from many runs (one per host, e.g. each host ran the suite through Ansible).

    python -m kvmqa merge OUT_DIR hv1/results.json hv2/results.json ...
      -> OUT_DIR/results.json (the same schema as one run's) and OUT_DIR/report.html (matrix, sections,
      details)

A host reported by several files keeps the findings of the newest run (by its `started` time) and the
merge says so. Exit status: 0 when every host passed, 1 when a finding failed, a run had errors or a
baseline comparison found regressions, 2 when an input cannot be read.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from kvmqa.core.model import Finding
from kvmqa.report.html import sources_html
from kvmqa.report.results import RunResults
from kvmqa.report.standalone import write_standalone


class MergeError(ValueError):
    pass


def _load(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        raise MergeError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise MergeError(f"{path}: malformed JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("tool") != "kvmqa" or not isinstance(data.get("results"), list):
        raise MergeError(
            f"{path}: not a kvmqa results.json (field 'tool' must be 'kvmqa' and 'results' a list)"
        )
    return data


def _merge_sections(into: dict[str, Any], data: dict[str, Any], hosts: set[str]) -> None:
    comp = data.get("baseline_comparison")
    if comp:
        mine = into.setdefault(
            "baseline_comparison",
            {
                "baseline": comp.get("baseline", ""),
                "baseline_created": comp.get("baseline_created", ""),
                "hosts": {},
                "regressions": 0,
                "changed_hosts": [],
            },
        )
        for host, h in comp.get("hosts", {}).items():
            if host in hosts:
                mine["hosts"][host] = h
        mine["regressions"] = sum(len(h.get("regressions", [])) for h in mine["hosts"].values())
        mine["changed_hosts"] = sorted(
            n
            for n, h in mine["hosts"].items()
            if h.get("versions") or h.get("capabilities") or h.get("regressions")
        )
    waivers = data.get("waivers")
    if waivers:
        mine = into.setdefault("waivers", {"file": waivers.get("file"), "waivers": [], "warnings": []})
        mine["waivers"] += [w for w in waivers.get("waivers", []) if w not in mine["waivers"]]
        mine["warnings"] += [w for w in waivers.get("warnings", []) if w not in mine["warnings"]]


def merge(paths: list[Path]) -> tuple[RunResults, list[dict[str, Any]]]:
    """The merged results and, per input, what it contributed."""
    runs = sorted(((p, _load(p)) for p in paths), key=lambda pd: pd[1].get("started", ""))
    owner: dict[str, Path] = {}  # host -> the newest file reporting it
    for path, data in runs:
        for host in [*data.get("hosts", {}), *(r["host"] for r in data["results"])]:
            owner[host] = path
    merged = RunResults()
    merged.started = 0
    sources = []
    for path, data in runs:
        kept = {h for h, p in owner.items() if p == path}
        all_hosts = set(data.get("hosts", {})) | {r["host"] for r in data["results"]}
        for host, summary in data.get("hosts", {}).items():
            if host in kept:
                merged.hosts[host] = summary
        for r in data["results"]:
            if r["host"] in kept:
                merged.add(Finding.from_json(r))
        merged.actions += [a for a in data.get("actions", []) if a.get("host") in kept or "host" not in a]
        merged.errors += [f"{path}: {e}" for e in data.get("errors", [])]
        _merge_sections(merged.sections, data, kept)
        superseded = sorted(all_hosts - kept)
        if superseded:
            merged.errors.append(
                f"{path}: superseded by a newer run for {', '.join(superseded)} (kept the newer results)"
            )
        sources.append(
            {
                "file": str(path),
                "started": data.get("started", ""),
                "hosts": sorted(kept),
                "superseded": superseded,
            }
        )
    merged.sections["merged_from"] = sources
    return merged, sources


def write_merged(out_dir: Path, paths: list[Path]) -> RunResults:
    merged, sources = merge(paths)
    out_dir.mkdir(parents=True, exist_ok=True)
    results_json = merged.to_json()
    results_json["started"] = min(
        (s["started"] for s in sources if s["started"]), default=results_json["started"]
    )
    results_json["duration_s"] = None
    (out_dir / "results.json").write_text(json.dumps(results_json, indent=2, default=str))
    write_standalone(
        merged,
        out_dir / "report.html",
        title=f"kvmqa: {len(merged.host_names())} hosts from {len(sources)} runs",
        extra_sections=[sources_html(sources)],
    )
    return merged


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kvmqa merge", description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path, help="where the merged results.json and report.html go")
    parser.add_argument("results", type=Path, nargs="+", help="results.json files of earlier runs")
    parser.add_argument(
        "--screenshot", action="store_true", help="also render report.png with headless Chromium"
    )
    args = parser.parse_args(argv)
    try:
        merged = write_merged(args.out_dir, args.results)
    except MergeError as exc:
        print(f"kvmqa merge: {exc}", file=sys.stderr)
        return 2
    print(merged.terminal_matrix())
    print(f"reports: {args.out_dir}/report.html, {args.out_dir}/results.json")
    if args.screenshot:
        from kvmqa.report.screenshot import screenshot

        print(f"screenshot: {screenshot(args.out_dir / 'report.html')}")
    regressions = merged.sections.get("baseline_comparison", {}).get("regressions", 0)
    return 1 if merged.failed() or regressions else 0
