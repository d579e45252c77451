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


def parse(sections: Sections) -> dict[str, Any]:
    return {"packages": _packages(*sections.get("packages", (3, "manager=none")))}


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
