"""The run's results: every finding of every host, written as results.json; the host x stage matrix."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kvmqa.core.model import Finding, Verdict
from kvmqa.report.interruption import Interruption

# Worst first: a stage cell shows the worst verdict of its checks.
SEVERITY = (
    Verdict.ERROR,
    Verdict.FAIL,
    Verdict.WARN,
    Verdict.WAIVED,
    Verdict.PASS,
    Verdict.INFO,
    Verdict.SKIP,
)


@dataclass
class RunResults:
    findings: list[Finding] = field(default_factory=list)
    hosts: dict[str, dict[str, Any]] = field(
        default_factory=dict
    )  # host -> summary (facts digest, round trips)
    actions: list[dict[str, Any]] = field(default_factory=list)
    sections: dict[str, Any] = field(default_factory=dict)  # extra report sections (baseline comparison, ...)
    started: float = field(default_factory=time.time)
    errors: list[str] = field(default_factory=list)
    columns: tuple[
        str, ...
    ] = ()  # the matrix's stage order (the run's Registry.columns()); () = as findings came
    interruption: Interruption | None = None  # the run was cut short (Ctrl-C): what the plugin saw

    def add(self, finding: Finding) -> None:
        self.findings.append(finding)
        self.hosts.setdefault(finding.host, {})

    def host_names(self) -> list[str]:
        names = list(self.hosts)
        for f in self.findings:
            if f.host not in names:
                names.append(f.host)
        return names

    def stages(self) -> list[str]:
        seen = {f.stage for f in self.findings}
        order = self.columns or tuple(dict.fromkeys(f.stage for f in self.findings))
        return [s for s in order if s in seen] + sorted(seen - set(order))

    def cell(self, host: str, stage: str) -> tuple[Verdict | None, list[Finding]]:
        items = [f for f in self.findings if f.host == host and f.stage == stage]
        if not items:
            return None, []
        verdicts = {f.verdict for f in items}
        if verdicts == {Verdict.SKIP}:
            return Verdict.SKIP, items
        worst = next(v for v in SEVERITY if v in verdicts)
        if worst == Verdict.INFO:
            worst = Verdict.PASS
        return worst, items

    def matrix(self) -> dict[str, dict[str, str]]:
        return {
            h: {s: (self.cell(h, s)[0] or Verdict.SKIP).value for s in self.stages() if self.cell(h, s)[0]}
            for h in self.host_names()
        }

    def failed(self) -> bool:
        return any(f.is_failure for f in self.findings) or bool(self.errors)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for f in self.findings:
            out[f.verdict.value] = out.get(f.verdict.value, 0) + 1
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "tool": "kvmqa",
            "schema": 1,
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started)),
            "duration_s": round(time.time() - self.started, 3),
            "interrupted": self.interruption is not None,
            "interruption": self.interruption.to_json() if self.interruption else None,
            "hosts": self.hosts,
            "matrix": self.matrix(),
            "counts": self.counts(),
            "errors": self.errors,
            "results": [f.to_json() for f in self.findings],
            "actions": self.actions,
            **({"cluster": self.pair_matrices()} if self.pair_matrices() else {}),
            **self.sections,
        }

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=2, default=str))
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> RunResults:
        data = json.loads(Path(path).read_text())
        r = cls(
            findings=[Finding.from_json(x) for x in data.get("results", [])],
            hosts=data.get("hosts", {}),
            actions=data.get("actions", []),
            errors=data.get("errors", []),
            interruption=Interruption.from_json(data.get("interruption")),
        )
        for k in ("baseline_comparison", "waivers"):
            if k in data:
                r.sections[k] = data[k]
        return r

    def pair_matrices(self) -> dict[str, dict[str, Any]]:
        """Per run-scoped pseudo-host (`cluster`): the host x host matrix of its findings' `details["pairs"]`.
        Each ordered pair's cell: can the source's guests go to the destination, or the first failing check
        (FAIL or ERROR, in check order) and its reason for that pair.

            {"cluster": {"hosts": ["lab1", "lab2"], "cells": {"lab1": {"lab2": {"ok": True, ...}}}}}
        """
        out: dict[str, dict[str, Any]] = {}
        for f in self.findings:
            hosts = f.details.get("hosts")
            if "pairs" not in f.details or not isinstance(hosts, list) or len(hosts) < 2:
                continue
            able = {"ok": True, "check": "", "verdict": "pass", "reason": "can take its guests"}
            cells = {a: {b: {**able, "also": []} for b in hosts if b != a} for a in hosts}
            matrix = out.setdefault(f.host, {"hosts": list(hosts), "cells": cells})
            if f.verdict not in (Verdict.FAIL, Verdict.ERROR):
                continue
            for pair in f.details["pairs"]:
                cell = matrix["cells"].get(pair["source"], {}).get(pair["destination"])
                if cell is not None and cell["ok"]:
                    cell.update(ok=False, check=f.check_id, verdict=f.verdict.value, reason=pair["reason"])
                elif cell is not None and f.check_id not in (cell["check"], *cell["also"]):
                    cell["also"].append(f.check_id)  # further checks that refuse this pair too
        for f in self.findings:  # the migration stage's moves: the measured outcome beside the prediction
            hosts = f.details.get("hosts")
            if "migrations" not in f.details or not isinstance(hosts, list) or len(hosts) < 2:
                continue
            unjudged = {"ok": True, "check": "", "verdict": "skip", "reason": "not judged", "also": []}
            cells = {a: {b: dict(unjudged) for b in hosts if b != a} for a in hosts}
            matrix = out.setdefault(f.host, {"hosts": list(hosts), "cells": cells})
            for move in f.details["migrations"]:
                cell = matrix["cells"].get(move["source"], {}).get(move["destination"])
                if cell is not None:
                    cell.setdefault("migration", []).append(move)
        return out

    def terminal_matrix(self) -> str:
        stages = self.stages()
        hosts = self.host_names()
        width = max([len(h) for h in hosts] + [4])
        lines = ["host".ljust(width) + "  " + "  ".join(s.ljust(9) for s in stages)]
        for h in hosts:
            cells = []
            for s in stages:
                v, items = self.cell(h, s)
                text = v.value.upper() if v else "-"
                if any(f.details.get("label") == "EMULATED" and f.verdict == Verdict.PASS for f in items):
                    text += " (EMULATED)"
                cells.append(text.ljust(9))
            lines.append(h.ljust(width) + "  " + "  ".join(cells))
        return "\n".join(lines)


def pairs_text(matrix: dict[str, Any]) -> str:
    """A pair matrix for the terminal: rows are sources, columns destinations; each refusal's reason below."""
    hosts = matrix["hosts"]
    width = max(len(h) for h in [*hosts, "source \\ to"])

    def word(c: dict[str, Any]) -> str:
        if c["verdict"] == "skip":  # a matrix only the migration stage filled: no prediction made
            return "not judged"
        return "yes" if c["ok"] else ("NOT JUDGED" if c["verdict"] == "error" else "NO") + f" ({c['check']})"

    cells = {a: {b: word(c) for b, c in row.items()} for a, row in matrix["cells"].items()}
    col = max([len(h) for h in hosts] + [len(t) for row in cells.values() for t in row.values()])
    lines = ["source \\ to".ljust(width) + "  " + "  ".join(h.ljust(col) for h in hosts)]
    for a in hosts:
        row = ("-" if a == b else cells[a][b] for b in hosts)
        lines.append(a.ljust(width) + "  " + "  ".join(text.ljust(col) for text in row))
    for a in hosts:
        for b, c in matrix["cells"][a].items():
            if not c["ok"]:
                also = f" (also refused by {', '.join(c['also'])})" if c.get("also") else ""
                lines.append(f"{a} → {b}: {c['check']}: {c['reason']}{also}")
    moves = [(a, b, m) for a in hosts for b, c in matrix["cells"][a].items() for m in c.get("migration", [])]
    if moves:
        lines.append("migrated (prediction → outcome):")
    for a, b, m in moves:
        lines.append(f"{a} → {b} ({m['storage']}): {moved_text(m)}")
    return "\n".join(lines)


def moved_text(move: dict[str, Any]) -> str:
    """One move of the migration stage as a matrix cell reads it: the prediction, then what happened."""
    said = (
        "predicted able" if move["predicted"] == "able" else f"refused by {', '.join(move['predicted_by'])}"
    )
    if not move["ok"]:
        return f"{said} → FAILED: {move['reason']}"
    total = f"{move['total_ms'] / 1000:.1f} s" if move.get("total_ms") is not None else "? s"
    return f"{said} → moved in {total}, downtime {move.get('downtime_ms', '?')} ms"
