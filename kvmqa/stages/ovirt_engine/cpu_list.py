"""The engine's ServerCPUList (cluster CPU types and the host CPU flags each requires), as data.

The data lives in `kvmqa/data/server_cpu_list.yaml`; a profile may point elsewhere with
`server_cpu_list: <path>` in its `ovirt_engine` or `vdsm` stage settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

from kvmqa.core.paths import data_file

DEFAULT_PATH = data_file("server_cpu_list.yaml")


@dataclass(frozen=True)
class ServerCpu:
    """One ServerCPUList entry: `level:Name:required_flags:libvirt_model:arch`."""

    version: str  # the cluster level the entry was read for
    level: int
    name: str
    flags: tuple[str, ...]
    arch: str

    @property
    def model_flags(self) -> tuple[str, ...]:
        """The `model_<libvirt model>` tokens: only vdsm's cpuFlags carry these, never /proc/cpuinfo."""
        return tuple(f for f in self.flags if f.startswith("model_"))

    @property
    def plain_flags(self) -> tuple[str, ...]:
        return tuple(f for f in self.flags if not f.startswith("model_"))


@dataclass(frozen=True)
class CpuLookup:
    """The entry found for a cluster CPU type, and the level it was actually read from."""

    cpu: ServerCpu | None
    requested_version: str
    note: str = ""


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split(".") if p.isdigit())


@lru_cache(maxsize=8)
def load(path: str | None = None) -> dict[str, tuple[ServerCpu, ...]]:
    """ServerCPUList per cluster level ("4.7", "4.8", ...)."""
    raw = yaml.safe_load(Path(path or DEFAULT_PATH).read_text()) or {}
    return {
        str(version): tuple(
            ServerCpu(str(version), int(e["level"]), str(e["name"]), tuple(e["flags"]), str(e.get("arch", "x86_64")))
            for e in entries
        )
        for version, entries in raw.items()
    }


def find(name: str | None, version: str | None, path: str | None = None) -> CpuLookup:
    """The entry for `name` at cluster level `version`, else at the nearest level that lists it."""
    table = load(path)
    versions = sorted(table, key=_version_key)
    wanted = version if version in table else None
    if wanted is not None:
        for cpu in table[wanted]:
            if cpu.name == name:
                return CpuLookup(cpu, str(version))
    # Fall back: nearest lower level first, then higher ones.
    key = _version_key(version or versions[-1])
    lower = [v for v in reversed(versions) if _version_key(v) <= key and v != wanted]
    higher = [v for v in versions if _version_key(v) > key]
    for candidate in lower + higher:
        for cpu in table[candidate]:
            if cpu.name == name:
                note = f"{name!r} is not in kvmqa's ServerCPUList data for {version}; using its {candidate} entry"
                return CpuLookup(cpu, str(version), note)
    return CpuLookup(None, str(version), f"{name!r} is in none of kvmqa's ServerCPUList levels ({', '.join(versions)})")


def missing_flags(required: tuple[str, ...], have: set[str]) -> list[str]:
    """Required flags absent from `have`; cpuinfo spells some with '_' and the engine with '-'."""
    normal = {f.replace("-", "_") for f in have}
    return [f for f in required if f not in have and f.replace("-", "_") not in normal]
