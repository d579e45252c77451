"""The built-in stages, one folder each: `<name>/__init__.py` declares `STAGE` (kvmqa.core.stage.Stage) once.

    >>> [s.name for s in builtin()]
    ['reach', 'cpu', 'packages', 'host', 'libvirt', 'ovirt_engine', 'vdsm', 'first_vm']

A stage folder reads top to bottom as the flow: `probe.sh` and `facts.py` (its probe sections and their
parser),
`gather.py` (what it collects beyond the probe), `checks.py`
(pure functions of facts), its actions (install mode), and any machinery of its own (first_vm: the guest kit,
domain XML, boot and console).
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from kvmqa.core.stage import Registry, Stage


@cache
def builtin() -> Registry:
    """Every folder of this package that declares a STAGE, in order (read once per process; immutable)."""
    stages = []
    for info in pkgutil.iter_modules(__path__):
        if info.ispkg:
            stage = getattr(importlib.import_module(f"{__name__}.{info.name}"), "STAGE", None)
            if isinstance(stage, Stage):
                stages.append(stage)
    return Registry(tuple(sorted(stages, key=lambda s: s.order)))


def stage_def(name: str) -> Stage:
    return builtin().get(name)
