"""The first_vm stage's facts: what its gatherer (gather.py: `observe`) records in `facts["first_vm"]`, as the
typed view its checks read (`facts.view(FirstVm)`).

    >>> from kvmqa.core.facts import HostFacts
    >>> kvm = {"label": "KVM", "ok": True, "timings": {"poweroff_s": 2}}
    >>> boot = HostFacts(first_vm={"boots": {"kvm": kvm}}).view(FirstVm).boots["kvm"]
    >>> boot.label, boot.ok, boot.timings["poweroff_s"]
    ('KVM', True, 2.0)

A boot's QMP answers, vCPU registers, lease and guest agent stay plain mappings: the checks quote them whole.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar


@dataclass(frozen=True)
class Boot:
    """One guest's boot: boot.py's BootResult as recorded (virt-install's and the guest image's add keys)."""

    name: str = ""
    virt_type: str = ""  # kvm | qemu
    label: str = ""  # KVM | EMULATED
    ok: bool = False
    outcome: str | None = None  # done, still-booting, timeout, reset, panic, ... (outcome.describe)
    markers: dict[str, dict[str, str]] = field(default_factory=dict)  # KVMQA-<NAME> console lines: BOOT, ...
    timings: dict[str, float] = field(default_factory=dict)  # seconds: poweroff_s, first_byte_s, ...
    accelerator: dict[str, Any] = field(default_factory=dict)  # QMP: {"kvm": {"enabled": .., "present": ..}}
    lease: dict[str, Any] | None = None  # the host's DHCP lease for the guest's MAC: ip, mac, ...
    lease_error: str | None = None
    mac: str = ""
    network: str | None = None
    state: str = ""
    error: str | None = None
    console_tail: str = ""
    qemu_log_tail: str | None = None
    console_file: str | None = None
    guest_cpu: dict[str, Any] = field(default_factory=dict)  # QMP's vCPU state: rip, status
    agent: dict[str, Any] | None = None  # the guest agent's answer: ok, error
    memory_mib: int = 0
    vcpus: int = 0
    kernel_s: float | None = None
    boots: int | None = None  # kernel banners on the console (2+: the guest reset); older recordings lack it
    reset_at_kernel_s: float | None = None
    restart_requested: bool = False
    panic: str | None = None
    stopped_by: str = ""
    stop_reason: str = ""
    # virt-install's run
    command: str | None = None
    # the user's guest image (--guest-image)
    image: str | None = None
    seed: dict[str, Any] | None = None

    def as_recorded(self) -> dict[str, Any]:
        """As a BootResult dict (what `outcome.describe` reads), without what was not recorded."""
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True)
class VirtInstall(Boot):
    """virt-install --import of the same kit: a boot, or why it was not run."""

    skipped: str | None = None
    missing: bool = False  # skipped because virt-install is not installed


@dataclass(frozen=True)
class Settings:
    """The settings the stage ran with (gather.py's FirstVmSettings), as far as the checks read them."""

    boot_timeout: float = 0.0
    allow_emulation: bool = False
    kvm: str = ""  # required | warn


@dataclass(frozen=True)
class KernelLog:
    """The host's kernel messages while the first VM ran (hostlog.py)."""

    source: str = ""  # dmesg | journal
    error: str | None = None  # the log could not be read
    errors: tuple[str, ...] = ()  # the new lines at level err or worse
    new: int | None = None  # how many new lines (dmesg only)


@dataclass(frozen=True)
class Workspace:
    created: tuple[str, ...] = ()  # every kvmqa- object the stage created
    removed: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class FirstVm:
    """facts["first_vm"]: the observation of the stage's boots, then of its cleanup."""

    SECTION: ClassVar[str] = "first_vm"
    boots: dict[str, Boot] = field(default_factory=dict)  # kvm, emulated
    settings: Settings = field(default_factory=Settings)
    virt_install: VirtInstall | None = None
    guest_image: Boot | None = None
    host_kernel_log: KernelLog | None = None
    kernel_log_recorded: dict[str, Any] = field(default_factory=dict, metadata={"key": "host_kernel_log"})
    leftovers: tuple[str, ...] | None = None  # None: the stage did not run
    other_leftovers: tuple[str, ...] = ()
    cleanup_before: tuple[str, ...] = ()  # what --cleanup removed first
    workspace: Workspace = field(default_factory=Workspace)
    duration_s: float | None = None
    error: str | None = None
