"""The migration stage against a lab of two CPU models (issue 20, lab truth case 3), each outcome beside plain
`virsh migrate` of a plain guest with the same CPU between the same hosts. The lab boots for the test alone.

Case 2: bookworm (QEMU 7.2) beside trixie (QEMU 10.0), a new guest on each source (`fresh`): bookworm → trixie
moves; trixie → bookworm fails for trixie's default machine type, as cluster.machine-types predicted; a guest
pinned to bookworm's default machine type (trixie's QEMU offers it too) moves both ways.
Case 3: lab1 -cpu max, lab2 -cpu Opteron_G5. A guest with lab1's host-model CPU cannot go to lab2, as
cluster.cpu-pairwise predicted (the guest stays on lab1); a guest with the cluster's baseline model (libvirt's
hypervisor-cpu-baseline, what cluster.cpu-baseline names) goes both ways.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.lab import faults
from tests.test_lab_migration import left_on, moves, plain_migrate, run_stage

# lab_slow: each test boots a lab of its own; last passed 2026-12-08 (case 3: 384 s; case 2: 439 s).
pytestmark = [pytest.mark.lab, pytest.mark.lab_slow]


def test_case3_a_host_model_guest_fails_as_predicted_a_baseline_guest_moves_both_ways(
    lab_cluster_factory: Callable[..., Any], tmp_path: Path
) -> None:
    with lab_cluster_factory(("bookworm", "bookworm"), ("max", "Opteron_G5")) as lab:
        faults.sync_clock(lab, "lab2", "lab1")
        rich, rich_found = run_stage(lab, tmp_path / "host-model", storage="shared", cpu="host-model")
        baseline = next(r for r in rich["results"] if r["check_id"] == "cluster.cpu-baseline")["details"]
        model = baseline["model"]
        plain_rich = plain_migrate(lab, "lab1", "lab2", "host-model")
        base, base_found = run_stage(lab, tmp_path / "baseline", storage="shared", cpu=model)
        plain_base = {p: plain_migrate(lab, *p, model) for p in (("lab1", "lab2"), ("lab2", "lab1"))}
        left = left_on(lab)
    print(
        f"plain virsh migrate of a host-model guest lab1 → lab2: rc {plain_rich['rc']}: "
        f"{plain_rich['message']}"
    )
    print(f"plain virsh migrate of a {model} guest: {plain_base}")
    assert plain_rich["rc"] != 0 and plain_rich["source_running"]
    assert all(t["rc"] == 0 and t["destination_running"] for t in plain_base.values())
    live = rich_found["migration.live"]
    assert live[0] == "fail" and "lab1 → lab2 (shared) failed:" in live[1], live
    assert "predicted by cluster.cpu-pairwise" in live[1] and "still running on lab1" in live[1], live
    assert rich_found["migration.predicted"][0] in ("pass", "warn"), rich_found["migration.predicted"]
    assert not moves(rich)[("lab1", "lab2", "shared")]["ok"]
    done = moves(base)
    assert done[("lab1", "lab2", "shared")]["ok"] and done[("lab2", "lab1", "shared")]["ok"], done
    assert base_found["migration.live"][0] == "pass" and base_found["migration.heartbeat"][0] == "pass"
    assert left == {"lab1": [], "lab2": []}


def test_case2_bookworm_and_trixie_trixies_default_machine_type_cannot_go_back(
    lab_cluster_factory: Callable[..., Any], tmp_path: Path
) -> None:
    with lab_cluster_factory(("bookworm", "trixie"), ("max", "max")) as lab:
        faults.sync_clock(lab, "lab2", "lab1")
        machine = faults.default_machine(lab["lab1"])
        assert machine in faults.machines(lab["lab2"])
        default, default_found = run_stage(lab, tmp_path / "default", storage="shared", fresh=True)
        plain_back = plain_migrate(lab, "lab2", "lab1")
        pinned, pinned_found = run_stage(
            lab, tmp_path / "pinned", storage="shared", fresh=True, machine=machine
        )
        left = left_on(lab)
    print(
        f"plain virsh migrate trixie → bookworm (trixie's default machine): rc {plain_back['rc']}: "
        f"{plain_back['message']}"
    )
    assert plain_back["rc"] != 0 and plain_back["source_running"]
    done = moves(default)
    assert done[("lab1", "lab2", "shared")]["ok"], done
    assert not done[("lab2", "lab1", "shared")]["ok"], done
    live = default_found["migration.live"]
    assert "lab2 → lab1 (shared) failed:" in live[1] and "predicted by cluster.machine-types" in live[1], live
    assert "still running on lab2" in live[1], live
    both = moves(pinned)
    assert both[("lab1", "lab2", "shared")]["ok"] and both[("lab2", "lab1", "shared")]["ok"], both
    assert pinned_found["migration.heartbeat"][0] == "pass"
    assert left == {"lab1": [], "lab2": []}
