"""kvmqa's import graph, read statically (ast): module -> the kvmqa modules it imports.

    python -m tests.support.imports            # one line per package: what it imports (module-level imports)
    python -m tests.support.imports --all      # including imports inside functions (lazy ones)

Imports under `if TYPE_CHECKING:` are left out unless `typing=True`: they never run, but they are still a
dependency of the module's meaning, so the layer order counts them.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "kvmqa"


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING"
    )


def imports_of(path: Path, lazy: bool, typing: bool = False) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    modules = {module_name(p) for p in PACKAGE.rglob("*.py")}

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    def visit(body: list[ast.stmt], top: bool) -> None:
        for node in body:
            if isinstance(node, ast.If) and _type_checking(node):
                visit(node.body if typing else [], top)
                visit(node.orelse, top)
                continue
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.startswith("kvmqa") and (m := resolve(a.name)):
                        found.add(m)
            elif (
                isinstance(node, ast.ImportFrom)
                and node.module
                and node.module.startswith("kvmqa")
                and node.level == 0
            ):
                for a in node.names:
                    m = resolve(f"{node.module}.{a.name}") or resolve(node.module)
                    if m:
                        found.add(m)
            for field in ("body", "orelse", "finalbody", "handlers"):
                inner = getattr(node, field, None)
                if isinstance(inner, list) and inner and isinstance(inner[0], (ast.stmt, ast.excepthandler)):
                    nested = isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                    if nested and not lazy and not isinstance(node, ast.ClassDef):
                        continue
                    visit(
                        [n for h in inner for n in (h.body if isinstance(h, ast.ExceptHandler) else [h])],
                        top and not nested,
                    )

    visit(tree.body, True)
    me = module_name(path)
    found.discard(me)
    return found


def graph(lazy: bool = False, typing: bool = False) -> dict[str, set[str]]:
    return {module_name(p): imports_of(p, lazy, typing) for p in sorted(PACKAGE.rglob("*.py"))}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Every elementary cycle found by a depth-first search (each reported once, from its smallest module)."""
    out: list[list[str]] = []
    seen: set[tuple[str, ...]] = set()

    def dfs(start: str, node: str, path: list[str]) -> None:
        for nxt in sorted(g.get(node, ())):
            if nxt == start:
                cyc = tuple(path)
                key = tuple(sorted(cyc))
                if key not in seen:
                    seen.add(key)
                    out.append([*path, start])
            elif nxt not in path and nxt > start:
                dfs(start, nxt, [*path, nxt])

    for start in sorted(g):
        dfs(start, start, [start])
    return out


def package_of(module: str) -> str:
    parts = module.split(".")
    if parts[1:2] == ["stages"] and len(parts) > 2:
        return ".".join(parts[:3])
    return ".".join(parts[:2])


def package_graph(g: dict[str, set[str]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for mod, deps in g.items():
        pkg = package_of(mod)
        out.setdefault(pkg, set()).update(package_of(d) for d in deps if package_of(d) != pkg)
    return out


if __name__ == "__main__":
    lazy = "--all" in sys.argv
    g = graph(lazy)
    for pkg, deps in sorted(package_graph(g).items()):
        print(f"{pkg:30} -> {', '.join(sorted(d.removeprefix('kvmqa.') for d in deps)) or '-'}")
    found = cycles(g)
    print(f"module import cycles ({'with' if lazy else 'without'} imports inside functions): {len(found)}")
    for c in found:
        print("  " + " -> ".join(c))
