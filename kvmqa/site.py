"""Site stages: a lab's own checks in its own folder, loaded beside the built-in stages (docs/site-checks.md).

    pytest suites --site-checks ./site-checks        # or `kvmqa_site_checks = site-checks` in pytest.ini

Each `*.py` file (or package folder) directly in a site-checks folder that defines `STAGE` (kvmqa.api.Stage)
is one stage. Its name is its check-ID prefix (`acme` -> `acme.*`) and must be the lab's own: not a built-in
stage's, nor a fact section kvmqa fills itself. Its `order` must be 70 or more (site stages run after the
built-in ones). `requires` name checks that run before: a built-in stage's, an earlier site stage's, or (for a
check) one declared above it in its own stage. A probe snippet's sections are `<stage>.<key>`. Anything wrong
is
one StageError line naming the file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import re
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

from kvmqa.core.stage import INSTALL_COLUMN, Registry, Stage, StageError

SITE_MIN_ORDER = 70
STAGE_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")
PROBE_SECTION = re.compile(r"(?:^|[;&|(]|\s)_kq_sec\s+(\S+)")  # `_kq_sec NAME CMD...` in a site snippet


def load_site_stages(
    folders: Sequence[Path], builtin: Registry | None = None, declared: Sequence[tuple[Path, object]] = ()
) -> list[Stage]:
    """The stages of every site-checks folder, and those a plugin or conftest declared (`declared`: (its file,
    what
    its pytest_kvmqa_site_stages hook returned)), validated; anything wrong raises StageError naming the
    file."""
    if builtin is None:
        from kvmqa.stages import builtin as builtin_stages

        builtin = builtin_stages()
    found: list[tuple[Path, Stage]] = []
    seen_folders: set[Path] = set()
    for folder in folders:
        if folder.resolve() in seen_folders:  # the same folder from the option and the ini file
            continue
        seen_folders.add(folder.resolve())
        if not folder.exists():
            raise StageError(f"site checks {folder}: no such folder")
        if not folder.is_dir():
            raise StageError(
                f"site checks {folder}: not a folder (pass the folder that holds the *.py files)"
            )
        in_folder = 0
        for path in sorted(folder.iterdir()):
            package = path.is_dir() and (path / "__init__.py").is_file()
            if not package and not (
                path.suffix == ".py" and path.is_file() and not path.name.startswith("_")
            ):
                continue
            stage = getattr(_load_module(path, package), "STAGE", None)
            if stage is None:
                continue  # a helper module
            if not isinstance(stage, Stage):
                raise StageError(
                    f"site checks {path}: STAGE is a {type(stage).__name__}, not a kvmqa.api.Stage"
                )
            _check_stage(path, stage, builtin, found)
            found.append((path, stage))
            in_folder += 1
        if not in_folder:
            raise StageError(
                f"site checks {folder}: no *.py file or package there defines STAGE (a kvmqa.api.Stage)"
            )
    for path, stage in declared:
        if not isinstance(stage, Stage):
            raise StageError(
                f"site checks {path}: pytest_kvmqa_site_stages returned a {type(stage).__name__}, not a "
                "kvmqa.api.Stage"
            )
        _check_stage(path, stage, builtin, found)
        found.append((path, stage))
    stages = [dataclasses.replace(stage, site=True) for _, stage in found]
    _check_requires({s.name: p for p, s in found}, builtin.with_stages(stages))
    return stages


def _load_module(path: Path, package: bool) -> object:
    tag = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:8]
    name = f"kvmqa_site_{tag}_{path.stem if not package else path.name}"
    if name in sys.modules:
        return sys.modules[name]
    init = path / "__init__.py" if package else path
    spec = importlib.util.spec_from_file_location(
        name, init, submodule_search_locations=[str(path)] if package else None
    )
    if spec is None or spec.loader is None:
        raise StageError(f"site checks {path}: not a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    # noqa: BLE001 - a site module's bug is bad input: one line, no traceback
    except (Exception, SystemExit) as exc:
        del sys.modules[name]
        raise StageError(f"site checks {_where(exc, path, init)}: cannot load: {_what(exc)}") from None
    return module


def _where(exc: BaseException, path: Path, init: Path) -> str:
    """`file:line` of the site module's own line that failed (a syntax error's line, else the deepest frame
    in it)."""
    if isinstance(exc, SyntaxError) and exc.filename and exc.lineno:
        return f"{exc.filename}:{exc.lineno}"
    mine = [
        f
        for f in traceback.extract_tb(exc.__traceback__)
        if Path(f.filename).resolve().is_relative_to(path.resolve())
    ]
    return f"{mine[-1].filename}:{mine[-1].lineno}" if mine else str(init)


def _what(exc: BaseException) -> str:
    if isinstance(exc, SyntaxError):
        return f"{type(exc).__name__}: {exc.msg}"
    text = " ".join(str(exc).split())  # one line
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _kvmqa_fact_sections(builtin: Registry) -> set[str]:
    """The facts kvmqa fills itself (probe sections, gatherers, the run's own): no site stage may share
    one."""
    from kvmqa.gather.facts import parse_probe

    gathered = {name for s in builtin for name in s.gatherers}
    return {
        *parse_probe("", builtin.probe_parsers()),
        *gathered,
        "reach",
        "target",
        "round_trips",
        "kvm_probe_user",
        "kvm_probe_qemu_user",
        INSTALL_COLUMN,
    }


def _check_stage(path: Path, stage: Stage, builtin: Registry, found: list[tuple[Path, Stage]]) -> None:
    where = f"site checks {path}: stage {stage.name!r}"
    if stage.name in builtin:
        raise StageError(
            f"{where} is a built-in stage's name; a site stage needs a prefix of its own (e.g. the lab's "
            "name)"
        )
    if not STAGE_NAME.match(stage.name):
        raise StageError(
            f"{where}: a stage name is lower-case letters, digits, '_' and '-' (it is the check-ID prefix)"
        )
    if stage.name in _kvmqa_fact_sections(builtin):
        raise StageError(
            f"{where} would share facts[{stage.name!r}] with kvmqa's own facts; choose a prefix of the lab's "
            "own"
        )
    for other, s in found:
        if s.name == stage.name:
            raise StageError(f"{where} is declared twice (also in {other})")
    if stage.order < SITE_MIN_ORDER:
        raise StageError(
            f"{where} has order {stage.order}; site stages run after the built-in ones "
            f"(order {SITE_MIN_ORDER} or more)"
        )
    if not stage.checks.ids():
        raise StageError(f"{where} declares no checks")
    for section in (sec.strip("'\"") for sec in PROBE_SECTION.findall(stage.probe)):
        stage_part, _, key = section.partition(".")
        if stage_part != stage.name or not key:
            raise StageError(
                f"{where}: probe section {section!r} must be named '{stage.name}.<key>' "
                f"(it lands in facts[{stage.name!r}][<key>])"
            )


def _check_requires(paths: dict[str, Path], registry: Registry) -> None:
    """Every `requires` names a known check that runs before the one requiring it (so no cycle can exist)."""
    position = {c.id: (i, j) for i, s in enumerate(registry) for j, c in enumerate(s.checks)}
    for i, stage in enumerate(registry):
        if not stage.site:
            continue
        wants = [(f"stage {stage.name!r}", cid, (i, -1)) for cid in stage.requires]
        wants += [(f"check {c.id!r}", cid, (i, j)) for j, c in enumerate(stage.checks) for cid in c.requires]
        for who, cid, at in wants:
            if cid not in position:
                raise StageError(
                    f"site checks {paths[stage.name]}: {who} requires {cid!r}, which is no check "
                    f"(see python -m kvmqa checks)"
                )
            if position[cid] >= at:
                raise StageError(
                    f"site checks {paths[stage.name]}: {who} requires {cid!r}, which does not run before "
                    f"it (require checks of earlier stages, or checks declared above it in its stage)"
                )
