"""`gather_first_vm(session)`: act and observe for the first_vm stage; the checks only read its dict.

Order: build the kit (controller) -> workspace (pool, network) -> KVM boot (unless the profile says
not to try) -> EMULATED boot when emulation is allowed -> virt-install of the same kit with the virt
type that worked -> the user's guest image (``--guest-image``) -> cleanup and a leftover scan.
Everything the stage created is removed in ``finally``, also on KeyboardInterrupt, which then goes on
as StageInterrupted: its evidence names the boot in flight and the kvmqa- objects removed
(`interruption_evidence`).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kvmqa.core.model import Level
from kvmqa.core.stage import StageInterrupted
from kvmqa.stages.first_vm.boot import BootSpec, boot, stage_kit
from kvmqa.stages.first_vm.domain import CONSOLE_LOG_DIR
from kvmqa.stages.first_vm.hostlog import kernel_log_mark, kernel_log_since
from kvmqa.stages.first_vm.kit import KitError, build_kit
from kvmqa.stages.first_vm.progress import BootProgress, Writer, terminal_writer
from kvmqa.stages.first_vm.resources import Workspace, WorkspaceError, leftovers
from kvmqa.stages.first_vm.runner import Runner, local_runner, tail_reader, target_runner
from kvmqa.stages.first_vm.space import DEFAULT_DISK_MIB
from kvmqa.stages.first_vm.virtinstall import virt_install_boot

if TYPE_CHECKING:
    from kvmqa.gather.context import HostContext


@dataclass(frozen=True)
class FirstVmSettings:
    """The stage's knobs: profile `first_vm:` section, profile-wide `kvm`/`allow_emulation`, run options."""

    boot_timeout: float = 60.0
    silent_timeout: float = 10.0
    memory_mib: int = 256
    vcpus: int = 1
    disk_mib: int = DEFAULT_DISK_MIB
    allow_emulation: bool = False
    kvm: str = "required"  # required | warn: level of a KVM boot that does not work
    attempt_kvm: bool = True
    virt_install: bool = True
    network: str = "own"  # own: a private kvmqa-net-… | default: libvirt's default network when active
    network_forward: str | None = None  # a created network's forward mode: None (isolated) | nat
    guest_image_timeout: float = 300.0
    cmdline_extra: str = ""  # extra guest kernel arguments (kvmqa.panic=1 to see the failure path)

    @classmethod
    def resolve(cls, profile: Any, options: Any) -> FirstVmSettings:
        stage = dict(profile.stage("first_vm")) if profile is not None else {}
        known = {k: v for k, v in stage.items() if k in cls.__dataclass_fields__}
        profile_kvm = getattr(profile, "kvm", None)
        if "kvm" not in known and profile_kvm is not None:
            known["kvm"] = "warn" if Level(profile_kvm) == Level.WARN else "required"
        known["allow_emulation"] = bool(
            known.get("allow_emulation")
            or getattr(profile, "allow_emulation", False)
            or getattr(options, "allow_emulation", False)
        )
        return cls(**known)


def gather_first_vm(session: HostContext) -> dict[str, Any]:
    """Boot real guests on the session's host and return the observation dict (facts["first_vm"])."""
    from kvmqa.core.stage import GatherError

    settings = FirstVmSettings.resolve(session.profile, session.options)
    conn = session.libvirt()
    removed_before: list[str] = []
    if getattr(session.options, "cleanup", False):  # --cleanup: leftovers of an earlier crashed run go first
        from kvmqa.stages.first_vm.resources import cleanup_leftovers

        removed_before = cleanup_leftovers(conn)
    target = getattr(session, "target", None)
    run: Runner = target_runner(target) if target is not None else local_runner
    try:
        kit = build_kit(arch=host_arch(conn))
    except KitError as exc:
        raise GatherError(f"first_vm: cannot build the guest kit on the controller: {exc}") from exc
    guest_image = getattr(session.options, "guest_image", None)
    obs = observe(
        conn,
        settings,
        kit,
        host=session.name,
        console_dir=session.host_dir,
        run=run,
        guest_image=Path(guest_image) if guest_image else None,
        write=session.progress,
    )
    obs["cleanup_before"] = removed_before
    if obs.get("error") and not obs["boots"]:
        raise GatherError(f"first_vm: {obs['error']}")
    return obs


def host_arch(conn: Any) -> str:
    """The host's architecture as libvirt reports it (capabilities' host CPU arch): the kit's architecture."""
    import xml.etree.ElementTree as ET

    arch = ET.fromstring(conn.getCapabilities()).findtext("host/cpu/arch")
    return (arch or "x86_64").strip()


def observe(
    conn: Any,
    settings: FirstVmSettings,
    kit: Any,
    *,
    host: str,
    console_dir: Path,
    run: Runner = local_runner,
    guest_image: Path | None = None,
    write: Writer | None = None,
) -> dict[str, Any]:
    """The stage's act-and-observe on one connection (the gatherer minus session plumbing).

    `write` receives progress lines for boots that run longer than a few seconds (default: the terminal).
    """
    started = time.monotonic()
    obs: dict[str, Any] = {"settings": asdict(settings), "kit": kit.to_json(), "boots": {}, "host": host}
    ws = Workspace(conn, forward=settings.network_forward, use_default_network=settings.network == "default")
    read_tail = tail_reader(run)
    progress = BootProgress(host, write or terminal_writer())
    log_mark: dict[str, Any] | None = None
    interrupted: KeyboardInterrupt | None = None

    def save_console(name: str, text: str) -> str:
        path = console_dir / f"console-{name}.log"
        path.write_text(text)
        return str(path)

    def spec(purpose: str, virt_type: str) -> BootSpec:
        return BootSpec(
            purpose,
            virt_type,
            settings.memory_mib,
            settings.vcpus,
            settings.boot_timeout,
            settings.silent_timeout,
            settings.cmdline_extra,
            disk_mib=settings.disk_mib,
            host=host,
            progress=progress,
        )

    try:
        volumes = stage_kit(ws, kit)
        log_mark = kernel_log_mark(run)  # the host's kernel log, from just before the first guest starts
        if settings.attempt_kvm:
            obs["boots"]["kvm"] = boot(
                ws, volumes, spec("kvm", "kvm"), read_tail=read_tail, save_console=save_console
            ).to_json()
        kvm_ok = bool(obs["boots"].get("kvm", {}).get("ok"))
        if settings.allow_emulation and not kvm_ok:  # emulation stands in for KVM only when KVM did not boot
            obs["boots"]["emulated"] = boot(
                ws, volumes, spec("tcg", "qemu"), read_tail=read_tail, save_console=save_console
            ).to_json()
        working = next((b["virt_type"] for b in obs["boots"].values() if b["ok"]), None)
        if not settings.virt_install:
            obs["virt_install"] = {"skipped": "disabled by the profile (first_vm.virt_install: false)"}
        elif working is None:
            obs["virt_install"] = {
                "skipped": "no direct boot succeeded, so virt-install would fail the same way"
            }
        elif run("command -v virt-install", 15).rc != 0:
            obs["virt_install"] = {"skipped": "virt-install is not installed on the host", "missing": True}
        else:
            obs["virt_install"] = virt_install_boot(ws, volumes, spec("vinst", working), run)
        if guest_image is not None and getattr(kit, "arch", "x86_64") != "x86_64":
            obs["guest_image"] = {
                "ok": False,
                "outcome": "start-failed",
                "label": "",
                "markers": {},
                "error": f"a --guest-image is booted on x86_64 hosts only so far (this host is {kit.arch}: "
                "its images need UEFI firmware and a cdrom off IDE)",
            }
        elif guest_image is not None:
            from kvmqa.stages.first_vm.guest_image import boot_guest_image

            image_spec = spec("image", working or "qemu")
            image_spec.timeout = settings.guest_image_timeout
            obs["guest_image"] = boot_guest_image(
                ws, guest_image, image_spec, read_tail=read_tail, save_console=save_console
            )
        obs["host_kernel_log"] = kernel_log_since(run, log_mark)
    except (WorkspaceError, KitError) as exc:
        obs["error"] = str(exc)
        if log_mark is not None:
            obs["host_kernel_log"] = kernel_log_since(run, log_mark)
    except KeyboardInterrupt as exc:  # raised again below, after the cleanup, with the cleanup's evidence
        interrupted = exc
    finally:
        obs["workspace"] = {"notes": list(ws.notes), "removed": ws.close(), "created": list(ws.history)}
        for item in ws.history:  # the serial logs libvirt wrote for us; the text is kept in console_dir
            if item.startswith("domain "):
                run(f"rm -f {CONSOLE_LOG_DIR}/{item.split()[1]}-console.log", 15)
        obs["leftovers"] = ws.own_leftovers()
        obs["other_leftovers"] = [x for x in leftovers(conn) if x not in obs["leftovers"]]
        obs["duration_s"] = round(time.monotonic() - started, 3)
    if interrupted is not None:
        raise StageInterrupted(interruption_evidence(obs, interrupted)) from interrupted
    return obs


def interruption_evidence(obs: dict[str, Any], exc: KeyboardInterrupt) -> dict[str, Any]:
    """What an interrupted stage leaves for the report: the boot in flight (if one was), every kvmqa- object
    the stage created, which of them are gone (read back from libvirt after the cleanup) and which are not."""
    boot_seen = exc.evidence.get("boot") if isinstance(exc, StageInterrupted) else None
    created, left = obs["workspace"]["created"], obs["leftovers"]
    guest_keys = ("name", "label", "outcome", "stopped_by", "stop_reason")
    return {
        "guest": {k: boot_seen.get(k) for k in guest_keys} if boot_seen else None,
        "created": created,
        "removed": [item for item in created if item not in left],
        "leftovers": left,
    }
