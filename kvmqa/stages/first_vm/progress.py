"""Progress lines for a boot that takes a while: host, guest, elapsed time, kernel time, last console line.

    progress = BootProgress("lab1", terminal_writer())
    boot(ws, kit, BootSpec("kvm", "kvm", progress=progress))
    # kvmqa first_vm [lab1] kvmqa-kvm-lab1-3f2a1c KVM: 15 s, kernel at 9.3 s, console: '[    9.31] virtio_net
    ...'

The first line comes after `after` seconds and then one every `every` seconds, as plain lines (a CI log keeps
them). Under pytest they are written past output capturing (with or without ``-s``): on the terminal
reporter in the controlling process, on stderr in an xdist worker, whose stderr is the controller's terminal
(workers have no terminal reporter of their own, and their stdout is xdist's channel).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from kvmqa.stages.first_vm.console import ConsoleReading

Writer = Callable[[str], None]


class BootProgress:
    """A `kvmqa.stages.first_vm.boot.Progress` callback that turns polls into a line every few seconds."""

    def __init__(self, host: str, write: Writer, after: float = 5.0, every: float = 10.0) -> None:
        self.host, self.write, self.after, self.every = host, write, after, every
        self._next: dict[str, float] = {}

    def __call__(self, result: Any, elapsed: float, reading: ConsoleReading) -> None:
        due = self._next.setdefault(result.name, self.after)
        if elapsed < due:
            return
        self._next[result.name] = due + self.every * (1 + int((elapsed - due) // self.every))
        self.write(progress_line(self.host, result.name, result.label, elapsed, reading))


def progress_line(host: str, guest: str, label: str, elapsed: float, reading: ConsoleReading) -> str:
    kernel = f"kernel at {reading.kernel_s:.1f} s" if reading.kernel_s is not None else "no kernel output yet"
    last = f"console: {reading.last_line[:100]!r}" if reading.last_line else "console: (nothing yet)"
    return f"kvmqa first_vm [{host}] {guest} {label}: {elapsed:.0f} s, {kernel}, {last}"


def terminal_writer(config: Any = None) -> Writer:
    """Where a progress line goes: the terminal of the pytest run `config` belongs to (past capturing; an
    xdist
    worker's line goes to its stderr, which xdist shows, tagged with the worker), else stderr."""

    def write(line: str) -> None:
        capman = config.pluginmanager.getplugin("capturemanager") if config is not None else None
        reporter = config.pluginmanager.getplugin("terminalreporter") if config is not None else None
        worker = config is not None and hasattr(config, "workerinput")
        if capman is None:
            _stderr(line)
            return
        with capman.global_and_fixture_disabled():
            if reporter is not None and not worker:
                reporter.ensure_newline()
                reporter.write_line(line)
            else:
                _stderr(f"[{config.workerinput.get('workerid', 'worker')}] {line}" if worker else line)

    return write


def _stderr(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()
