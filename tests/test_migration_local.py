"""The migration stage's machinery on this machine's real libvirtd (qemu:///system, TCG): the kit guest boots
with its heartbeat, a move that libvirt refuses leaves it running on the source (as `virsh list` says), its
last disk token is on its disk, and nothing of the run is left (`virsh list`, `pool-list`, the pool folder).

A stand-in for a second host: this machine under a second name (one libvirtd). The move is a real peer-to-peer
migration call, which fails here because the machine's root cannot open qemu+ssh to itself; the lab tests
(tests/test_lab_migration*.py, lab_slow) move guests between two real hosts.
"""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import pytest

from kvmqa.stages.first_vm.kit import KitError, build_kit
from kvmqa.stages.first_vm.runner import local_runner
from kvmqa.stages.migration.gather import Host, MigrationSettings, Run

pytestmark = pytest.mark.skipif(
    shutil.which("qemu-system-x86_64") is None or shutil.which("libvirtd") is None,
    reason="needs QEMU and libvirtd",
)


class LocalMember:
    """This machine as a member of the run (a stand-in session: its libvirt and a local shell)."""

    def __init__(self) -> None:
        import libvirt

        self.conn = libvirt.open("qemu:///system")
        self.target = self
        self.progress = None

    def libvirt(self) -> Any:
        return self.conn

    def run(self, command: str, timeout: float | None = None, role: str = "") -> Any:
        return local_runner(command, timeout or 30)


def virsh(*args: str) -> list[str]:
    out = subprocess.run(["virsh", "-c", "qemu:///system", "-q", *args], capture_output=True, text=True)
    return out.stdout.split()


def test_a_refused_move_leaves_the_beating_guest_on_the_source_and_nothing_behind(libvirtd: None) -> None:
    try:
        kit = build_kit()
    except KitError as exc:
        pytest.fail(f"the kit cannot be built here: {exc}")
    member = LocalMember()
    hosts = {"here": Host("here", member), "there": Host("there", member)}
    settings = MigrationSettings(virt_type="qemu", boot_timeout=120, migrate_timeout=120, heartbeat_s=0.5)
    reach = [{"check": "cluster.reach", "reason": "here → there: ssh port 22 refused", "verdict": "fail"}]
    run = Run(hosts, settings, kit, "", {"here": {"there": reach}}, lambda _line: None)
    seen_running: list[str] = []
    try:
        run.setup()
        guest = run.boot("copy", "here", 1)
        assert not guest.get("error"), guest
        seen_running = virsh("list", "--name")
        hop = run.move("copy", "here", "there", guest)
        after_move = virsh("list", "--name")
        run.finish(guest)
    finally:
        removed, left, _ = run.close()
    assert guest["name"] in seen_running and guest["name"] in after_move  # plain virsh: still running here
    assert not hop["ok"] and hop["still_on_source"] and hop["source_state"] == "running", hop
    assert hop["prediction"]["linked"] in ("cluster.reach", "cluster.trust"), hop
    token = guest["disk_token"]
    assert token["n"] >= guest["last_token_seen"] and token["boot"] == guest["boot_id"], guest
    assert left == {"here": [], "there": []}, left
    assert f"pool {run.pool}" in removed["here"] + removed["there"]
    assert not [
        n for n in virsh("list", "--all", "--name") + virsh("pool-list", "--all", "--name") if run.token in n
    ]
    assert not list(__import__("pathlib").Path("/var/lib/libvirt/images").glob(f"{run.pool}*"))
