"""Real guests through the real libvirtd (qemu:///system): TCG boots, the KVM attempt, a panicking guest,
an interrupted boot, a guest image through an overlay, and the leftover sweep."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import libvirt
import pytest

from kvmqa.config.options import RunOptions
from kvmqa.config.profile import Profile
from kvmqa.core.gate import evaluate_stage
from kvmqa.core.model import Verdict
from kvmqa.session.host import HostSession
from kvmqa.stages import builtin
from kvmqa.stages.first_vm.boot import BootSpec, boot, stage_kit
from kvmqa.stages.first_vm.checks import CHECKS
from kvmqa.stages.first_vm.gather import gather_first_vm
from kvmqa.stages.first_vm.guest_image import boot_guest_image
from kvmqa.stages.first_vm.kit import build_kit
from kvmqa.stages.first_vm.resources import Workspace, cleanup_leftovers, lease_for, leftovers, wait_for_lease
from kvmqa.transport.target import Target
from tests.support.cloud_image import build_standin_image

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(
    not Path("/dev/kvm").exists() and not os.path.exists("/usr/bin/qemu-system-x86_64"),
    reason="needs QEMU and libvirtd",
)


@pytest.fixture(scope="module")
def conn(libvirtd: None) -> libvirt.virConnect:
    c = libvirt.open("qemu:///system")
    yield c
    c.close()


@pytest.fixture(scope="module")
def stage(libvirtd: None, tmp_path_factory: pytest.TempPathFactory) -> tuple[HostSession, dict[str, Any]]:
    """One full gather with emulation allowed: the KVM attempt, the EMULATED boot, virt-install, and
    --guest-image with the stand-in cloud image (tests/support/cloud_image.py)."""
    image = build_standin_image(tmp_path_factory.mktemp("image") / "standin-cloud.qcow2", agent=True)
    profile = Profile(stages={"first_vm": {"boot_timeout": 60, "silent_timeout": 10}})
    options = RunOptions(
        reports_dir=tmp_path_factory.mktemp("reports"), allow_emulation=True, guest_image=image
    )
    session = HostSession(Target.from_url("local"), profile, options, builtin())
    try:
        obs = session.gather("first_vm", gather_first_vm)
    finally:
        session.close_libvirt()
    return session, obs


def mine(conn: libvirt.virConnect, marker: str) -> list[str]:
    return [item for item in leftovers(conn) if marker in item]


def test_emulated_boot_proves_console_disk_and_dhcp_from_inside(
    stage: tuple[HostSession, dict[str, Any]],
) -> None:
    _, obs = stage
    tcg = obs["boots"]["emulated"]
    assert tcg["ok"] and tcg["label"] == "EMULATED" and tcg["outcome"] == "done", tcg.get("error")
    boot_mark = tcg["markers"]["BOOT"]
    assert boot_mark["kernel"] == obs["kit"]["kernel_release"] and boot_mark["cpus"] == "1"
    assert 0.6 * 256 * 1024 < int(boot_mark["mem_kb"]) <= 256 * 1024
    assert tcg["markers"]["DISK"]["status"] == "ok" and len(tcg["markers"]["DISK"]["token"]) == 16
    net = tcg["markers"]["NET"]
    assert net["status"] == "ok" and net["mac"] == tcg["mac"]
    assert tcg["lease"]["ip"] == net["ip"] and tcg["lease"]["network"] == tcg["network"]
    assert tcg["accelerator"]["kvm"] == {"enabled": False, "present": True}
    t = tcg["timings"]
    assert 0 < t["define_to_running_s"] < t["first_byte_s"] + t["define_to_running_s"]
    assert t["first_byte_s"] <= t["boot_marker_s"] <= t["done_marker_s"] <= t["poweroff_s"] < 60
    assert Path(tcg["console_file"]).read_text().count("KVMQA-DONE") == 1


def test_kvm_attempt_fails_fast_with_evidence_not_a_hang(stage: tuple[HostSession, dict[str, Any]]) -> None:
    _, obs = stage
    kvm = obs["boots"]["kvm"]
    if kvm["ok"]:
        pytest.skip("KVM works on this host: the failure path is covered by the recorded samples")
    assert kvm["label"] == "KVM" and kvm["outcome"] in (
        "no-output",
        "start-failed",
        "paused",
        "crashed",
        "libvirt-error",
        "stopped",
    )
    assert kvm["timings"].get("total_s", 0) < 30  # silent_timeout 10 s, not the 60 s boot timeout
    assert kvm["error"]
    if kvm["outcome"] == "no-output":
        assert kvm["guest_cpu"]["status"]["status"] == "running" and kvm["guest_cpu"]["rip"]
        assert kvm["accelerator"]["kvm"]["enabled"] is True


def test_checks_over_the_real_observation(stage: tuple[HostSession, dict[str, Any]]) -> None:
    session, obs = stage
    findings = {f.check_id: f for f in evaluate_stage(CHECKS, session.name, session.facts, session.profile)}
    assert findings["first_vm.emulated-boot"].verdict == Verdict.PASS
    assert "EMULATED" in findings["first_vm.emulated-boot"].message
    if not obs["boots"]["kvm"]["ok"]:
        assert findings["first_vm.kvm-boot"].verdict == Verdict.WARN  # allowed emulation softens it
        assert "outcome=" in findings["first_vm.kvm-boot"].message
    for cid in ("boot-marker", "disk-roundtrip", "dhcp-lease", "accelerator", "virt-install", "cleanup"):
        assert findings[f"first_vm.{cid}"].verdict == Verdict.PASS, findings[f"first_vm.{cid}"]
    assert findings["first_vm.timings"].verdict == Verdict.INFO


def test_virt_install_import_of_the_same_kit_boots(stage: tuple[HostSession, dict[str, Any]]) -> None:
    _, obs = stage
    vi = obs["virt_install"]
    assert vi["ok"], vi.get("error")
    assert "--import" in vi["command"] and "--virt-type qemu" in vi["command"]
    assert vi["markers"]["DISK"]["status"] == "ok" and vi["markers"]["NET"]["ip"] == vi["lease"]["ip"]


def test_stage_leaves_nothing_behind(
    stage: tuple[HostSession, dict[str, Any]], conn: libvirt.virConnect
) -> None:
    _, obs = stage
    assert obs["leftovers"] == []
    created = obs["workspace"]["created"]
    assert any(c.startswith("domain kvmqa-tcg-") for c in created)
    still = set(leftovers(conn))
    assert not still & set(created)
    assert not [
        f
        for f in Path("/var/log/libvirt/qemu").glob("kvmqa-*-console.log")
        if any(f.name.startswith(c.split()[1]) for c in created if c.startswith("domain "))
    ]


def test_guest_panic_is_a_failure_within_the_timeout_with_the_console_tail(conn: libvirt.virConnect) -> None:
    with Workspace(conn) as ws:
        volumes = stage_kit(ws, build_kit())
        started = time.monotonic()
        result = boot(
            ws, volumes, BootSpec("panic", "qemu", timeout=40, cmdline_extra="kvmqa.panic=1", network=False)
        )
        elapsed = time.monotonic() - started
    assert not result.ok and result.outcome == "panic" and elapsed < 40
    assert (
        result.error.startswith("Kernel panic") and "PANIC" in result.markers and "DONE" not in result.markers
    )
    assert "Kernel Offset" in result.console_tail or "end Kernel panic" in result.console_tail
    assert not set(leftovers(conn)) & set(ws.history)


CHILD = """
import sys
from kvmqa.stages.first_vm.boot import BootSpec, boot, stage_kit
from kvmqa.stages.first_vm.kit import build_kit
from kvmqa.stages.first_vm.resources import Workspace
import libvirt
kit = build_kit()
with Workspace(libvirt.open("qemu:///system")) as ws:
    print("TOKEN", ws.token, flush=True)
    volumes = stage_kit(ws, kit)
    spec = BootSpec("sigint", "qemu", timeout=120, cmdline_extra="kvmqa.hold=100", host=sys.argv[1])
    boot(ws, volumes, spec)
"""


def test_sigint_mid_boot_still_removes_every_kvmqa_object(conn: libvirt.virConnect, tmp_path: Path) -> None:
    tag = f"child{os.getpid()}"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, tag],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        token = child.stdout.readline().split()[-1]
        deadline = time.monotonic() + 60
        running = False
        while time.monotonic() < deadline and not running:
            running = any(
                d.name().startswith(f"kvmqa-sigint-{tag}") and d.isActive() for d in conn.listAllDomains()
            )
            time.sleep(0.2)
        assert running, "the child never got its guest running"
        assert mine(conn, token)  # pool/network/kit volumes exist while it runs
        time.sleep(1.0)
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=45)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode != 0 and "KeyboardInterrupt" in err
    assert mine(conn, token) == [] and mine(conn, f"kvmqa-sigint-{tag}") == []


def test_guest_image_boots_with_its_nocloud_seed_and_answers_guest_ping(
    stage: tuple[HostSession, dict[str, Any]],
) -> None:
    """The stand-in cloud image boots from its own disk (BIOS, syslinux), finds the seed by its cidata label,
    runs
    the runcmd script (markers, data disk, DHCP) and starts qemu-ga; the host pings it and releases the
    guest."""
    session, obs = stage
    result = obs["guest_image"]
    assert result["ok"] is True and result["outcome"] == "done" and result["label"] == "EMULATED"
    markers = result["markers"]
    assert markers["BOOT"]["source"] == "cloud-init"
    assert markers["CLOUDINIT"]["instance"] == result["name"]  # meta-data/user-data of this very boot
    assert markers["DISK"]["status"] == "ok" and markers["DISK"]["dev"] == "vdb"
    assert markers["NET"]["status"] == "ok" and markers["NET"]["ip"] == result["lease"]["ip"]
    assert markers["AGENT"]["present"] == "yes"
    assert result["agent"]["ok"] is True and result["agent"]["released"] is True
    assert result["seed"] == {"tool": result["seed"]["tool"], "format": "iso", "label": "cidata"}
    # released through the agent: the guest stopped waiting at once instead of after its 15 s window
    assert float(markers["DONE"]["up"]) - float(markers["AGENT"]["up"]) < 10
    verdicts = {f.check_id: f for f in evaluate_stage(CHECKS, session.name, session.facts, session.profile)}
    finding = verdicts["first_vm.guest-image"]
    assert finding.verdict == Verdict.PASS and "guest agent answered guest-ping" in finding.message


def test_guest_image_boots_through_an_overlay_and_leaves_the_image_untouched(
    conn: libvirt.virConnect, tmp_path: Path
) -> None:
    """No cloud image can be downloaded here: a blank qcow2 exercises upload, overlay, seed, XML and
    cleanup."""
    image = tmp_path / "blank.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image), "256M"], check=True)
    before = hashlib.sha256(image.read_bytes()).hexdigest()
    with Workspace(conn) as ws:
        result = boot_guest_image(ws, image, BootSpec("image", "qemu", timeout=6, network=False))
        xml_seen = list(ws.history)
    assert result["ok"] is False and result["outcome"] == "timeout"  # nothing bootable in a blank disk
    assert result["image_format"] == "qcow2" and result["virtual_size"] == 256 * 1024 * 1024
    assert result["seed"]["label"] == "cidata" and result["memory_mib"] == 1024
    assert any(h.endswith("-overlay.qcow2") for h in xml_seen) and any(
        h.endswith("-seed.iso") for h in xml_seen
    )
    assert hashlib.sha256(image.read_bytes()).hexdigest() == before
    assert not set(leftovers(conn)) & set(xml_seen)


def test_cleanup_leftovers_removes_every_kvmqa_object(conn: libvirt.virConnect) -> None:
    ws = Workspace(conn)
    ws.ensure_pool()
    ws.ensure_network()
    ws.create_disk(f"kvmqa-sweep-{ws.token}.qcow2", 16)
    conn.defineXML(
        f"<domain type='qemu'><name>kvmqa-sweep-{ws.token}</name><memory unit='MiB'>64</memory>"
        "<os><type arch='x86_64'>hvm</type></os></domain>"
    )
    assert len(mine(conn, ws.token)) >= 3  # network, volume, domain (and our pool when none existed)
    removed = cleanup_leftovers(conn, only=ws.token)  # `only`: never sweep a concurrent run's guests
    assert f"domain kvmqa-sweep-{ws.token}" in removed and f"network kvmqa-net-{ws.token}" in removed
    assert f"volume {ws.pool.name()}/kvmqa-sweep-{ws.token}.qcow2" in removed or ws.created_pool
    assert mine(conn, ws.token) == []


def test_a_lease_that_libvirt_learns_late_is_waited_for_not_reported_missing(
    conn: libvirt.virConnect,
) -> None:
    """dnsmasq hands each lease to libvirt's leases helper after its DHCPACK; on a loaded lab host the helper
    wrote
    the status file after the guest had powered off, and the lease was reported missing. Here this test plays
    the
    late helper: it writes the lease into the real status file of a real network 1.5 s after the question."""
    ws = Workspace(conn)
    try:
        net = ws.ensure_network()
        ip = ET.fromstring(conn.networkLookupByName(net).XMLDesc(0)).find("ip").get("address")
        guest_ip, mac = ip.rsplit(".", 1)[0] + ".77", "52:54:00:4c:ea:5e"
        status = Path(f"/var/lib/libvirt/dnsmasq/kvmqa-{ws.token}.status")
        entry = [
            {
                "ip-address": guest_ip,
                "mac-address": mac,
                "hostname": "kvmqa-guest",
                "expiry-time": int(time.time()) + 3600,
            }
        ]
        assert lease_for(conn, net, mac) is None
        once = wait_for_lease(conn, net, mac, guest_has_address=False)  # no address: asked once
        assert once.lease is None and once.error is None and once.waited_s < 1
        writer = threading.Timer(1.5, lambda: status.write_text(json.dumps(entry)))
        writer.start()
        try:
            found = wait_for_lease(conn, net, mac, guest_has_address=True, grace=15)
        finally:
            writer.cancel()
        assert found.lease == {
            "ip": guest_ip,
            "mac": mac,
            "hostname": "kvmqa-guest",
            "expiry": entry[0]["expiry-time"],
            "network": net,
        }
        assert 1.4 <= found.waited_s < 15 and found.error is None
        status.write_text("[]")
        never = wait_for_lease(conn, net, mac, guest_has_address=True, grace=1.0)
        assert (
            never.lease is None and never.waited_s >= 1.0 and never.error is None
        )  # libvirt answered: no lease
        # libvirt cannot answer at all (here: the network is gone): nobody knows, and the lookup says why
        gone = wait_for_lease(conn, f"kvmqa-net-gone-{ws.token}", mac, guest_has_address=True, grace=1.0)
        assert gone.lease is None and gone.error and "kvmqa-net-gone" in gone.error, gone
    finally:
        ws.close()


def test_observation_is_json(stage: tuple[HostSession, dict[str, Any]]) -> None:
    session, obs = stage
    saved = json.loads((session.host_dir / "facts.json").read_text())
    assert saved["first_vm"]["boots"]["emulated"]["label"] == "EMULATED"


def test_remote_target_over_ssh_boots_with_console_stream_and_virt_install(
    libvirtd: None, sshd, tmp_path: Path
) -> None:  # noqa: ANN001
    """The same stage over qemu+ext (ssh as a non-root sudo user): uploads, console stream, virt-install via
    Target.run."""
    target = Target.from_url(
        sshd.url(), sudo=True, identity_file=sshd.client_key, known_hosts=sshd.known_hosts
    )
    profile = Profile(
        stages={"first_vm": {"attempt_kvm": False, "allow_emulation": True, "boot_timeout": 60}}
    )
    session = HostSession(target, profile, RunOptions(reports_dir=tmp_path), builtin())
    try:
        assert session.libvirt().getURI().startswith("qemu+ext://")
        obs = session.gather("first_vm", gather_first_vm)
    finally:
        session.close_libvirt()
        target.close()
    tcg = obs["boots"]["emulated"]
    assert tcg["ok"], (tcg["outcome"], tcg["error"])
    assert tcg["markers"]["DISK"]["status"] == "ok" and tcg["markers"]["NET"]["ip"] == tcg["lease"]["ip"]
    assert obs["virt_install"]["ok"], obs["virt_install"].get("error")
    assert obs["leftovers"] == [] and target.round_trips >= 2


def test_cleanup_still_runs_when_the_connection_died_under_the_stage(libvirtd: None) -> None:
    """libvirtd restarted under a run (it happens: other suites stop it): close() reconnects and removes."""
    conn = libvirt.open("qemu:///system")
    ws = Workspace(conn)
    ws.ensure_network()
    ws.create_disk(f"kvmqa-reconnect-{ws.token}.qcow2", 16)
    conn.close()  # the stage's connection is gone
    removed = ws.close()
    assert f"network kvmqa-net-{ws.token}" in removed
    fresh = libvirt.open("qemu:///system")
    try:
        assert mine(fresh, ws.token) == [] and any("reconnected" in n for n in ws.notes)
    finally:
        fresh.close()
