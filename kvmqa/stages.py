"""The ordered stages in one table: their checks, what they depend on, what they gather, where they run.

Suites (`suites/test_NN_<stage>.py`) only name a stage: `test_cpu = stage_test("cpu")`. Keeping the table here
lets a stage gate on an earlier one even when that earlier suite was not selected (`pytest suites/test_60_first_vm.py`).
"""

from __future__ import annotations

import importlib
from functools import cache

from kvmqa.session import Gatherer, StageDef

# name -> (checks module, requires, gatherers "name=module:function", roles)
TABLE: dict[str, tuple[str, tuple[str, ...], dict[str, str], tuple[str, ...]]] = {
    "reach": ("kvmqa.checks.reach", (), {}, ()),
    "cpu": ("kvmqa.checks.cpu", ("reach.probe",), {}, ()),
    "packages": ("kvmqa.checks.packages", ("reach.probe",), {}, ()),
    "host": ("kvmqa.checks.host", ("reach.probe",), {}, ()),
    "libvirt": ("kvmqa.checks.libvirt", ("reach.probe", "packages.libvirt-daemon"),
                {"libvirt": "kvmqa.libvirt_facts:gather_libvirt_for"}, ()),
    "ovirt_engine": ("kvmqa.checks.ovirt_engine", ("reach.probe",), {"engine": "kvmqa.ovirt.engine:gather_engine"},
                     ("ovirt-engine",)),
    "vdsm": ("kvmqa.checks.vdsm", ("reach.probe",), {}, ("ovirt-host",)),
    # the first VM's disk image goes where host.images-disk measured the free space
    "first_vm": ("kvmqa.checks.first_vm", ("libvirt.connect", "host.images-disk"), {"first_vm": "kvmqa.vm.gather:gather_first_vm"}, ()),
}
ORDER = tuple(TABLE)


def _resolve(ref: str) -> Gatherer:
    module, func = ref.split(":")
    return getattr(importlib.import_module(module), func)  # type: ignore[no-any-return]


@cache
def stage_def(name: str) -> StageDef:
    module, requires, gatherers, roles = TABLE[name]
    checks = importlib.import_module(module).CHECKS
    return StageDef(checks, requires, {k: _resolve(v) for k, v in gatherers.items()}, roles)


def stage_of_check(check_id: str) -> StageDef | None:
    name = check_id.split(".", 1)[0]
    return stage_def(name) if name in TABLE else None
