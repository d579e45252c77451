"""Site stages: a lab's own checks in its own folder, loaded beside the built-in stages.

    pytest suites --site-checks ./site-checks        # or `kvmqa_site_checks = site-checks` in pytest.ini

Each `*.py` file (or package folder) directly in a site-checks folder that defines `STAGE` (kvmqa.api.Stage)
is one stage. Its name is its check-ID prefix (`acme` -> `acme.*`), must not be a built-in stage's, and its
`order` must be 70 or more (site stages run after the built-in ones). `requires` may name any check.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

from kvmqa.core.stage import Stage, StageError

SITE_MIN_ORDER = 70


def _load_module(path: Path, package: bool) -> object:
    tag = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:8]
    name = f"kvmqa_site_{tag}_{path.stem if not package else path.name}"
    if name in sys.modules:
        return sys.modules[name]
    init = path / "__init__.py" if package else path
    spec = importlib.util.spec_from_file_location(name, init, submodule_search_locations=[str(path)] if package else None)
    if spec is None or spec.loader is None:
        raise StageError(f"{path}: not a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - a site module's bug is bad input: one line, no traceback
        del sys.modules[name]
        where = ""
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.startswith(str(path))]
        if isinstance(exc, SyntaxError) and exc.lineno:
            where = f" (line {exc.lineno})"
        elif frames:
            where = f" ({Path(frames[-1].filename).name} line {frames[-1].lineno})"
        raise StageError(f"site checks {init}: cannot load: {type(exc).__name__}: {exc}{where}") from None
    return module


def load_site_stages(folders: Sequence[Path], builtin_names: Sequence[str] | None = None) -> list[Stage]:
    """The stages of every site-checks folder, validated; a bad folder or module raises StageError naming it."""
    if builtin_names is None:
        from kvmqa.stages import builtin

        builtin_names = builtin().names()
    stages: list[Stage] = []
    for folder in folders:
        if not folder.is_dir():
            raise StageError(f"--site-checks {folder}: no such folder")
        for path in sorted(folder.iterdir()):
            package = path.is_dir() and (path / "__init__.py").is_file()
            if not package and not (path.suffix == ".py" and path.is_file() and not path.name.startswith("_")):
                continue
            stage = getattr(_load_module(path, package), "STAGE", None)
            if stage is None:
                continue
            if not isinstance(stage, Stage):
                raise StageError(f"site checks {path}: STAGE is a {type(stage).__name__}, not a kvmqa.api.Stage")
            if stage.name in builtin_names or any(s.name == stage.name for s in stages):
                raise StageError(f"site checks {path}: stage {stage.name!r} is already declared; a site stage needs a prefix of its own")
            if stage.order < SITE_MIN_ORDER:
                raise StageError(f"site checks {path}: stage {stage.name!r} has order {stage.order}; site stages run after the "
                                 f"built-in ones (order {SITE_MIN_ORDER} or more)")
            if not stage.checks.ids():
                raise StageError(f"site checks {path}: stage {stage.name!r} declares no checks")
            stages.append(dataclasses.replace(stage, site=True))
    _check_requires(stages)
    return stages


def _check_requires(stages: list[Stage]) -> None:
    from kvmqa.stages import builtin

    known = {c.id for s in builtin() for c in s.checks} | {c.id for s in stages for c in s.checks}
    for stage in stages:
        for cid in (*stage.requires, *(r for c in stage.checks for r in c.requires)):
            if cid not in known:
                raise StageError(f"site stage {stage.name!r}: requires {cid!r}, which is no check (see python -m kvmqa checks)")
