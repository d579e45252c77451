"""A host's facts: the probe's sections as plain data (JSON-serialisable), one mapping per host.

Gathered by `kvmqa.gather`, read by the stages' checks; the bottom layer only knows their container.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class HostFacts(dict[str, Any]):
    """A host's facts: sections of plain data. `facts["cpu"]["flags"]`, `facts.get("libvirt")`."""

    @property
    def cpu_flags(self) -> set[str]:
        return set(self.get("cpu", {}).get("flags", []))

    @property
    def family(self) -> str | None:
        return self.get("os", {}).get("family")

    def device(self, path: str) -> dict[str, Any]:
        return self.get("devices", {}).get(path, {"exists": False})

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self, indent=2, sort_keys=True, default=str))

    @classmethod
    def load(cls, path: Path) -> HostFacts:
        return cls(json.loads(Path(path).read_text()))
