"""The cluster stage against mixed two-host labs (issue 19, lab truth cases 2 and 3), each verdict beside what
plain commands on the hosts say. Each test boots its own lab (two hosts, -smp 1) and stops it at its end.

Case 2: bookworm (QEMU 7.2) beside trixie (QEMU 10.0): trixie's default machine type is not on bookworm, so
trixie -> bookworm is refused by cluster.machine-types and bookworm -> trixie is able.
Case 3: -cpu max beside -cpu Opteron_G5: the baseline is libvirt's (below both: qemu64), and each direction is
refused exactly when `virsh hypervisor-cpu-compare` refuses it, naming the features it names (asymmetric:
max's host-model lacks 29 features on the Opteron_G5 host, the Opteron_G5's lacks virt-ssbd on the max host).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.lab import faults
from tests.lab.cluster import Lab, cpu_facts
from tests.test_ansible_fleet import run_playbook
from tests.test_lab_cluster_stage import run_and_show

RECORDED_ANSIBLE = Path(__file__).resolve().parent / "recorded" / "cluster" / "ansible-bookworm-trixie"


def run_playbook_on_lab(lab: Lab, reports: Path) -> subprocess.CompletedProcess[str]:
    """ansible/kvmqa.yml over the lab's hosts (real ansible-playbook, become root with sudo), as a lab
    admin runs it from an inventory: the per-host verdicts, the cluster checks their probe outputs decide,
    merged."""
    inventory = reports.parent / "ansible-hosts"
    lines = ["[kvm_hosts]"]
    for h in lab.hosts:
        lines.append(
            f"{h.name} ansible_host=127.0.0.1 ansible_port={h.port} ansible_user={h.user} "
            f"ansible_ssh_private_key_file={h.key} "
            f"ansible_ssh_common_args='-o UserKnownHostsFile={h.known_hosts} -o StrictHostKeyChecking=yes'"
        )
    inventory.write_text("\n".join([*lines, "[kvm_hosts:vars]", "ansible_become=true", ""]))
    return run_playbook(inventory, reports, "-e", "kvmqa_stages=")  # every stage, the cluster's too


# each boots a lab of its own; last passed 2026-12-07 (case 2 with its Ansible run: 2026-12-08, 411 s)
pytestmark = [pytest.mark.lab, pytest.mark.lab_slow]


def test_case2_bookworm_and_trixie_trixie_to_bookworm_is_refused_for_its_machine_type(
    lab_cluster_factory: Callable[..., Any], tmp_path: Path
) -> None:
    with lab_cluster_factory(("bookworm", "trixie"), ("max", "max")) as lab:
        faults.sync_clock(lab, "lab2", "lab1")
        bookworm, trixie = lab["lab1"], lab["lab2"]
        default_trixie, default_bookworm = faults.default_machine(trixie), faults.default_machine(bookworm)
        on_bookworm, on_trixie = faults.machines(bookworm), faults.machines(trixie)
        print(
            f"\nplain: trixie's default {default_trixie} on bookworm's QEMU: "
            f"{default_trixie in on_bookworm}; "
            f"bookworm's default {default_bookworm} on trixie's QEMU: {default_bookworm in on_trixie}"
        )
        compare = {
            (a, b): faults.host_model_compare(lab, a, b) for a, b in (("lab1", "lab2"), ("lab2", "lab1"))
        }
        print(f"plain: host-model compares: {compare}")
        results, found = run_and_show(lab, tmp_path / "reports", "case2-bookworm-trixie")
        # the same lab through Ansible: the cluster checks the probe outputs decide agree with the suite's
        play = run_playbook_on_lab(lab, tmp_path / "playbook")
    assert play.returncode == 0, (play.stdout + play.stderr)[-4000:]
    if os.environ.get("KVMQA_RECORD_CLUSTER"):  # the raw probe outputs: tests/test_cluster_offline.py
        RECORDED_ANSIBLE.mkdir(parents=True, exist_ok=True)
        for h in ("lab1", "lab2"):
            shutil.copy(tmp_path / "playbook" / "hosts" / h / h / "probe.txt", RECORDED_ANSIBLE / f"{h}.txt")
    merged = json.loads((tmp_path / "playbook" / "results.json").read_text())
    offline = {r["check_id"]: r for r in merged["results"] if r["host"] == "cluster"}
    print(
        "\nthrough Ansible:\n" + "\n".join(f"{c}: {r['verdict']}: {r['message']}" for c, r in offline.items())
    )
    for check in ("cluster.cpu-vendor-arch", "cluster.machine-types", "cluster.versions", "cluster.networks"):
        assert offline[check]["verdict"] == found[check][0], (check, offline[check], found[check])
    refused = {(p["source"], p["destination"]) for p in offline["cluster.machine-types"]["details"]["pairs"]}
    assert refused == {("lab2", "lab1")}, offline["cluster.machine-types"]
    for check in ("cluster.cpu-baseline", "cluster.time-skew", "cluster.reach", "cluster.trust"):
        assert offline[check]["verdict"] == "skip" and "not measured" in offline[check]["message"], check
    assert merged["cluster"]["cluster"]["cells"]["lab2"]["lab1"]["ok"] is False
    assert default_trixie not in on_bookworm and default_bookworm in on_trixie
    machine = next(r for r in results["results"] if r["check_id"] == "cluster.machine-types")
    assert machine["verdict"] == "fail" and default_trixie in machine["message"]
    assert {(p["source"], p["destination"]) for p in machine["details"]["pairs"]} == {("lab2", "lab1")}
    assert found["cluster.versions"][0] == "warn" and "7.2" in found["cluster.versions"][1]
    cells = results["cluster"]["cluster"]["cells"]
    assert not cells["lab2"]["lab1"]["ok"]
    # bookworm -> trixie: able exactly when plain commands say so (its machine type there, its CPU there)
    assert cells["lab1"]["lab2"]["ok"] == (
        default_bookworm in on_trixie and compare[("lab1", "lab2")][0] == 0
    ), cells


def test_case3_two_cpu_models_the_baseline_is_the_lesser_and_the_pairs_are_asymmetric(
    lab_cluster_factory: Callable[..., Any], tmp_path: Path
) -> None:
    with lab_cluster_factory(("bookworm", "bookworm"), ("max", "Opteron_G5")) as lab:
        faults.sync_clock(lab, "lab2", "lab1")
        truth = cpu_facts(lab)
        there = faults.host_model_compare(lab, "lab1", "lab2")
        back = faults.host_model_compare(lab, "lab2", "lab1")
        print(
            f"\nplain: baseline {truth.model} ({len(truth.features)} features); lab1's host-model on lab2: "
            f"exit {there[0]}: {there[1]}; lab2's on lab1: exit {back[0]}: {back[1]}"
        )
        results, found = run_and_show(lab, tmp_path / "reports", "case3-max-opteron-g5")
    baseline = next(r for r in results["results"] if r["check_id"] == "cluster.cpu-baseline")
    assert baseline["details"]["model"] == truth.model and baseline["details"]["dropped"]
    pairwise = next(r for r in results["results"] if r["check_id"] == "cluster.cpu-pairwise")
    refused = {(p["source"], p["destination"]): p["reason"] for p in pairwise["details"]["pairs"]}
    cells = results["cluster"]["cluster"]["cells"]
    named: dict[tuple[str, str], set[str]] = {}
    for (a, b), (status, sentence) in {("lab1", "lab2"): there, ("lab2", "lab1"): back}.items():
        # kvmqa refuses a direction exactly when virsh's compare does, naming the features virsh names
        assert ((a, b) in refused) == (status != 0), (a, b, refused, sentence)
        assert cells[a][b]["ok"] == (status == 0), cells
        if status != 0:
            named[a, b] = set(refused[a, b].split(f"lacks on {b}: ", 1)[1].split(", "))
            assert named[a, b] and all(feature in sentence for feature in named[a, b]), (named, sentence)
    assert there[0] != 0 and len(set(map(frozenset, named.values()))) == len(
        named
    )  # asymmetric: not the same
