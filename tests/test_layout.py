"""The package's shape, as issue 12 set it: one folder per stage declared once, one registry everyone reads,
no
import cycles, plugin state on objects (no mutable module globals), transports without testinfra internals."""

from __future__ import annotations

import ast
from pathlib import Path

from kvmqa.stages import builtin
from tests.support.imports import PACKAGE, cycles, graph

STAGE_NAMES = set(builtin().names())


# The layers, bottom first. A module may import its own package and any layer below its own, never one above
# and never another package of its own layer (the stage folders may import each other: they are one layer).
# Imports inside functions and under `if TYPE_CHECKING:` count.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("data",),  # packaged data files (no code)
    (
        "core",
    ),  # model, checks, stage and registry, gate, action model, facts container: imports nothing above
    ("transport",),  # how commands reach a host
    ("config",),  # options, profiles, inventories (their targets are transport.Target)
    ("gather",),  # the probe runner, the shared sh library, the facts every stage reads
    ("stages", "api"),  # one folder per stage; api: what a site stage imports
    ("site",),  # loads site stages from folders
    ("session",),  # one host during one run
    ("act",),  # install mode's runner
    ("policy",),  # waivers, baselines
    ("report",),  # results.json, HTML: only read results
    ("pytest_plugin",),
    ("offline",),  # python -m kvmqa evaluate: facts from Ansible, the same verdicts
    ("suites", "__main__"),  # what users run
)


def _layer(module: str) -> tuple[int, str]:
    top = module.split(".")[1] if "." in module else ""
    for index, names in enumerate(LAYERS):
        if top in names:
            return index, top
    raise AssertionError(f"{module} is in no layer of tests/test_layout.py LAYERS")


def test_no_import_cycles_even_through_imports_inside_functions_or_for_type_checking() -> None:
    assert cycles(graph(lazy=False)) == []
    assert cycles(graph(lazy=True)) == []
    assert cycles(graph(lazy=True, typing=True)) == []


def test_imports_only_run_down_the_layers() -> None:
    upward = []
    for module, deps in graph(lazy=True, typing=True).items():
        if module == "kvmqa":
            continue
        mine, top = _layer(module)
        for dep in deps:
            theirs, dep_top = _layer(dep)
            if theirs > mine or (theirs == mine and dep_top != top):
                upward.append(f"{module} -> {dep} ({LAYERS[mine]} imports {LAYERS[theirs]})")
    assert upward == []


def test_the_bottom_layer_imports_nothing_else_of_kvmqa() -> None:
    core = {m: deps for m, deps in graph(lazy=True, typing=True).items() if m.startswith("kvmqa.core")}
    assert {m: sorted(d for d in deps if not d.startswith("kvmqa.core")) for m, deps in core.items()} == {
        m: [] for m in core
    }


def test_the_global_registry_is_read_only_by_the_plugin_and_the_command_line() -> None:
    """`builtin()` is where a run's registry starts; everything below the plugin is handed the run's
    registry."""
    readers = sorted(
        str(p.relative_to(PACKAGE))
        for p in PACKAGE.rglob("*.py")
        if "builtin()" in p.read_text() and "stages" not in p.relative_to(PACKAGE).parts[:1]
    )
    assert readers == ["__main__.py", "offline.py", "pytest_plugin/plugin.py"]


def test_each_stage_folder_declares_its_stage_once_and_its_suite_follows_the_order() -> None:
    folders = sorted(p.name for p in (PACKAGE / "stages").iterdir() if (p / "__init__.py").is_file())
    assert sorted(STAGE_NAMES) == folders
    declared = [p for p in (PACKAGE / "stages").rglob("*.py") if "STAGE = Stage(" in p.read_text()]
    assert sorted(p.parent.name for p in declared) == folders and all(
        p.name == "__init__.py" for p in declared
    )
    suites = sorted(p.name for p in (PACKAGE / "suites").glob("test_*.py"))
    want = sorted(f"test_{s.order:02d}_{s.name}.py" for s in builtin()) + ["test_70_site.py"]
    assert suites == sorted(want)
    orders = [s.order for s in builtin()]
    assert orders == sorted(orders) and len(set(orders)) == len(orders)


def _string_sequences(tree: ast.AST) -> list[set[str]]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            values = {e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)}
            out.append(values)
    return out


def test_no_room_outside_the_stage_folders_keeps_its_own_list_of_stages() -> None:
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if "stages" in path.relative_to(PACKAGE).parts:
            continue
        for values in _string_sequences(ast.parse(path.read_text())):
            if len(values & STAGE_NAMES) >= 3:
                offenders.append(f"{path.relative_to(PACKAGE)}: {sorted(values & STAGE_NAMES)}")
    assert offenders == []


def _mutable_module_globals(path: Path) -> list[str]:
    """Module-level containers that collect state: empty ones (STAGE_HOOKS = [], _PENDING: list = []) and
    private ones
    (_CONFIG = {...}); a filled constant table (VERDICTS = {...}) is not state."""
    found = []
    for node in ast.parse(path.read_text()).body:
        value = node.value if isinstance(node, (ast.Assign, ast.AnnAssign)) else None
        targets = (
            node.targets
            if isinstance(node, ast.Assign)
            else [node.target]
            if isinstance(node, ast.AnnAssign)
            else []
        )
        names = [t.id for t in targets if isinstance(t, ast.Name)]
        empty = (
            (isinstance(value, (ast.List, ast.Set)) and not value.elts)
            or (isinstance(value, ast.Dict) and not value.keys)
            or (
                isinstance(value, ast.Call)
                and isinstance(value.func, ast.Name)
                and value.func.id in ("list", "dict", "set")
                and not value.args
            )
        )
        container = isinstance(value, (ast.List, ast.Dict, ast.Set, ast.Call))
        if empty or (container and any(n.startswith("_") for n in names)):
            found.append(f"{path.name}:{node.lineno} {names}")
    return found


def test_the_pytest_plugin_keeps_no_mutable_module_state() -> None:
    found = [g for p in (PACKAGE / "pytest_plugin").glob("*.py") for g in _mutable_module_globals(p)]
    assert found == []


def test_transports_use_no_testinfra_internals_and_each_has_its_class() -> None:
    from kvmqa.transport.base import Transport
    from kvmqa.transport.target import TRANSPORTS, Target

    for scheme in TRANSPORTS:
        transport = Target.from_url("local://" if scheme == "local" else f"{scheme}://qa@hv1").transport
        assert isinstance(transport, Transport) and transport.name == scheme
    for path in (PACKAGE / "transport").glob("*.py"):
        text = path.read_text()
        assert "__dict__" not in text and ".backend." not in text, path.name


def test_reading_the_registry_imports_no_heavy_library() -> None:
    """Gatherers and actions are named "module:attribute": listing the stages and checks imports neither
    libvirt,
    ovirtsdk4, paramiko, testinfra nor pytest (a fresh interpreter, so nothing another test imported
    counts)."""
    import subprocess
    import sys

    code = (
        "import sys; from kvmqa.stages import builtin; r = builtin(); "
        "print(sum(len(s.checks.ids()) for s in r), *(m in sys.modules for m in "
        "('libvirt', 'ovirtsdk4', 'paramiko', 'testinfra', 'pytest')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/"
    ).stdout.split()
    assert int(out[0]) > 60 and out[1:] == ["False"] * 5


def test_a_fact_lives_with_its_stage() -> None:
    """A stage's probe snippet is its folder's probe.sh and its parser its folder's facts.py;
    kvmqa/gather/probe
    keeps only the shared library and what every stage reads; no two rooms fill the same fact section."""
    from kvmqa.core.stage import resolve
    from kvmqa.gather.facts import parse_probe

    shared = sorted(p.name for p in (PACKAGE / "gather" / "probe").glob("*.sh"))
    assert shared == ["00-lib.sh", "10-host.sh"]
    filled: dict[str, str] = dict.fromkeys(parse_probe("", []), "gather")
    for stage in builtin():
        folder = PACKAGE / "stages" / stage.name
        assert stage.probe == ((folder / "probe.sh").read_text() if (folder / "probe.sh").exists() else ""), (
            stage.name
        )
        assert stage.parser in ("", f"kvmqa.stages.{stage.name}.facts:parse"), stage.name
        assert bool(stage.probe) == bool(stage.parser), stage.name
        for name in resolve(stage.parser)({}) if stage.parser else ():
            assert name not in filled, f"{stage.name} and {filled[name]} both fill facts[{name!r}]"
            filled[name] = stage.name


def test_checks_read_typed_facts_not_raw_sections() -> None:
    """Each stage's checks read fact sections through typed views (facts.view(CpuInfo).flags), never by
    key."""
    import re

    raw = re.compile(r"\bfacts(?:\.get\(|\[)\s*['\"]")
    # The run-scoped cluster stage reads the cluster's own facts (hosts, cross-host measurements) as plain
    # data still: its typed views are the next step (issue 18's closing note).
    untyped = {"cluster"}
    offenders = [
        f"{path.relative_to(PACKAGE)}:{n}: {line.strip()}"
        for path in sorted((PACKAGE / "stages").glob("*/checks.py"))
        if path.parent.name not in untyped
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if raw.search(line) and not line.lstrip().startswith(("#", '"""')) and "``" not in line
    ]
    assert offenders == []


def test_lines_read_at_a_glance_formatted_and_at_most_110_characters() -> None:
    """`ruff format` (line length 110, pyproject.toml) leaves nothing to change and E501 holds everywhere."""
    import shutil
    import subprocess
    import sys

    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    assert ruff, "ruff is a dev dependency: pip install -e '.[dev]'"
    root = PACKAGE.parent
    where = ["kvmqa", "tests", "bench", "suites", "conftest.py"]
    fmt = subprocess.run([ruff, "format", "--check", *where], cwd=root, capture_output=True, text=True)
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr
    lint = subprocess.run(
        [ruff, "check", "--select", "E501", *where], cwd=root, capture_output=True, text=True
    )
    assert lint.returncode == 0, lint.stdout[-3000:]
