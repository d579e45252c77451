"""Test-side stand-ins for the plugin's session objects (the interface `gather_engine` is written against)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kvmqa.options import RunOptions


@dataclass(frozen=True)
class InventoryTarget:
    name: str
    host: str
    roles: tuple[str, ...] = ()
    vars: dict[str, Any] = field(default_factory=dict)


@dataclass
class StageProfile:
    """Answers `profile.stage(name)` like kvmqa.profile.Profile does."""

    stages: dict[str, dict[str, Any]] = field(default_factory=dict)

    def stage(self, name: str) -> dict[str, Any]:
        return dict(self.stages.get(name, {}))


@dataclass
class Session:
    options: RunOptions
    profile: StageProfile
    target: InventoryTarget
    all_targets: list[InventoryTarget]
    facts: dict[str, Any] = field(default_factory=dict)
    host_dir: Path | None = None


HASWELL_CPUINFO_FLAGS = ["fpu", "vme", "pse", "msr", "pae", "cx8", "apic", "sep", "nx", "lm", "vmx", "ssse3",
                         "fma", "cx16", "pcid", "sse4_1", "sse4_2", "movbe", "popcnt", "aes", "xsave", "avx",
                         "f16c", "rdrand", "hypervisor", "abm", "fsgsbase", "bmi1", "avx2", "smep", "bmi2",
                         "erms", "invpcid", "md_clear", "spec_ctrl", "ssbd"]
HASWELL_VDSM_FLAGS = HASWELL_CPUINFO_FLAGS + ["model_Haswell-noTSX", "model_Nehalem", "model_Westmere",
                                              "model_SandyBridge", "model_IvyBridge", "model_qemu64"]
