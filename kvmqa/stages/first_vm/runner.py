"""Run a shell command on the target: the lead's `Target.run` when there is a session, else locally.

Only two things need it in the first-VM stage: virt-install (it runs on the target) and reading the
tail of host-side log files (QEMU's per-domain log, the serial log) as evidence.
"""

from __future__ import annotations

import shlex
import subprocess
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass
class RunResult:
    rc: int
    stdout: str
    stderr: str


class Runner(Protocol):
    def __call__(self, command: str, timeout: float) -> RunResult: ...


def local_runner(command: str, timeout: float) -> RunResult:
    try:
        proc = subprocess.run(["/bin/sh", "-c", command], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        return RunResult(124, str(exc.stdout or ""), f"timed out after {timeout:.0f}s")
    return RunResult(proc.returncode, proc.stdout, proc.stderr)


def target_runner(target: Any) -> Runner:
    """Adapt `Target.run(cmd, timeout=)` (returns .rc .stdout .stderr) to a Runner."""

    def run(command: str, timeout: float) -> RunResult:
        result = target.run(command, timeout=timeout)
        return RunResult(result.rc, result.stdout, result.stderr)

    return run


def tail_reader(run: Runner):  # noqa: ANN201 - returns boot.TailFn
    """(path, lines) -> the file's last lines on the target, or None when it cannot be read."""

    def read_tail(path: str, lines: int) -> str | None:
        result = run(f"tail -n {int(lines)} {shlex.quote(path)}", 15)
        return result.stdout.rstrip("\n") if result.rc == 0 else None

    return read_tail
