"""The engine's ServerCPUList (cluster CPU types and the host CPU flags each requires), as data.

The data lives in `kvmqa/data/server_cpu_list.yaml`; a profile may point elsewhere with
`server_cpu_list: <path>` in its `ovirt_engine` or `vdsm` stage settings.

    >>> find("Intel Haswell Family", "4.3").cpu.flags
    ('vmx', 'nx', 'model_Haswell')
    >>> find("Intel Haswell Family", "4.7").cpu.flags
    ('vmx', 'nx', 'model_Haswell-noTSX')

A lookup never borrows another level's entry: a type missing from its level, or a level kvmqa has no list
for, is no CPU and a note saying which (checks make that an undecided verdict, never a pass).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from kvmqa.core.paths import data_file

DEFAULT_PATH = data_file("server_cpu_list.yaml")


@dataclass(frozen=True)
class ServerCpu:
    """One ServerCPUList entry: `level:Name:required_flags:libvirt_model[,features]:arch`."""

    version: str  # the cluster level the entry was read for
    level: int
    name: str
    flags: tuple[str, ...]
    arch: str
    model: str = ""
    features: tuple[str, ...] = ()

    @property
    def model_flags(self) -> tuple[str, ...]:
        """The `model_<libvirt model>` tokens: only vdsm's cpuFlags carry these, never /proc/cpuinfo."""
        return tuple(f for f in self.flags if f.startswith("model_"))

    @property
    def plain_flags(self) -> tuple[str, ...]:
        return tuple(f for f in self.flags if not f.startswith("model_"))


@dataclass(frozen=True)
class CpuLookup:
    """The entry for a cluster CPU type at a cluster level; `cpu` None (and `note` says why) when unknown."""

    cpu: ServerCpu | None
    requested_version: str | None
    note: str = ""


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split(".") if p.isdigit())


def _entry(version: str, e: dict[str, Any]) -> ServerCpu:
    return ServerCpu(
        version,
        int(e["level"]),
        str(e["name"]),
        tuple(str(f) for f in e["flags"]),
        str(e.get("arch", "x86_64")),
        str(e.get("model", "")),
        tuple(e.get("features") or ()),
    )


@lru_cache(maxsize=8)
def load(path: str | None = None) -> dict[str, tuple[ServerCpu, ...]]:
    """ServerCPUList per cluster level ("4.2" ... "4.8"), in level order."""
    raw = yaml.safe_load(Path(path or DEFAULT_PATH).read_text()) or {}
    by_level = {str(v): entries for v, entries in raw.items()}
    return {v: tuple(_entry(v, e) for e in by_level[v]) for v in sorted(by_level, key=_version_key)}


def find(name: str | None, version: str | None, path: str | None = None) -> CpuLookup:
    """The entry for CPU type `name` at cluster level `version`; never another level's entry.

    Without a level, an answer is given only when every level that lists `name` requires the same flags
    (a cluster with that type is at one of those levels, so the answer holds whichever it is).
    """
    table = load(path)
    if version is None:
        return _find_without_level(name, table)
    if version not in table:
        return CpuLookup(
            None,
            version,
            f"kvmqa has no ServerCPUList for cluster level {version}; known: {', '.join(table)}",
        )
    cpu = next((c for c in table[version] if c.name == name), None)
    if cpu is None:
        return CpuLookup(None, version, f"{name!r} is not in the ServerCPUList of cluster level {version}")
    return CpuLookup(cpu, version)


def _find_without_level(name: str | None, table: dict[str, tuple[ServerCpu, ...]]) -> CpuLookup:
    found = [c for entries in table.values() for c in entries if c.name == name]
    if not found:
        return CpuLookup(
            None, None, f"{name!r} is in none of kvmqa's ServerCPUList levels ({', '.join(table)})"
        )
    levels = ", ".join(c.version for c in found)
    if len({c.flags for c in found}) > 1:
        differ = "; ".join(f"{c.version}: {','.join(c.flags)}" for c in found)
        return CpuLookup(
            None, None, f"no cluster level given and {name!r} requires different flags by level ({differ})"
        )
    return CpuLookup(found[-1], None, f"no cluster level given; {name!r} requires the same flags at {levels}")


def missing_flags(required: tuple[str, ...], have: set[str]) -> list[str]:
    """Required flags absent from `have`; cpuinfo spells some with '_' and the engine with '-'."""
    normal = {f.replace("-", "_") for f in have}
    return [f for f in required if f not in have and f.replace("-", "_") not in normal]
