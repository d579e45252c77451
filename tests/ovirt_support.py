"""Shared pieces of the oVirt tests: a session carrying what `gather_engine` reads, and host CPU flags.

The session holds real `Target`, `Profile` and `RunOptions` objects; it stands for the plugin's
HostSession, of which `gather_engine` uses only these attributes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kvmqa.options import RunOptions
from kvmqa.profile import Profile
from kvmqa.targets import Target


@dataclass
class Session:
    options: RunOptions
    profile: Profile
    target: Target
    all_targets: list[Target]
    facts: dict[str, Any] = field(default_factory=dict)
    host_dir: Path | None = None


HASWELL_CPUINFO_FLAGS = ["fpu", "vme", "pse", "msr", "pae", "cx8", "apic", "sep", "nx", "lm", "vmx", "ssse3",
                         "fma", "cx16", "pcid", "sse4_1", "sse4_2", "movbe", "popcnt", "aes", "xsave", "avx",
                         "f16c", "rdrand", "hypervisor", "abm", "fsgsbase", "bmi1", "avx2", "smep", "bmi2",
                         "erms", "invpcid", "md_clear", "spec_ctrl", "ssbd"]
HASWELL_VDSM_FLAGS = HASWELL_CPUINFO_FLAGS + ["model_Haswell-noTSX", "model_Nehalem", "model_Westmere",
                                              "model_SandyBridge", "model_IvyBridge", "model_qemu64"]
