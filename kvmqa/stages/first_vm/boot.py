"""Boot one throw-away guest and observe it: define -> start (paused) -> console -> resume -> markers
-> power-off, with timings, accelerator proof over QMP and the host-side DHCP lease.

Nothing here hangs: every wait has a deadline, a guest that outlives it is destroyed, and the domain and
its data volume are removed in ``finally`` (also on KeyboardInterrupt).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import libvirt
import libvirt_qemu

from kvmqa.core.stage import StageInterrupted
from kvmqa.stages.first_vm.console import ConsoleReading, ConsoleTap, parse_markers, read_console, tail
from kvmqa.stages.first_vm.domain import CONSOLE_LOG_DIR, DiskSpec, DomainSpec, object_name
from kvmqa.stages.first_vm.kit import Kit
from kvmqa.stages.first_vm.outcome import describe
from kvmqa.stages.first_vm.resources import Workspace, wait_for_lease

PANIC = re.compile(r"Kernel panic[^\r\n]*")
TailFn = Callable[[str, int], "str | None"]  # (host path, lines) -> last lines, None if unreadable

STATES = {
    libvirt.VIR_DOMAIN_NOSTATE: "nostate",
    libvirt.VIR_DOMAIN_RUNNING: "running",
    libvirt.VIR_DOMAIN_BLOCKED: "blocked",
    libvirt.VIR_DOMAIN_PAUSED: "paused",
    libvirt.VIR_DOMAIN_SHUTDOWN: "shutdown",
    libvirt.VIR_DOMAIN_SHUTOFF: "shutoff",
    libvirt.VIR_DOMAIN_CRASHED: "crashed",
    libvirt.VIR_DOMAIN_PMSUSPENDED: "pmsuspended",
}


def state_text(state: int, reason: int) -> str:
    """``shutoff/crashed`` from libvirt's (state, reason) pair."""
    name = STATES.get(state, str(state))
    prefix = f"VIR_DOMAIN_{name.upper()}_"
    reasons = [
        k for k, v in vars(libvirt).items() if k.startswith(prefix) and v == reason and k != prefix + "LAST"
    ]
    return f"{name}/{reasons[0][len(prefix) :].lower() if reasons else reason}"


@dataclass(frozen=True)
class KitVolumes:
    """The kit's kernel and initramfs as pool volumes (host paths for <kernel>/<initrd>)."""

    kit: Kit
    kernel_path: str
    initrd_path: str


def stage_kit(ws: Workspace, kit: Kit) -> KitVolumes:
    """Upload kernel and initramfs into the workspace pool with libvirt streams."""
    kernel = ws.upload(f"kvmqa-kit-{ws.token}-vmlinuz", kit.kernel)
    initrd = ws.upload(f"kvmqa-kit-{ws.token}-initrd", kit.initrd)
    return KitVolumes(kit, kernel.path(), initrd.path())


@dataclass
class BootSpec:
    purpose: str
    virt_type: str = "qemu"
    memory_mib: int = 256
    vcpus: int = 1
    timeout: float = 60.0
    silent_timeout: float = 10.0  # fail early when the console stays silent this long after resume
    cmdline_extra: str = ""
    disk_mib: int = 64
    network: bool = True
    host: str = ""
    progress: Progress | None = field(default=None, repr=False, compare=False)  # called on every poll

    @property
    def label(self) -> str:
        return "KVM" if self.virt_type == "kvm" else "EMULATED"


@dataclass
class BootResult:
    """What one boot showed, from the outside (libvirt, QMP, leases) and the inside (console markers)."""

    name: str
    virt_type: str
    label: str
    ok: bool = False
    # done | still-booting | timeout | no-output | reset | panic | crashed | paused | stopped | destroyed |
    # start-failed | libvirt-error | interrupted
    outcome: str = "not-started"
    markers: dict[str, dict[str, str]] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    accelerator: dict[str, Any] = field(default_factory=dict)
    lease: dict[str, Any] | None = None
    lease_error: str | None = None  # libvirt could not say whether there was a lease
    mac: str = ""
    network: str | None = None
    state: str = ""
    error: str | None = None
    console_tail: str = ""
    qemu_log_tail: str | None = None
    console_file: str | None = None
    guest_cpu: dict[str, Any] = field(default_factory=dict)
    agent: dict[str, Any] = field(default_factory=dict)
    memory_mib: int = 0
    vcpus: int = 0
    kernel_s: float | None = None  # the last kernel timestamp on the console
    boots: int = 0  # kernel banners on the console (2+: the guest reset)
    reset_at_kernel_s: float | None = None
    restart_requested: bool = False
    panic: str | None = None
    stopped_by: str = ""  # "kvmqa" when this boot destroyed the guest (deadline, silence, reset, Ctrl-C)
    stop_reason: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def query_accelerator(dom: libvirt.virDomain) -> dict[str, Any]:
    """QMP ``query-kvm`` (and ``query-accelerators`` where QEMU has it) on the running QEMU."""
    found: dict[str, Any] = {}
    for command, key in (("query-kvm", "kvm"), ("query-accelerators", "accelerators")):
        try:
            reply = json.loads(libvirt_qemu.qemuMonitorCommand(dom, json.dumps({"execute": command}), 0))
            found[key] = reply.get("return", reply.get("error"))
        except (libvirt.libvirtError, ValueError) as exc:
            found[f"{key}_error"] = str(exc).splitlines()[0][:200]
    return found


def guest_cpu_state(dom: libvirt.virDomain) -> dict[str, Any]:
    """Evidence for a stuck guest: QMP query-status and the vCPU's instruction pointer (HMP)."""
    found: dict[str, Any] = {}
    try:
        found["status"] = json.loads(
            libvirt_qemu.qemuMonitorCommand(dom, '{"execute":"query-status"}', 0)
        ).get("return")
        regs = libvirt_qemu.qemuMonitorCommand(
            dom, "info registers", libvirt_qemu.VIR_DOMAIN_QEMU_MONITOR_COMMAND_HMP
        )
        match = re.search(r"RIP=([0-9a-fA-F]+)", regs)
        found["rip"] = match.group(1) if match else None
        if match is None:
            found["registers"] = regs.strip()[:160]
    except (libvirt.libvirtError, ValueError) as exc:
        found["error"] = str(exc).splitlines()[0][:200]
    return found


def boot(
    ws: Workspace,
    kit: KitVolumes,
    spec: BootSpec,
    *,
    read_tail: TailFn | None = None,
    save_console: Callable[[str, str], str] | None = None,
) -> BootResult:
    """Boot the kit once (direct kernel boot) and return what was observed."""
    pool = ws.ensure_pool()
    network = ws.ensure_network() if spec.network else None
    name = object_name(spec.purpose, spec.host)
    disk = f"{name}-data.qcow2"
    dspec = DomainSpec(
        name=name,
        virt_type=spec.virt_type,
        memory_mib=spec.memory_mib,
        vcpus=spec.vcpus,
        kernel=kit.kernel_path,
        initrd=kit.initrd_path,
        cmdline=kit.kit.cmdline(spec.cmdline_extra, "" if spec.network else "kvmqa.net=0"),
        disks=[DiskSpec(pool.name(), disk)],
        network=network,
        arch=kit.kit.arch,
    )
    return run_domain(
        ws, dspec, spec, volumes={disk: spec.disk_mib}, read_tail=read_tail, save_console=save_console
    )


Hook = Callable[[libvirt.virDomain, str, BootResult], None]
Progress = Callable[
    [BootResult, float, ConsoleReading], None
]  # (result so far, seconds since resume, console)


def run_domain(
    ws: Workspace,
    dspec: DomainSpec,
    spec: BootSpec,
    *,
    volumes: dict[str, int] | None = None,
    read_tail: TailFn | None = None,
    save_console: Callable[[str, str], str] | None = None,
    hook: Hook | None = None,
) -> BootResult:
    """Create `volumes` (name -> MiB), define, start paused, tap the console, resume, watch, clean up.

    Never raises for a guest that misbehaves (the result says how); the domain and `volumes` are
    removed in ``finally``. `hook(dom, console_text, result)` runs on every poll while the guest lives.
    Ctrl-C raises StageInterrupted after that cleanup, with this boot's result as evidence["boot"].
    """
    name = dspec.name
    result = BootResult(
        name,
        spec.virt_type,
        spec.label,
        mac=dspec.mac if dspec.network else "",
        network=dspec.network,
        memory_mib=dspec.memory_mib,
        vcpus=dspec.vcpus,
    )
    tap: ConsoleTap | None = None
    interrupted: KeyboardInterrupt | None = None
    t0 = time.monotonic()
    try:
        for vol, mib in (volumes or {}).items():
            ws.create_disk(vol, mib)
        dom = ws.conn.defineXML(dspec.to_xml())
        ws.track_domain(name)
        result.timings["define_s"] = time.monotonic() - t0
        try:
            dom.createWithFlags(libvirt.VIR_DOMAIN_START_PAUSED)
        except libvirt.libvirtError as exc:
            result.outcome, result.error = "start-failed", str(exc)
            return result
        result.timings["qemu_started_s"] = time.monotonic() - t0  # QEMU up, paused
        tap = ConsoleTap(ws.conn.getURI(), dom.UUID())
        result.timings["console_open_s"] = time.monotonic() - t0
        result.accelerator = query_accelerator(dom)
        dom.resume()
        t_run = time.monotonic()
        result.timings["define_to_running_s"] = t_run - t0
        _watch(dom, tap, spec, t_run, result, hook)
        result.timings["total_s"] = time.monotonic() - t0
    except KeyboardInterrupt as exc:  # raised again below, after the cleanup, with what this boot saw
        result.outcome, interrupted = "interrupted", exc
    except libvirt.libvirtError as exc:
        result.outcome, result.error = "libvirt-error", str(exc)
    finally:
        if not result.ok and read_tail is not None:  # before destroy: the log's last lines say why
            result.qemu_log_tail = read_tail(f"{CONSOLE_LOG_DIR}/{name}.log", 15)
        if _destroy_if_active(ws.conn, name):  # also a guest Ctrl-C caught before its console was open
            result.stopped_by, result.stop_reason = "kvmqa", STOP_REASONS.get(result.outcome, result.outcome)
        if tap is not None:
            tap.close()
            text = tap.text.replace("\r", "")
            reading = read_console(
                text
            )  # after a reset the lines before it are the evidence, not the new boot
            result.console_tail = tail(text[: reading.reset_pos] if reading.reset_pos is not None else text)
            result.markers = parse_markers(tap.text)
            panic = PANIC.search(tap.text)
            result.panic = panic.group(0).strip() if panic else None
            if not result.ok and result.outcome != "libvirt-error":
                result.error = describe(result.to_json())
            if save_console is not None:
                result.console_file = save_console(name, tap.text)
        _finish(ws, result, name, read_tail, list(volumes or {}))
    if interrupted is not None:
        raise StageInterrupted({"boot": result.to_json()}) from interrupted
    return result


def _watch(
    dom: libvirt.virDomain,
    tap: ConsoleTap,
    spec: BootSpec,
    t_run: float,
    result: BootResult,
    hook: Hook | None = None,
) -> None:
    """Poll the domain until it powers off, stops, resets, crashes, stays silent or the deadline passes.

    Only records what was seen (outcome, state, kernel time, resets); the words come from `describe`.
    """
    timeout, silent = spec.timeout, min(spec.silent_timeout, spec.timeout)
    deadline = t_run + timeout
    reading, read_len = read_console(""), -1
    while True:
        state, reason = dom.state()  # first the state, then the text: what the guest printed before it
        now = time.monotonic()  # switched off is in the text read in the same poll
        result.state = state_text(state, reason)
        if "first_byte_s" not in result.timings and tap.first_byte_at is not None:
            result.timings["first_byte_s"] = tap.first_byte_at - t_run
        text = tap.text
        if len(text) != read_len:  # read the console again only when it grew
            reading, read_len = read_console(text), len(text)
        for marker, key in (
            ("KVMQA-BOOT", "boot_marker_s"),
            ("KVMQA-DONE", "done_marker_s"),
            ("reboot: Power down", "guest_off_s"),
        ):
            if key not in result.timings and marker in text:
                result.timings[key] = now - t_run
        _note_console(result, reading, tap, t_run)
        if spec.progress is not None:
            spec.progress(result, now - t_run, reading)
        if hook is not None and state == libvirt.VIR_DOMAIN_RUNNING:
            hook(dom, text, result)
        panic = PANIC.search(text)
        if state in (libvirt.VIR_DOMAIN_SHUTDOWN, libvirt.VIR_DOMAIN_SHUTOFF) or (
            state == libvirt.VIR_DOMAIN_PAUSED and reason == libvirt.VIR_DOMAIN_PAUSED_SHUTTING_DOWN
        ):
            result.timings.setdefault("poweroff_s", now - t_run)  # the guest switched off
        if state == libvirt.VIR_DOMAIN_SHUTOFF:
            result.timings["shutoff_s"] = now - t_run  # libvirt finished tearing QEMU down
            result.ok = (
                "KVMQA-DONE" in text and reason == libvirt.VIR_DOMAIN_SHUTOFF_SHUTDOWN and not reading.reset
            )
            result.outcome = (
                "done"
                if result.ok
                else "panic"
                if panic
                else "reset"
                if reading.reset
                else "crashed"
                if reason == libvirt.VIR_DOMAIN_SHUTOFF_CRASHED
                else "destroyed"
                if reason == libvirt.VIR_DOMAIN_SHUTOFF_DESTROYED
                else "stopped"
            )
            break
        if (
            reading.reset
        ):  # a reset guest boots again (on_reboot=restart): stop it at once (a panic wins the name)
            result.outcome = "panic" if panic else "reset"
            break
        if state == libvirt.VIR_DOMAIN_CRASHED or (
            state == libvirt.VIR_DOMAIN_PAUSED and reason != libvirt.VIR_DOMAIN_PAUSED_SHUTTING_DOWN
        ):
            result.outcome = "crashed" if state == libvirt.VIR_DOMAIN_CRASHED else "paused"
            result.guest_cpu = guest_cpu_state(dom)
            break
        if tap.first_byte_at is None and silent < timeout and now - t_run >= silent:
            result.outcome = "no-output"
            result.timings["silent_s"] = silent
            result.guest_cpu = guest_cpu_state(dom)
            break
        if now >= deadline:
            advancing = tap.last_byte_at is not None and now - tap.last_byte_at < advancing_window(spec)
            result.outcome = "still-booting" if advancing else "timeout"
            result.timings["deadline_s"] = timeout
            result.guest_cpu = guest_cpu_state(dom)
            break
        tap.wait(0.05)


def record_lease(conn: libvirt.virConnect, result: BootResult, network: str, mac: str) -> None:
    """The host's DHCP lease for the guest, waited for when the guest's KVMQA-NET marker says it got an
    address."""
    found = wait_for_lease(conn, network, mac, (result.markers.get("NET") or {}).get("status") == "ok")
    result.lease, result.lease_error = found.lease, found.error
    result.timings["lease_wait_s"] = found.waited_s


def advancing_window(spec: BootSpec) -> float:
    """A console that printed within this many seconds before the deadline is still advancing."""
    return max(3.0, min(spec.silent_timeout, 10.0))


def _note_console(result: BootResult, reading: ConsoleReading, tap: ConsoleTap, t_run: float) -> None:
    result.kernel_s = reading.kernel_s
    result.boots = reading.boots
    result.reset_at_kernel_s = reading.reset_at_kernel_s
    result.restart_requested = reading.restart_requested
    if tap.last_byte_at is not None:
        result.timings["last_byte_s"] = tap.last_byte_at - t_run


def _finish(
    ws: Workspace, result: BootResult, name: str, read_tail: TailFn | None, volumes: list[str]
) -> None:
    """Collect host-side evidence, then remove the domain and its volume."""
    if not result.ok and read_tail is not None and not result.console_tail:  # no stream: libvirt's serial log
        result.console_tail = read_tail(f"{CONSOLE_LOG_DIR}/{name}-console.log", 25) or ""
    if result.network and result.mac:
        record_lease(ws.conn, result, result.network, result.mac)
    ws.forget_domain(name)
    for vol in volumes:
        ws.forget_volume(vol)


STOP_REASONS = {
    "still-booting": "at the deadline",
    "timeout": "at the deadline",
    "no-output": "after the silent timeout",
    "reset": "after the reset, before it booted again",
    "panic": "after the panic",
    "crashed": "after the crash",
    "paused": "paused guest",
    "interrupted": "interrupted",
    "libvirt-error": "after a libvirt error",
}


def _destroy_if_active(conn: libvirt.virConnect, name: str) -> bool:
    """Destroy the domain if it still runs; True when this call destroyed it."""
    try:
        dom = conn.lookupByName(name)
        if dom.isActive():
            dom.destroy()
            return True
    except libvirt.libvirtError:
        pass
    return False
