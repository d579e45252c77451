"""Checks, one module per stage; `all_stages()` lists them in run order."""

from __future__ import annotations

import importlib

from kvmqa.checks.base import Check, StageChecks

STAGE_MODULES = ("reach", "cpu", "packages", "host", "libvirt", "ovirt_engine", "vdsm", "first_vm")


def all_stages() -> list[StageChecks]:
    stages = []
    for name in STAGE_MODULES:
        try:
            module = importlib.import_module(f"kvmqa.checks.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"kvmqa.checks.{name}":
                continue
            raise
        stages.append(module.CHECKS)
    return stages


def find_check(check_id: str) -> Check:
    for stage in all_stages():
        for c in stage:
            if c.id == check_id:
                return c
    raise KeyError(check_id)


__all__ = ["Check", "StageChecks", "all_stages", "find_check"]
