"""The package layout's rules, checked on every import in vecpipe/ (module level and lazy ones alike).

- no import cycles between vecpipe's modules;
- core/ imports no typer or rich, and nothing from cli/;
- formats/ imports nothing from core but its foundation: the error types, the atomic file writer
  (a .npy and its sidecar must appear together or not at all, which is that writer's job) and
  the VectorBatch every codec reads into and writes from, and the provenance loader that types
  what a stream says of its vectors;
- cli/ does no numerics (no numpy) and no CLI module grows past about 400 lines.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "vecpipe"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve_relative(module: str, is_package: bool, level: int, target: str | None) -> str:
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (level - 1)] if level > 1 else base
    return ".".join(base + ([target] if target else []))


def _imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Every module name `name` imports, resolved to the most specific known vecpipe module or the top-level name."""
    found: set[str] = set()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module if not node.level else _resolve_relative(name, path.name == "__init__.py", node.level, node.module)
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for target in targets:
            if target.startswith("vecpipe"):
                while target not in known and "." in target:
                    target = target.rsplit(".", 1)[0]
            found.add(target)
    found.discard(name)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    known = _modules()
    return {name: _imports(name, path, known) for name, path in known.items()}


def _internal(graph: dict[str, set[str]], name: str) -> set[str]:
    # A package's __init__ is imported by each of its modules; it is not an edge of the design.
    return {t for t in graph[name] if t in graph and not name.startswith(t + ".")}


def find_cycles(graph: dict[str, set[str]]) -> list[str]:
    visiting, done, cycles = [], set(), []

    def visit(node: str) -> None:
        visiting.append(node)
        for target in sorted(_internal(graph, node)):
            if target in visiting:
                cycles.append(" -> ".join(visiting[visiting.index(target):] + [target]))
            elif target not in done:
                visit(target)
        visiting.pop()
        done.add(node)

    for node in sorted(graph):
        if node not in done:
            visit(node)
    return cycles


def test_no_import_cycles(graph):
    assert find_cycles(graph) == []


def test_the_cycle_finder_sees_cycles():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a -> b -> c -> a"]
    assert find_cycles({"p": set(), "p.x": {"p"}}) == []  # a module importing its own package is no cycle


def test_core_imports_no_cli_framework(graph):
    offenders = {
        name: sorted(t for t in targets if t.split(".")[0] in ("typer", "rich", "click") or t.startswith("vecpipe.cli"))
        for name, targets in graph.items()
        if name.startswith("vecpipe.core")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


FOUNDATION = ("vecpipe.core.errors", "vecpipe.core.atomic", "vecpipe.core.vector_batch", "vecpipe.core.provenance")


def test_formats_import_only_the_foundation_from_core(graph):
    offenders = {
        name: sorted(t for t in targets if t.startswith("vecpipe.core") and t not in FOUNDATION)
        for name, targets in graph.items()
        if name.startswith("vecpipe.formats")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_cli_does_no_numerics(graph):
    offenders = {name: "numpy" for name, targets in graph.items() if name.startswith("vecpipe.cli") and "numpy" in targets}
    assert offenders == {}


def test_cli_modules_stay_small():
    sizes = {p.relative_to(PACKAGE).as_posix(): len(p.read_text(encoding="utf-8").splitlines()) for p in (PACKAGE / "cli").rglob("*.py")}
    assert {name: n for name, n in sizes.items() if n > 420} == {}


# Which packages each package may import (docs/DEVELOPING.md's map); "foundation" is core's own modules.
LAYERS = {
    "cli": {"foundation", "formats", "models", "index", "vectors", "retrieval", "pipeline", "eval"},
    "eval": {"foundation", "formats", "models", "index", "vectors", "retrieval", "pipeline"},
    "pipeline": {"foundation", "formats", "models", "index", "vectors"},
    "retrieval": {"foundation", "formats", "index", "vectors"},
    "models": {"foundation", "formats"},
    "index": {"foundation", "formats", "vectors"},
    "vectors": {"foundation", "formats"},
    "formats": {"foundation"},
    "foundation": set(),
}


def _layer(module: str) -> str | None:
    parts = module.split(".")
    if parts[:2] == ["vecpipe", "core"]:
        return parts[2] if len(parts) > 3 or (PACKAGE / "core" / parts[2]).is_dir() else "foundation"
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


def test_packages_import_only_the_layers_below_them(graph):
    crossings = set()
    for name, targets in graph.items():
        for target in _internal(graph, name):
            source_layer, target_layer = _layer(name), _layer(target)
            if None in (source_layer, target_layer) or source_layer == target_layer:
                continue
            if target_layer not in LAYERS[source_layer]:
                crossings.add(f"{name} -> {target}")
    assert sorted(crossings) == []


def test_no_module_grows_past_500_lines():
    sizes = {p.relative_to(PACKAGE).as_posix(): len(p.read_text(encoding="utf-8").splitlines()) for p in PACKAGE.rglob("*.py")}
    assert {name: n for name, n in sizes.items() if n > 500} == {}


def _package_of(module: str) -> str:
    return module.rsplit(".", 1)[0]


def test_no_private_name_is_imported_across_packages():
    """A name starting with `_` is its package's business: another package uses what it exports."""
    known = _modules()
    crossings = []
    for name, path in known.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ImportFrom) or node.level or not (node.module or "").startswith("vecpipe"):
                continue
            for alias in node.names:
                private = any(part.startswith("_") and not part.endswith("__") for part in [*node.module.split("."), alias.name])
                if private and _package_of(node.module) != _package_of(name):
                    crossings.append(f"{name}: from {node.module} import {alias.name}")
    assert crossings == []


def test_cli_reaches_indexes_only_through_the_front_door(graph):
    offenders = {name: sorted(t for t in targets if t.startswith("vecpipe.core.index") and t != "vecpipe.core.index.api")
                 for name, targets in graph.items() if name.startswith("vecpipe.cli")}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_every_package_directory_is_a_regular_package():
    """setuptools' package finder ships only directories with an __init__.py: a namespace
    directory works in an editable checkout and is missing from every installed wheel."""
    missing = sorted(d.relative_to(PACKAGE).as_posix() for d in PACKAGE.rglob("*") if d.is_dir() and d.name != "__pycache__"
                     and any(d.glob("*.py")) and not (d / "__init__.py").exists())
    assert missing == []
