"""A host's facts: the probe's sections as plain data (JSON-serialisable), one mapping per host.

Gathered by `kvmqa.gather`, read by the stages' checks; the bottom layer only knows their container.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar, Union, get_args, get_origin


class HostFacts(dict[str, Any]):
    """A host's facts: sections of plain data. `facts["cpu"]["flags"]`, `facts.get("libvirt")`."""

    @property
    def cpu_flags(self) -> set[str]:
        return set(self.get("cpu", {}).get("flags", []))

    @property
    def family(self) -> str | None:
        return self.get("os", {}).get("family")

    def device(self, path: str) -> dict[str, Any]:
        return self.get("devices", {}).get(path, {"exists": False})

    def view(self, cls: type[V]) -> V:
        """The typed view of section `cls.SECTION` (a stage's facts dataclass), built once and cached."""
        cache: dict[type, Any] = self.__dict__.setdefault("_views", {})
        if cls not in cache:
            section = self.get(cls.SECTION)
            cache[cls] = view_of(cls, section if isinstance(section, Mapping) else None)
        return cache[cls]  # type: ignore[no-any-return]

    def __setitem__(self, key: str, value: Any) -> None:
        self.__dict__.pop("_views", None)  # a section changed (a gatherer added one): views are built again
        super().__setitem__(key, value)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self, indent=2, sort_keys=True, default=str))

    @classmethod
    def load(cls, path: Path) -> HostFacts:
        return cls(json.loads(Path(path).read_text()))


# --- typed views
# -------------------------------------------------------------------------------------------------
# Facts travel as plain data (facts.json, recorded fixtures, Ansible runs); each stage declares what its
# sections
# hold as frozen dataclasses, and its checks read them as attributes:
#
#     @dataclass(frozen=True)
#     class Hugepages:
#         SECTION: ClassVar[str] = "hugepages"
#         total: int = 0
#         pools: dict[str, HugepagePool] = field(default_factory=dict)
#
#     pages = facts.view(Hugepages)          # built once per HostFacts from facts["hugepages"], then cached
#     pages.total, pages.pools["2048kB"].free
#
# `view_of` turns a mapping into such a dataclass by its type hints: nested dataclasses, lists, tuples and
# dicts of
# them, `X | None`, and plain values. A key the data lacks takes the field's default; a key the type does not
# declare is ignored (an older or newer probe); a value of the wrong shape is replaced by the default, so a
# check never crashes on a host's odd facts (the raw mapping stays in facts.json for the details).
# A section of open-ended names (the kernel's vulnerabilities) is read whole: a field with
# `metadata={"key": WHOLE}` holds the section's mapping itself, e.g. `by_name: dict[str, str]`.

T = TypeVar("T")
_MISSING = object()
WHOLE = "<the whole section>"  # a field's metadata key: the field holds the section's whole mapping


class FactsView(Protocol):
    SECTION: ClassVar[str]


V = TypeVar("V", bound=FactsView)


def _convert(tp: Any, value: Any) -> Any:
    """`value` as type `tp`, or _MISSING when it has another shape."""
    origin, args = get_origin(tp), get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            converted = _convert(arg, value)
            if converted is not _MISSING:
                return converted
        return _MISSING
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return view_of(tp, value) if isinstance(value, Mapping) else _MISSING
    if origin in (list, tuple, set, frozenset) or tp in (list, tuple, set, frozenset):
        if not isinstance(value, (list, tuple, set, frozenset)):
            return _MISSING
        item = args[0] if args else Any
        items = [_convert(item, v) for v in value]
        kept = [v for v in items if v is not _MISSING]
        container = origin or tp
        return container(kept)
    if origin is dict or tp is dict or origin is Mapping:
        if not isinstance(value, Mapping):
            return _MISSING
        key_t, val_t = args if args else (Any, Any)
        out = {}
        for k, v in value.items():
            converted = _convert(val_t, v)
            if converted is not _MISSING:
                out[_convert(key_t, k) if key_t is not Any else k] = converted
        return out
    if tp is float:
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else _MISSING
    if tp is int:
        return value if isinstance(value, int) and not isinstance(value, bool) else _MISSING
    if isinstance(tp, type):
        return value if isinstance(value, tp) else _MISSING
    return value


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def view_of(cls: type[T], data: Mapping[str, Any] | None) -> T:
    """A dataclass `cls` filled from `data` by its type hints (see above); None or {} gives every default."""
    hints = _hints(typing.cast(type, cls))
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if not f.init:
            continue
        key = f.metadata.get("key", f.name)
        if key == WHOLE:
            raw = data if data is not None else _MISSING
        else:
            raw = (data or {}).get(key, _MISSING)
        if raw is _MISSING:
            continue
        converted = _convert(hints[f.name], raw)
        if converted is not _MISSING:
            values[f.name] = converted
    return cls(**values)
