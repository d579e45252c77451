"""``--guest-image PATH``: boot the user's cloud image through libvirt, untouched, with a NoCloud seed.

The image is uploaded into the pool (libvirt stream) and booted through a qcow2 overlay, so neither the
user's file nor the uploaded copy is written. A ``cidata`` seed makes cloud-init print markers on the
serial console; a second data disk gets the same write/read round trip; when the guest reports
qemu-guest-agent, ``guest-ping`` is sent over the ``org.qemu.guest_agent.0`` channel.
"""

from __future__ import annotations

import json
import struct
import tempfile
from pathlib import Path
from typing import Any

import libvirt
import libvirt_qemu

from kvmqa.stages.first_vm.boot import BootResult, BootSpec, Hook, TailFn, run_domain
from kvmqa.stages.first_vm.domain import DiskSpec, DomainSpec, object_name
from kvmqa.stages.first_vm.resources import Workspace
from kvmqa.stages.first_vm.seed import AGENT_DONE_FILE, build_seed

QCOW2_MAGIC = b"QFI\xfb"
IMAGE_MIN_MEMORY_MIB = 1024


def image_format(path: Path) -> tuple[str, int]:
    """(format, virtual size in bytes) of a qcow2 or raw image file."""
    with path.open("rb") as fh:
        header = fh.read(32)
    if header[:4] == QCOW2_MAGIC:
        return "qcow2", struct.unpack(">Q", header[24:32])[0]
    return "raw", path.stat().st_size


def agent_hook(timeout: int = 5) -> Hook:
    """Ping the guest agent once the guest says it has one (until it answers), then let the guest go on."""

    def hook(dom: libvirt.virDomain, text: str, result: BootResult) -> None:
        if "KVMQA-AGENT present=yes" not in text or result.agent.get("ok"):
            return
        try:
            reply = libvirt_qemu.qemuAgentCommand(dom, '{"execute":"guest-ping"}', timeout, 0)
            result.agent = {"ok": True, "reply": json.loads(reply).get("return")}
        except (libvirt.libvirtError, ValueError) as exc:
            result.agent = {
                "ok": False,
                "error": str(exc).splitlines()[0][:200],
                "attempts": int(result.agent.get("attempts", 0)) + 1,
            }
            return
        result.agent["released"] = release_guest(dom, timeout)

    return hook


def release_guest(dom: libvirt.virDomain, timeout: int) -> bool:
    """Create the file the seed's script waits for (AGENT_DONE_FILE), so the guest stops waiting for the ping.
    Agents that block guest-file-* (a common policy) make this fail: the guest then waits out its window."""
    try:
        opened = libvirt_qemu.qemuAgentCommand(
            dom,
            json.dumps({"execute": "guest-file-open", "arguments": {"path": AGENT_DONE_FILE, "mode": "w"}}),
            timeout,
            0,
        )
        handle = json.loads(opened)["return"]
        libvirt_qemu.qemuAgentCommand(
            dom, json.dumps({"execute": "guest-file-close", "arguments": {"handle": handle}}), timeout, 0
        )
        return True
    except (libvirt.libvirtError, ValueError, KeyError):
        return False


def image_domain(ws: Workspace, name: str, spec: BootSpec, overlay: str, data: str, seed: str) -> DomainSpec:
    pool = ws.ensure_pool().name()
    return DomainSpec(
        name=name,
        virt_type=spec.virt_type,
        memory_mib=max(spec.memory_mib, IMAGE_MIN_MEMORY_MIB),
        vcpus=spec.vcpus,
        disks=[
            DiskSpec(pool, overlay),
            DiskSpec(pool, data, target="vdb"),
            DiskSpec(pool, seed, fmt="raw", target="hdc", bus="ide", device="cdrom", readonly=True),
        ],
        network=ws.ensure_network() if spec.network else None,
        guest_agent=True,
    )


def boot_guest_image(
    ws: Workspace, image: Path, spec: BootSpec, *, read_tail: TailFn | None = None, save_console: Any = None
) -> dict[str, Any]:
    """Upload, overlay, seed and boot the image; returns the BootResult dict plus image/seed facts."""
    if not image.is_file():
        return {
            "ok": False,
            "outcome": "start-failed",
            "error": f"guest image {image} is not a file",
            "label": spec.label,
            "markers": {},
        }
    fmt, virtual_size = image_format(image)
    name = object_name("image", spec.host)
    base = ws.upload(f"{name}-base", image)
    overlay, data, seed_vol = f"{name}-overlay.qcow2", f"{name}-data.qcow2", f"{name}-seed.iso"
    ws.overlay(overlay, base.path(), fmt, virtual_size)
    with tempfile.TemporaryDirectory(prefix="kvmqa-seed-") as tmp:
        seed = build_seed(Path(tmp) / "seed.img", name)
        ws.upload(seed_vol, seed.path)
    spec.silent_timeout = spec.timeout  # firmware and boot loader may keep the serial line quiet
    dspec = image_domain(ws, name, spec, overlay, data, seed_vol)
    result = run_domain(
        ws,
        dspec,
        spec,
        volumes={data: spec.disk_mib},
        read_tail=read_tail,
        save_console=save_console,
        hook=agent_hook(),
    )
    for vol in (overlay, seed_vol, f"{name}-base"):
        ws.forget_volume(vol)
    return {
        **result.to_json(),
        "image": str(image),
        "image_format": fmt,
        "virtual_size": virtual_size,
        "seed": {"tool": seed.tool, "format": seed.fmt, "label": "cidata"},
    }
