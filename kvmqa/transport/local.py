"""This machine: commands through testinfra's local backend (its public API), files with os.open."""

from __future__ import annotations

import os
from typing import Any

from kvmqa.transport.base import TargetError, TargetUnreachable, Transport, failure_line


class LocalTransport(Transport):
    name = "local"

    @property
    def uses_sudo(self) -> bool:
        return False  # kvmqa runs as the user it was started as here; --sudo applies to remote targets

    def connect(self, role: str) -> Any:
        import testinfra

        return testinfra.get_host("local://")

    def execute(self, wrapped: str, limit: int, role: str) -> tuple[int, str, str]:
        try:
            result = self.connection(role).run(wrapped)
        except OSError as exc:
            raise TargetUnreachable(
                failure_line(self.target, "cannot run a command on", f"{exc}", role)
            ) from exc
        return result.rc, result.stdout, result.stderr

    def put_file(self, path: str, data: bytes, mode: int, timeout: float | None = None) -> None:
        self.round_trips += 1
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
            with os.fdopen(fd, "wb") as f:
                os.fchmod(f.fileno(), mode)  # an existing file keeps its old mode through os.open
                f.write(data)
        except OSError as exc:  # one line, as the remote transports' upload failures
            t = self.target
            raise TargetError(
                f"{t.name}: upload over local to {t.url}: writing {path} failed: {exc.strerror or exc}"
            ) from exc
