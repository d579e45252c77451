"""Run the product's suites as a QA engineer does (a pytest subprocess) and read what they wrote."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class SuiteRun:
    rc: int
    stdout: str
    reports: Path

    @property
    def results(self) -> dict[str, Any]:
        return json.loads((self.reports / "results.json").read_text())

    def findings(self, host: str | None = None) -> dict[tuple[str, str], dict[str, Any]]:
        return {
            (r["host"], r["check_id"]): r
            for r in self.results["results"]
            if host is None or r["host"] == host
        }

    def verdict(self, host: str, check_id: str) -> str:
        return self.findings()[(host, check_id)]["verdict"]


def run_suite(
    reports: Path,
    *args: str,
    paths: tuple[str, ...] = ("suites",),
    timeout: float = 900,
    env: dict[str, str] | None = None,
) -> SuiteRun:
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        *paths,
        "--reports-dir",
        str(reports),
        "-q",
        "-p",
        "no:randomly",
        *args,
    ]
    proc = subprocess.run(
        cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}
    )
    return SuiteRun(proc.returncode, proc.stdout + proc.stderr, reports)
