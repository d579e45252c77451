r"""The packages stage's probe section (this folder's probe.sh) -> `facts["packages"]`: the distro's package
manager and the versions of the packages kvmqa asks about (kvmqa.gather.distro's table).

    >>> parse({"packages": (0, "manager=dpkg\nqemu-utils|1:7.2|ii ")})["packages"]["installed"]
    {'qemu-utils': '1:7.2'}
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

from kvmqa.core.stage import Sections


@dataclass(frozen=True)
class Packages:
    """The packages kvmqa asks about: the installed ones by name (their versions) and the absent ones."""

    SECTION: ClassVar[str] = "packages"
    manager: str | None = None  # dpkg, rpm or none; None: no packages section
    installed: dict[str, str] = field(default_factory=dict)
    absent: tuple[str, ...] = ()


@dataclass(frozen=True)
class LockHolder:
    path: str = ""  # the lock file: /var/lib/dpkg/lock-frontend, ...
    pid: int = 0  # -1: an open-file-description lock (no owning process known)
    command: str = ""


@dataclass(frozen=True)
class PackageManagerBusy:
    """Whether a package manager is at work: who holds its locks, and which dpkg packages are not settled
    (status unpacked, half-configured, half-installed, triggers-awaited, triggers-pending)."""

    SECTION: ClassVar[str] = "package_manager_busy"
    gathered: bool = False
    locks: tuple[LockHolder, ...] = ()
    unsettled: dict[str, str] = field(default_factory=dict)  # package -> dpkg status


def parse(sections: Sections) -> dict[str, Any]:
    return {
        "packages": _packages(*sections.get("packages", (3, "manager=none"))),
        "package_manager_busy": parse_busy(*sections.get("package_manager_busy", (127, ""))),
    }


def parse_busy(rc: int, body: str) -> dict[str, Any]:
    """`lock|PATH|PID|COMMAND` and `unsettled|PACKAGE|STATUS` lines -> facts["package_manager_busy"].

    >>> parse_busy(0, "lock|/var/lib/dpkg/lock|42|apt-get install qemu ")["locks"]
    [{'path': '/var/lib/dpkg/lock', 'pid': 42, 'command': 'apt-get install qemu'}]
    """
    locks: list[dict[str, Any]] = []
    unsettled: dict[str, str] = {}
    for line in body.splitlines():
        parts = line.split("|", 3)
        if parts[0] == "lock" and len(parts) == 4 and re.fullmatch(r"-?\d+", parts[2]):
            locks.append({"path": parts[1], "pid": int(parts[2]), "command": parts[3].strip()})
        elif parts[0] == "unsettled" and len(parts) == 3:
            unsettled[parts[1]] = parts[2]
    return {"gathered": rc != 127, "locks": locks, "unsettled": unsettled}


def _packages(rc: int, body: str) -> dict[str, Any]:
    manager = "none"
    installed: dict[str, str] = {}
    absent: list[str] = []
    for line in body.splitlines():
        if line.startswith("manager="):
            manager = line.split("=", 1)[1]
            continue
        parts = line.split("|")
        if len(parts) == 3:
            name, version, status = parts
            if status.strip().startswith("ii") and version:
                installed[name] = version.replace("(none):", "")
            else:
                absent.append(name)
            continue
        m = re.search(r"no packages found matching (\S+)|package (\S+) is not installed", line)
        if m:
            absent.append(m.group(1) or m.group(2))
    return {"manager": manager, "installed": installed, "absent": sorted(set(absent))}
