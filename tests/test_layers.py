"""The layering of docs/architecture.md, checked from the source: every module's imports are read
with `ast` (top-level, inside functions and under TYPE_CHECKING alike), so an import that goes up a
layer, a Plotly import outside charts/, an import circle between files, a test module leaning on
another test module or a script leaning on tests/ fails here, naming the file and the import."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "cifar_core"

# What each layer may not import (docs/architecture.md, "What may import what").
# cifar_core.testing (what tests and scripts share) sits above them all: no product module imports it.
ABOVE = ("cifar_core.lab", "cifar_core.cli", "cifar_core.views", "cifar_core.charts", "cifar_core.testing")
FORBIDDEN = {
    "cifar_core.data": ("cifar_core.spec", "cifar_core.train", "cifar_core.jobs", "cifar_core.analysis") + ABOVE,
    "cifar_core.spec": ("cifar_core.data", "cifar_core.train", "cifar_core.jobs", "cifar_core.analysis") + ABOVE,
    "cifar_core.train": ("cifar_core.jobs", "cifar_core.analysis") + ABOVE,
    # search: beside spec (the sweep's strategy, store-free): spec and Optuna only
    "cifar_core.search": ("cifar_core.data", "cifar_core.train", "cifar_core.jobs", "cifar_core.analysis") + ABOVE,
    "cifar_core.jobs": ("cifar_core.analysis",) + ABOVE,
    "cifar_core.analysis": ("cifar_core.lab", "cifar_core.cli", "cifar_core.views", "cifar_core.testing"),
    "cifar_core.charts": ("cifar_core.lab", "cifar_core.cli", "cifar_core.views", "cifar_core.testing"),
}


def _name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[str, str]]:
    """(where, dotted name) of every import in the file, `where` naming the file, line and statement;
    `from a import b` gives a and a.b (b may be a module)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)} `{ast.unparse(node)}`" if isinstance(
            node, (ast.Import, ast.ImportFrom)) else ""
        if isinstance(node, ast.Import):
            found += [(where, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((where, node.module))
            found += [(where, f"{node.module}.{a.name}") for a in node.names]
    return found


def _offending(pairs) -> list[str]:
    """One line per offending import statement, in file order."""
    return sorted({where for where, _ in pairs})


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


PACKAGE_FILES = sorted(PACKAGE.rglob("*.py"))
MODULES = {_name(p): p for p in PACKAGE_FILES}


def _graph() -> dict[str, dict[str, str]]:
    """module -> {imported package module: where it is first imported}, for modules of cifar_core only."""
    graph = {}
    for name, path in MODULES.items():
        edges: dict[str, str] = {}
        for where, target in _imports(path):
            if target in MODULES and target not in (name, "cifar_core"):
                edges.setdefault(target, where)
        graph[name] = edges
    return graph


def _circles(graph: dict[str, dict[str, str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_circle_between_files():
    graph = _graph()
    bad = []
    for circle in _circles(graph):
        edges = [graph[a][b] for a in circle for b in sorted(graph[a]) if b in circle]
        bad.append("circle " + " <-> ".join(circle) + ": " + "; ".join(edges))
    assert not bad, "import circles between files:\n" + "\n".join(bad)


def test_no_layer_imports_a_layer_above_it():
    bad = []
    for name, path in MODULES.items():
        for layer, forbidden in FORBIDDEN.items():
            if not _within(name, layer):
                continue
            bad += _offending((where, t) for where, t in _imports(path) if any(_within(t, f) for f in forbidden))
    assert not bad, "imports up the layers of docs/architecture.md:\n" + "\n".join(bad)


def test_optuna_only_in_search():
    """Optuna's studies, samplers and pruners stay behind cifar_core/search; everything else calls it."""
    files = [*PACKAGE_FILES, ROOT / "app.py", *sorted((ROOT / "pages").glob("*.py"))]
    bad = _offending((where, t) for p in files if not _within(_name(p), "cifar_core.search")
                     for where, t in _imports(p) if _within(t, "optuna"))
    assert not bad, "Optuna outside cifar_core/search:\n" + "\n".join(bad)


def test_plotly_only_in_charts():
    files = [*PACKAGE_FILES, ROOT / "app.py", *sorted((ROOT / "pages").glob("*.py"))]
    bad = _offending((where, t) for p in files if not _within(_name(p), "cifar_core.charts")
                     for where, t in _imports(p) if _within(t, "plotly"))
    assert not bad, "Plotly outside cifar_core/charts:\n" + "\n".join(bad)


def test_no_test_module_imports_another():
    tests = sorted((ROOT / "tests").glob("*.py"))
    bad = _offending((where, t) for p in tests for where, t in _imports(p)
                     if t.split(".")[0].startswith("test_") or t.startswith("tests.test_"))
    assert not bad, ("test modules importing other test modules (put shared helpers in a tests/ support "
                     "module or conftest.py):\n" + "\n".join(bad))


def test_no_script_imports_tests():
    helpers = {p.stem for p in (ROOT / "tests").glob("*.py")} | {"tests"}
    scripts = sorted((ROOT / "scripts").glob("*.py"))
    bad = _offending((where, t) for p in scripts for where, t in _imports(p) if t.split(".")[0] in helpers)
    assert not bad, "scripts importing from tests/ (import the package instead):\n" + "\n".join(bad)


def test_only_the_bootstrap_puts_folders_on_sys_path():
    """A script reaches the package through scripts/_bootstrap.py alone (which puts the checkout's
    root on sys.path); no script adds tests/ or anything else."""
    bad = []
    for p in sorted((ROOT / "scripts").glob("*.py")):
        if p.name == "_bootstrap.py":
            continue
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"), str(p))):
            if isinstance(node, ast.Attribute) and node.attr == "path" and ast.unparse(node.value) == "sys":
                bad.append(f"{p.relative_to(ROOT)}:{node.lineno} uses sys.path")
    assert not bad, "scripts changing sys.path themselves (import _bootstrap instead):\n" + "\n".join(bad)


def test_no_module_uses_rays_private_api():
    """Ray's `ray._private` changes without notice between releases; the lab uses its public API
    (only the test cluster helper may reach in, to find this machine's address)."""
    bad = [where for path in sorted((ROOT / "cifar_core").rglob("*.py")) if "testing" not in path.parts
           for where, name in _imports(path) if name.startswith("ray._private")]
    assert not bad, "\n".join(bad)
