"""No import cycle anywhere in tokensvc/, counting imports made only for type checking
(``if TYPE_CHECKING:``) and imports inside functions: the graph is built from the source
with ``ast``, not from what happens to be imported at run time."""

from __future__ import annotations

import ast
from pathlib import Path

import tokensvc

PACKAGE = Path(tokensvc.__file__).parent


def module_names(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every module under ``root`` (a package directory)."""
    names: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        parts = [root.name, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the package's modules it imports, wherever the import statement is. Importing
    ``a.b.c`` also runs ``a`` and ``a.b`` (their ``__init__``), so those count as imported too,
    and so does a module's own parent package."""
    modules = module_names(root)

    def with_parents(name: str) -> set[str]:
        parts = name.split(".")
        return {".".join(parts[:i]) for i in range(1, len(parts) + 1)} & modules.keys()

    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set(with_parents(package))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    targets |= with_parents(alias.name)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, *([base] if base else [])])
                targets |= with_parents(base)
                for alias in node.names:  # ``from pkg import module``
                    targets |= with_parents(f"{base}.{alias.name}")
        graph[name] = targets - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a path ``[a, b, ..., a]``, or None when the graph is acyclic."""
    done: set[str] = set()
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done:
            return None
        path.append(node)
        for target in sorted(graph.get(node, ())):
            cycle = visit(target)
            if cycle is not None:
                return cycle
        path.pop()
        done.add(node)
        return None

    for start in sorted(graph):
        cycle = visit(start)
        if cycle is not None:
            return cycle
    return None


def test_tokensvc_has_no_import_cycle() -> None:
    """The import graph of every module under tokensvc/ is acyclic."""
    graph = import_graph(PACKAGE)
    assert {"tokensvc.store.base", "tokensvc.store.shared", "tokensvc.app"} <= graph.keys()
    assert None is find_cycle(graph)


def test_store_base_is_at_the_bottom() -> None:
    """The value types and the Store protocol import nothing else from tokensvc (but their
    packages)."""
    assert {"tokensvc", "tokensvc.store"} == import_graph(PACKAGE)["tokensvc.store.base"]


def test_cycles_through_type_checking_and_function_imports_are_found(tmp_path: Path) -> None:
    """The checker sees an import under ``if TYPE_CHECKING:`` and one inside a function, and
    reports the cycle they make (so the test above can fail)."""
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.b import B\n"
    )
    (package / "b.py").write_text("def f():\n    from . import a\n    return a\n")
    assert ["pkg.a", "pkg.b", "pkg.a"] == find_cycle(import_graph(package))
