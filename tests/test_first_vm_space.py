"""The first VM depends on the room it needs itself (libvirt.first-vm-space), not on the lab's disk policy
(host.images-disk): through a HostSession with the real registry over recorded facts, and the need measured
against what a real Workspace creates on the real libvirtd here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import libvirt
import pytest

from kvmqa.config.options import RunOptions
from kvmqa.config.profile import Profile
from kvmqa.core.model import Finding, Verdict
from kvmqa.session.host import HostSession
from kvmqa.stages import builtin
from kvmqa.stages.first_vm.boot import stage_kit
from kvmqa.stages.first_vm.kit import build_kit
from kvmqa.stages.first_vm.resources import Workspace
from kvmqa.stages.first_vm.space import POOL_BASE, space_need
from kvmqa.transport.target import Target
from tests.support.golden import facts_of

GIB = 1024**3
MIB = 1024**2
RECORDED_PASS = "lab-bookworm-nested-kvm-pass.json"  # a recorded first VM that booted under KVM


def session_for(
    storage: dict[str, Any], pools: list[dict[str, Any]], profile: Profile | None, tmp: Path
) -> HostSession:
    """A good host's recorded facts (its first VM booted under KVM) with these storage facts and pools."""
    facts = facts_of("debian12-nosystemd-local.json", RECORDED_PASS)
    facts["storage"] = storage
    facts["libvirt"]["pools"] = pools
    target = Target(name="hv", backend="ssh", host="hv.invalid")
    session = HostSession(
        target, profile or Profile(), RunOptions(reports_dir=tmp), builtin(), all_targets=[target]
    )
    session.use_facts(facts)
    return session


def findings(
    free_bytes: int,
    profile: Profile | None = None,
    pools: list[dict[str, Any]] | None = None,
    tmp: Path = Path("/tmp"),
) -> dict[str, Finding]:
    """Every built-in stage's findings (the engine's aside), for a good host with `free_bytes` for images."""
    storage = {"dir": POOL_BASE, "path": "/", "available_kib": free_bytes // 1024, "size_kib": 20 * GIB}
    default = {
        "name": "default",
        "active": True,
        "autostart": True,
        "type": "dir",
        "path": POOL_BASE,
        "capacity": 20 * GIB,
        "available": free_bytes,
    }
    session = session_for(storage, [default] if pools is None else pools, profile, tmp)
    return {
        check.id: session.evaluate(stage, check)
        for stage in builtin()
        if stage.name != "ovirt_engine"
        for check in stage
    }


def first_vm(found: dict[str, Finding]) -> dict[str, Finding]:
    return {cid: f for cid, f in found.items() if cid.startswith("first_vm.")}


def test_a_host_below_the_disk_policy_still_boots_its_first_vm(tmp_path: Path) -> None:
    found = findings(int(2.1 * GIB), tmp=tmp_path)
    disk = found["host.images-disk"]
    assert disk.verdict == Verdict.FAIL and "2.1 GiB free, the profile requires 5 GiB" in disk.message
    space = found["libvirt.first-vm-space"]
    assert space.verdict == Verdict.PASS, space.message
    assert space.message == (
        "the first VM needs 160 MiB (64 MiB data disk + 32 MiB kernel and initramfs + "
        f"64 MiB margin) in pool default ({POOL_BASE}), which has 2.1 GiB free"
    )
    assert first_vm(found)
    for cid, f in first_vm(found).items():
        assert "host.images-disk" not in f.message and f.details.get("blocked_by") != "host.images-disk", cid
    assert found["first_vm.kvm-boot"].verdict == Verdict.PASS
    assert found["first_vm.disk-roundtrip"].verdict == Verdict.PASS
    blocked = {f.details.get("blocked_by") for f in found.values() if f.verdict == Verdict.SKIP}
    assert "host.images-disk" not in blocked  # nothing depends on the policy any more


def test_a_host_without_room_for_the_first_vm_skips_it_naming_the_space_check(tmp_path: Path) -> None:
    found = findings(50 * MIB, tmp=tmp_path)
    space = found["libvirt.first-vm-space"]
    assert space.verdict == Verdict.FAIL and "which has 50 MiB free" in space.message
    assert space.details["need_mib"] == 160 and space.details["free_mib"] == 50
    assert "Free space in that pool's filesystem" in space.hint
    for cid, f in first_vm(found).items():
        assert f.verdict == Verdict.SKIP and f.details.get("blocked_by") == "libvirt.first-vm-space", cid
        why = "depends on libvirt.first-vm-space, which is fail on hv: the first VM needs 160 MiB"
        assert why in f.message, cid


def test_the_need_follows_the_profile_s_disk_and_the_pool_the_workspace_would_use(tmp_path: Path) -> None:
    big_disk = Profile(stages={"first_vm": {"disk_mib": 4096}})
    assert space_need(big_disk).total_mib == 4096 + 32 + 64
    assert findings(int(2.1 * GIB), big_disk, tmp=tmp_path)["libvirt.first-vm-space"].verdict == Verdict.FAIL
    # kvmqa's own leftover pool is never reused: the first VM creates its pool under /var/lib/libvirt/images
    leftover = [
        {
            "name": "kvmqa-pool-x",
            "active": True,
            "type": "dir",
            "path": f"{POOL_BASE}/kvmqa-x",
            "available": 900 * GIB,
        }
    ]
    space = findings(50 * MIB, pools=leftover, tmp=tmp_path)["libvirt.first-vm-space"]
    assert space.verdict == Verdict.FAIL
    assert "no active dir pool: the first VM creates its own there" in space.message
    # the first active dir pool is the one the Workspace takes, wherever it lives
    elsewhere = [
        {"name": "iso", "active": True, "type": "fs", "path": "/iso", "available": 0},
        {"name": "big", "active": True, "type": "dir", "path": "/srv/big", "available": 900 * GIB},
    ]
    space = findings(50 * MIB, pools=elsewhere, tmp=tmp_path)["libvirt.first-vm-space"]
    assert space.verdict == Verdict.PASS and "pool big (/srv/big)" in space.message


def test_unreadable_free_space_is_a_warning_that_blocks_nothing(tmp_path: Path) -> None:
    storage = {"dir": POOL_BASE, "path": None, "error": "df: permission denied"}
    session = session_for(storage, [], None, tmp_path)
    libvirt_stage, first = builtin().get("libvirt"), builtin().get("first_vm")
    space = session.evaluate(libvirt_stage, libvirt_stage.checks.get("libvirt.first-vm-space"))
    assert space.verdict == Verdict.WARN
    assert "df: permission denied; the first VM runs anyway" in space.message
    assert session.evaluate(first, first.checks.get("first_vm.kvm-boot")).verdict == Verdict.PASS


@pytest.mark.usefixtures("libvirtd")
def test_what_a_real_workspace_creates_fits_the_need() -> None:
    """The kit's volumes and one data disk, as the stage creates them on the real libvirtd, fit the need."""
    conn = libvirt.open("qemu:///system")
    need = space_need(Profile())
    try:
        with Workspace(conn) as ws:
            stage_kit(ws, build_kit())
            ws.create_disk("kvmqa-space-data.qcow2", need.disk_mib)
            pool = ws.ensure_pool()
            volumes = [pool.storageVolLookupByName(n) for n in ws.volumes]
            capacity = sum(v.info()[1] for v in volumes)
            kit = sum(v.info()[1] for v in volumes if "-kit-" in v.name())
    finally:
        conn.close()
    assert len(volumes) == 3
    assert kit <= need.kit_mib * MIB, kit
    assert capacity <= (need.disk_mib + need.kit_mib) * MIB <= need.total_mib * MIB, capacity
