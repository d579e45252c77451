"""Bench: kvmqa's migration of the kit guest against bare `virsh migrate --live --p2p` between the same two
lab hosts, beside the downtime the guest's heartbeat saw.

    flock /tmp/kvmqa-lab.lock python bench/bench_lab_migration.py [--runs 2]

Boots two bookworm lab hosts as a cluster (tests/lab), then per run: the cluster + migration stages through
pytest (the kit guest lab1 → lab2 → lab1, shared pool; each move's wall time, libvirt's total and downtime,
the heartbeat's largest gap on the guest clock), and plain virsh on lab1/lab2 migrating a diskless 128 MiB
guest both ways (wall time of the virsh command, `virsh domjobinfo --completed` on the destination). Prints
the figures and the ratio of total times (kvmqa / virsh); not a test.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.lab.cluster import HostPlan, boot_lab, setup_cluster  # noqa: E402
from tests.test_lab_migration import plain_migrate, run_stage  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    rows: dict[str, list[dict[str, Any]]] = {"kvmqa": [], "virsh": []}
    with (
        tempfile.TemporaryDirectory(prefix="kvmqa-bench-mig-") as tmp,
        boot_lab([HostPlan("bookworm")] * 2, Path(tmp) / "lab") as lab,
    ):
        setup_cluster(lab)
        for run in range(args.runs):
            where = Path(tmp) / f"run{run}"
            where.mkdir()
            _, _ = run_stage(lab, where, storage="shared")
            facts = json.loads((where / "reports" / "cluster" / "facts.json").read_text())
            for hop in facts["migration"]["hops"]:
                f = hop.get("figures") or {}
                rows["kvmqa"].append(
                    {
                        "pair": f"{hop['source']}→{hop['destination']}",
                        "ok": hop.get("ok"),
                        "wall_s": hop.get("seconds"),
                        "total_ms": f.get("total_ms"),
                        "downtime_ms": f.get("downtime_ms"),
                        "heartbeat_gap_s": (hop.get("heartbeat") or {}).get("max_gap_s"),
                    }
                )
            for a, b in (("lab1", "lab2"), ("lab2", "lab1")):
                t0 = time.monotonic()
                truth = plain_migrate(lab, a, b)
                rows["virsh"].append(
                    {
                        "pair": f"{a}→{b}",
                        "ok": truth["rc"] == 0,
                        "wall_s": round(time.monotonic() - t0, 3),  # includes create and destroy
                        "total_ms": truth["stats"].get("time_elapsed"),
                        "downtime_ms": truth["stats"].get("downtime"),
                    }
                )
    for who, items in rows.items():
        for r in items:
            print(f"{who:6} {json.dumps(r)}")
    totals = {w: [r["total_ms"] for r in items if r.get("total_ms")] for w, items in rows.items()}
    if totals["kvmqa"] and totals["virsh"]:
        ratio = statistics.median(totals["kvmqa"]) / statistics.median(totals["virsh"])
        print(
            f"median libvirt total: kvmqa {statistics.median(totals['kvmqa'])} ms, "
            f"virsh {statistics.median(totals['virsh'])} ms; ratio {ratio:.2f}"
        )


if __name__ == "__main__":
    main()
