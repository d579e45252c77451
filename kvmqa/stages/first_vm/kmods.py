"""Resolve kernel modules from an unpacked kernel package without depmod/modinfo.

Distro kernel packages ship no modules.dep (depmod runs in postinst), so dependencies are read from
each module's ELF ``.modinfo`` section (``depends=a,b``). Compressed modules (.ko.xz/.ko.zst on newer
distros) are decompressed when Python can (xz); others raise a clear error.
"""

from __future__ import annotations

import lzma
import struct
from dataclasses import dataclass
from pathlib import Path


class ModuleError(RuntimeError):
    """A wanted module is missing or unreadable."""


@dataclass(frozen=True)
class Module:
    name: str
    path: Path
    depends: tuple[str, ...]


def canonical(name: str) -> str:
    return name.replace("-", "_")


def module_name(path: Path) -> str:
    return canonical(path.name.split(".ko")[0])


def read_ko(path: Path) -> bytes:
    """The uncompressed ELF bytes of a module file."""
    data = path.read_bytes()
    if path.name.endswith(".ko.xz"):
        return lzma.decompress(data)
    if path.name.endswith(".ko"):
        return data
    raise ModuleError(f"{path.name}: compressed module format not supported (only .ko and .ko.xz)")


def modinfo(elf: bytes) -> dict[str, str]:
    """Key/value pairs of the ELF64 little-endian ``.modinfo`` section (the first value per key)."""
    if elf[:4] != b"\x7fELF" or elf[4] != 2 or elf[5] != 1:
        raise ModuleError("not an ELF64 little-endian module")
    shoff = struct.unpack_from("<Q", elf, 0x28)[0]
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", elf, 0x3A)
    sections = []
    for i in range(shnum):
        name_off, _type, _flags, _addr, offset, size = struct.unpack_from(
            "<IIQQQQ", elf, shoff + i * shentsize
        )
        sections.append((name_off, offset, size))
    strtab_off = sections[shstrndx][1]
    for name_off, offset, size in sections:
        end = elf.index(b"\0", strtab_off + name_off)
        if elf[strtab_off + name_off : end] == b".modinfo":
            info: dict[str, str] = {}
            for item in elf[offset : offset + size].split(b"\0"):
                key, sep, value = item.decode(errors="replace").partition("=")
                if sep and key not in info:
                    info[key] = value
            return info
    return {}


@dataclass
class ModuleTree:
    """The modules of one kernel release under ``<root>/lib/modules/<release>``."""

    base: Path

    def __post_init__(self) -> None:
        self._files = {module_name(p): p for p in self.base.rglob("*.ko*") if ".ko" in p.name}
        builtin = self.base / "modules.builtin"
        names = builtin.read_text().split() if builtin.exists() else []
        self.builtin = {module_name(Path(n)) for n in names}

    def module(self, name: str) -> Module:
        name = canonical(name)
        path = self._files.get(name)
        if path is None:
            raise ModuleError(f"module {name} is neither built in nor shipped under {self.base}")
        deps = modinfo(read_ko(path)).get("depends", "")
        return Module(name, path, tuple(canonical(d) for d in deps.split(",") if d))

    def load_order(self, wanted: list[str]) -> list[Module]:
        """Wanted modules plus their dependencies, dependencies first; built-in ones are left out."""
        order: list[Module] = []
        seen: set[str] = set()

        def visit(name: str, chain: tuple[str, ...]) -> None:
            name = canonical(name)
            if name in seen or name in self.builtin:
                return
            if name in chain:
                raise ModuleError(f"dependency cycle: {' -> '.join(chain + (name,))}")
            mod = self.module(name)
            for dep in mod.depends:
                visit(dep, chain + (name,))
            seen.add(name)
            order.append(mod)

        for name in wanted:
            visit(name, ())
        return order
