"""A tiny writer for cpio "newc" archives (the initramfs format), so no external tool is needed."""

from __future__ import annotations

import gzip
import stat
from dataclasses import dataclass, field
from pathlib import Path

TRAILER = "TRAILER!!!"


@dataclass
class CpioWriter:
    """Collect entries in memory and emit one deterministic (mtime 0, uid 0) newc archive."""

    _chunks: list[bytes] = field(default_factory=list)
    _ino: int = 1
    _dirs: set[str] = field(default_factory=set)

    def _entry(self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)) -> None:
        name_bytes = name.encode() + b"\0"
        fields = [
            self._ino,
            mode,
            0,
            0,
            2 if stat.S_ISDIR(mode) else 1,
            0,
            len(data),
            0,
            0,
            rdev[0],
            rdev[1],
            len(name_bytes),
            0,
        ]
        header = b"070701" + b"".join(b"%08X" % value for value in fields)
        self._ino += 1
        self._chunks.append(_pad4(header + name_bytes))
        self._chunks.append(_pad4(data))

    def directory(self, path: str) -> None:
        """Add a directory and its missing parents."""
        parts = path.strip("/").split("/")
        for depth in range(1, len(parts) + 1):
            sub = "/".join(parts[:depth])
            if sub and sub not in self._dirs:
                self._dirs.add(sub)
                self._entry(sub, stat.S_IFDIR | 0o755)

    def file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        self._parent(path)
        self._entry(path.strip("/"), stat.S_IFREG | mode, data)

    def symlink(self, path: str, target: str) -> None:
        self._parent(path)
        self._entry(path.strip("/"), stat.S_IFLNK | 0o777, target.encode())

    def char_device(self, path: str, major: int, minor: int, mode: int = 0o600) -> None:
        self._parent(path)
        self._entry(path.strip("/"), stat.S_IFCHR | mode, rdev=(major, minor))

    def _parent(self, path: str) -> None:
        parent = path.strip("/").rpartition("/")[0]
        if parent:
            self.directory(parent)

    def archive(self) -> bytes:
        self._entry(TRAILER, 0)
        return b"".join(self._chunks)

    def write_gzip(self, dest: Path) -> None:
        """Write the archive gzip-compressed (mtime 0 keeps the output reproducible)."""
        dest.write_bytes(gzip.compress(self.archive(), compresslevel=6, mtime=0))


def _pad4(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 4)


def list_newc(data: bytes) -> list[tuple[str, int, int]]:
    """Read back (name, mode, size) of every entry: used by tests and by `kvmqa` diagnostics."""
    entries: list[tuple[str, int, int]] = []
    pos = 0
    while pos < len(data):
        header = data[pos : pos + 110]
        if header[:6] != b"070701":
            raise ValueError(f"bad cpio magic at offset {pos}")
        values = [int(header[6 + 8 * i : 14 + 8 * i], 16) for i in range(13)]
        mode, size, namesize = values[1], values[6], values[11]
        name_start = pos + 110
        name = data[name_start : name_start + namesize - 1].decode()
        pos = name_start + namesize
        pos += -pos % 4
        if name == TRAILER:
            break
        entries.append((name, mode, size))
        pos += size
        pos += -pos % 4
    return entries
