"""``virt-install --import`` of the same kit, run on the target, proven by the same console markers.

The data volume is created through the pool API and handed to virt-install as ``vol=<pool>/<vol>``;
the serial console is logged to a file on the target (virt-install starts the guest itself, so the
console is read from that log after power-off). The domain is removed by the workspace afterwards.
"""

from __future__ import annotations

import shlex
import time
from typing import Any

import libvirt

from kvmqa.stages.first_vm.boot import (
    STOP_REASONS,
    BootResult,
    BootSpec,
    KitVolumes,
    record_lease,
    state_text,
)
from kvmqa.stages.first_vm.console import parse_markers, read_console, tail
from kvmqa.stages.first_vm.domain import CONSOLE_LOG_DIR, object_name, random_mac
from kvmqa.stages.first_vm.outcome import describe
from kvmqa.stages.first_vm.resources import Workspace
from kvmqa.stages.first_vm.runner import Runner, tail_reader


def virt_install_argv(
    name: str,
    spec: BootSpec,
    kit: KitVolumes,
    pool: str,
    volume: str,
    network: str | None,
    mac: str,
    console_log: str,
) -> list[str]:
    argv = [
        "virt-install",
        "--connect",
        "qemu:///system",
        "--name",
        name,
        "--memory",
        str(spec.memory_mib),
        "--vcpus",
        str(spec.vcpus),
        "--import",
        "--disk",
        f"vol={pool}/{volume},bus=virtio",
        "--boot",
        f"kernel={kit.kernel_path},initrd={kit.initrd_path},"
        f"kernel_args={kit.kit.cmdline(spec.cmdline_extra, '' if network else 'kvmqa.net=0')}",
        "--network",
        f"network={network},model=virtio,mac={mac}" if network else "none",
        "--graphics",
        "none",
        "--serial",
        f"pty,log.file={console_log}",
        "--noautoconsole",
        "--virt-type",
        spec.virt_type,
        "--osinfo",
        "detect=off,name=generic",
    ]
    if kit.kit.arch != "x86_64":
        # ACPI on aarch64 needs UEFI, which direct kernel boot does without (libvirt refuses the pair)
        argv += ["--arch", kit.kit.arch, "--machine", "virt", "--features", "acpi=off"]
        if network:  # Debian's arm64 QEMU has no iPXE ROM for virtio-net (efi-virtio.rom); none is needed
            argv += ["--xml", "./devices/interface/rom/@enabled=no"]
    return argv


def virt_install_boot(ws: Workspace, kit: KitVolumes, spec: BootSpec, run: Runner) -> dict[str, Any]:
    """Install-and-boot with virt-install on the target; returns a BootResult dict plus the command."""
    pool = ws.ensure_pool()
    network = ws.ensure_network() if spec.network else None
    name = object_name("vinst", spec.host)
    volume, mac = f"{name}-data.qcow2", random_mac()
    console_log = f"{CONSOLE_LOG_DIR}/{name}-console.log"
    result = BootResult(
        name,
        spec.virt_type,
        spec.label,
        mac=mac,
        network=network,
        memory_mib=spec.memory_mib,
        vcpus=spec.vcpus,
    )
    argv = virt_install_argv(name, spec, kit, pool.name(), volume, network, mac, console_log)
    command = " ".join(shlex.quote(a) for a in argv)
    read_tail = tail_reader(run)
    t0 = time.monotonic()
    try:
        ws.create_disk(volume, spec.disk_mib)
        ws.track_domain(name)
        proc = run(command, spec.timeout)
        result.timings["virt_install_s"] = time.monotonic() - t0
        if proc.rc != 0:
            result.outcome = "start-failed"
            result.error = f"virt-install rc={proc.rc}: {(proc.stderr or proc.stdout).strip()[-600:]}"
            return {**result.to_json(), "command": command}
        dom = ws.conn.lookupByName(name)
        deadline = t0 + spec.timeout
        while dom.isActive() and time.monotonic() < deadline:
            time.sleep(0.1)
        result.state = state_text(*dom.state())
        result.timings["poweroff_s"] = time.monotonic() - t0
        text = read_tail(console_log, 400) or ""
        result.markers, result.console_tail = parse_markers(text), tail(text)
        reading = read_console(text)
        result.kernel_s, result.boots, result.reset_at_kernel_s = (
            reading.kernel_s,
            reading.boots,
            reading.reset_at_kernel_s,
        )
        result.restart_requested = reading.restart_requested
        result.timings["deadline_s"] = spec.timeout
        if reading.reset:  # virt-install's domain restarts on reset: the log shows the second boot
            result.outcome = "reset"
        elif dom.isActive():
            result.outcome = "timeout"
        else:
            result.ok = "DONE" in result.markers
            result.outcome = "done" if result.ok else "stopped"
        if dom.isActive():
            dom.destroy()
            result.stopped_by, result.stop_reason = "kvmqa", STOP_REASONS.get(result.outcome, result.outcome)
        if (
            result.outcome == "timeout"
        ):  # its console is read once, afterwards: whether it still advanced is unknown
            at = (
                f"kernel at {reading.kernel_s:.1f} s"
                if reading.kernel_s is not None
                else "no kernel timestamp"
            )
            result.error = f"no power-off within the {spec.timeout:.0f} s deadline ({at}); kvmqa destroyed it"
        elif not result.ok:
            result.error = describe(result.to_json())
        if network:
            record_lease(ws.conn, result, network, mac)
        if not result.ok:
            result.qemu_log_tail = read_tail(f"{CONSOLE_LOG_DIR}/{name}.log", 15)
    except libvirt.libvirtError as exc:
        result.outcome, result.error = "libvirt-error", str(exc)
    finally:
        ws.forget_domain(name)
        ws.forget_volume(volume)
        run(f"rm -f {shlex.quote(console_log)}", 15)
    result.timings["total_s"] = time.monotonic() - t0
    return {**result.to_json(), "command": command}
