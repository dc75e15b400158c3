"""ARCHITECTURE.md is true: no module imports another that (directly or not) imports it back, packages
depend on each other only in the direction the document states, and it names every package and module.

Every import statement counts, wherever it stands: at module level, inside a function (a lazy import
only hides a cycle from Python at import time, not from the design) and under ``TYPE_CHECKING``.
Importing ``pkg.sub`` is an edge to ``pkg.sub`` only: Python also runs ``pkg/__init__.py`` first, but that
is the language's doing, not a dependency the module chose.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("agent", "optiq_runtime", "sandbox", "tools", "training", "tui")
ARCHITECTURE = ROOT / "ARCHITECTURE.md"
# The command line assembles everything (it starts the TUI); nothing below it may import it.
COMPOSITION_ROOT = "agent.cli"


def project_modules() -> dict[str, Path]:
    """Dotted name -> file of every module in the checked packages (a package is its ``__init__``)."""
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _target(name: str, modules: dict[str, Path]) -> str | None:
    """The project module an imported dotted name lives in (its longest known prefix), or None."""
    parts = name.split(".")
    while parts and ".".join(parts) not in modules:
        parts.pop()
    return ".".join(parts) or None


def _imported_names(node: ast.Import | ast.ImportFrom, package: str, modules: dict[str, Path]) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
        base = ".".join(anchor + ([node.module] if node.module else []))
    # ``from pkg import sub`` imports the submodule when there is one, else a name from pkg itself
    return [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports anywhere in its source."""
    modules = project_modules()
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                edges.update(_target(n, modules) for n in _imported_names(node, package, modules))
        graph[name] = edges - {None, name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One cycle (its nodes in import order, the first repeated at the end), or [] when there is none."""
    done: set[str] = set()
    path: list[str] = []

    def visit(node: str) -> list[str]:
        if node in path:
            return path[path.index(node) :] + [node]
        if node in done:
            return []
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if cycle := visit(nxt):
                return cycle
        path.pop()
        done.add(node)
        return []

    for start in sorted(graph):
        if cycle := visit(start):
            return cycle
    return []


def layer(module: str) -> str:
    """The unit ARCHITECTURE.md's dependency direction speaks of: a top-level package, or the command line."""
    if module == COMPOSITION_ROOT or module.startswith(COMPOSITION_ROOT + "."):
        return COMPOSITION_ROOT
    return module.split(".")[0]


def documented_direction() -> set[tuple[str, str]]:
    """(importer, imported) pairs the document allows: its chains ``a → b → (c, d)``, each step transitive."""
    paragraph = next(p for p in ARCHITECTURE.read_text().split("\n\n") if p.startswith("Dependencies point one way"))
    allowed = set()
    for chain in re.findall(r"`([^`]*→[^`]*)`", paragraph):
        groups = [[n.strip(" ()") for n in step.split(",")] for step in chain.split("→")]
        for i, earlier in enumerate(groups):
            allowed.update((a, b) for later in groups[i + 1 :] for a in earlier for b in later)
    return allowed


def test_cycle_finder_finds_a_cycle_and_passes_a_tree():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []


def test_no_module_imports_itself_back():
    cycle = find_cycle(import_graph())
    assert not cycle, "import cycle: " + " -> ".join(cycle)


def test_packages_depend_in_the_documented_direction():
    allowed = documented_direction()
    assert ("agent.cli", "tui") in allowed and ("tui", "agent") in allowed and ("tools", "sandbox") in allowed
    against = sorted(
        f"{importer} imports {imported} ({layer(importer)} -> {layer(imported)})"
        for importer, edges in import_graph().items()
        for imported in edges
        if layer(importer) != layer(imported) and (layer(importer), layer(imported)) not in allowed
    )
    assert not against, "against ARCHITECTURE.md's direction:\n" + "\n".join(against)


def test_nothing_below_the_command_line_imports_it():
    importers = sorted(
        m
        for m, edges in import_graph().items()
        if layer(m) != COMPOSITION_ROOT and any(layer(e) == COMPOSITION_ROOT for e in edges)
    )
    assert not importers


def _rows() -> dict[str, str]:
    """Table rows of ARCHITECTURE.md by their first cell's path (``agent/serve/``)."""
    rows = {}
    for line in ARCHITECTURE.read_text().splitlines():
        if match := re.match(r"\| `([^`]+)` \|", line):
            rows[match.group(1)] = line
    return rows


def test_architecture_has_a_row_for_every_package():
    rows = _rows()
    packages = sorted(
        f"{p.parent.relative_to(ROOT).as_posix()}/" for name in PACKAGES for p in (ROOT / name).rglob("__init__.py")
    )
    assert [p for p in packages if p not in rows] == []


def test_architecture_names_every_module_in_its_package_row():
    """``name.py`` in the row of its package, or its full path anywhere in the document."""
    rows, text = _rows(), ARCHITECTURE.read_text()
    unnamed = []
    for path in project_modules().values():
        if path.name == "__init__.py":
            continue
        relative = path.relative_to(ROOT).as_posix()
        row = rows.get(f"{path.parent.relative_to(ROOT).as_posix()}/", "")
        if f"`{path.name}`" not in row and f"`{relative}`" not in text:
            unnamed.append(relative)
    assert unnamed == []
