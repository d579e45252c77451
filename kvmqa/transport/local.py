"""This machine: commands through testinfra's local backend (its public API), files with os.open."""

from __future__ import annotations

import os
import threading
from typing import Any

from kvmqa.transport.base import TargetUnreachable, Transport, failure_line


class LocalTransport(Transport):
    name = "local"

    def __init__(self, target: Any) -> None:
        super().__init__(target)
        self._host: Any = None
        self._lock = threading.Lock()

    @property
    def uses_sudo(self) -> bool:
        return False  # kvmqa runs as the user it was started as here; --sudo applies to remote targets

    def execute(self, wrapped: str, limit: int, role: str) -> tuple[int, str, str]:
        with self._lock:
            if self._host is None:
                import testinfra

                self._host = testinfra.get_host("local://")
        try:
            result = self._host.run(wrapped)
        except OSError as exc:
            raise TargetUnreachable(failure_line(self.target, "cannot run a command on", f"{exc}", role)) from exc
        return result.rc, result.stdout, result.stderr

    def put_file(self, path: str, data: bytes, mode: int, timeout: float | None = None) -> None:
        self.round_trips += 1
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)  # an existing file keeps its old mode through os.open
            f.write(data)
