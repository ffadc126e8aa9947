"""The package's import graph, built from the source (ast): no cycle, no private name imported
from another module, a reporting side that never imports the engine, and light entry points."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "hrsbench"
#: What hrsbench.report must never import, directly or through another hrsbench module.
ENGINE = ("torch", "art", "hrsbench.plugin.registry")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def _type_checking_only(tree: ast.AST) -> set[int]:
    """Nodes under ``if TYPE_CHECKING:``: never executed, so not part of the graph."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(n) for n in ast.walk(node)}
    return skip


def imports(module: str) -> list[tuple[str, list[str]]]:
    """(imported module, imported names) for every import statement of ``module``, at any
    depth (a function-level import is an edge too)."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = _type_checking_only(tree)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*pkg, base] if base else pkg)
            out.append((base, [a.name for a in node.names]))
    return out


def internal(target: str, names: list[str]) -> list[str]:
    """The hrsbench modules an import statement loads."""
    found = [f"{target}.{n}" for n in names if f"{target}.{n}" in MODULES]
    while target and target not in MODULES:
        target = target.rpartition(".")[0]
    return found or ([target] if target.startswith("hrsbench") else [])


GRAPH = {m: {t for target, names in imports(m) for t in internal(target, names)} - {m}
         for m in MODULES}


def test_no_import_cycle():
    """Tarjan's strongly connected components: any component of two or more modules is a
    cycle (``hrsbench`` itself only re-exports, lazily, and is left out)."""
    graph = {m: deps - {"hrsbench"} for m, deps in GRAPH.items() if m != "hrsbench"}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while component[-1:] != [v]:
                component.append(stack.pop())
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert cycles == []


def test_no_private_name_imported_across_modules():
    private = [(m, target, n) for m in MODULES for target, names in imports(m)
               for n in names if n.startswith("_") and not n.startswith("__")]
    assert private == []


def reachable(start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        m = todo.pop()
        for dep in GRAPH.get(m, ()):
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("hrsbench.report")))
def test_report_never_imports_the_engine(module):
    """Directly or through other hrsbench modules, at any depth."""
    loaded = {module} | reachable(module)
    external = {target for m in loaded for target, _ in imports(m)}
    bad = sorted(t for t in external | loaded
                 if any(t == e or t.startswith(e + ".") for e in ENGINE))
    assert bad == [], f"{module} reaches {bad}"


#: The packages' layers, lowest first: a module may import its own package and the packages
#: listed for it (and the shared leaves ``hrsbench.errors``, ``hrsbench.paths``,
#: ``hrsbench.locks``); ``hrsbench.api`` and ``hrsbench.cli`` sit on top and may import all.
LAYERS = {
    "hrsbench.results": (),
    "hrsbench.plugin": ("hrsbench.results",),
    "hrsbench.engine": ("hrsbench.results", "hrsbench.plugin"),
    "hrsbench.report": ("hrsbench.results",),
}
LEAVES = ("hrsbench.errors", "hrsbench.paths", "hrsbench.locks")


def package_of(module: str) -> str:
    return next((p for p in LAYERS if module == p or module.startswith(p + ".")), module)


@pytest.mark.parametrize("package", sorted(LAYERS))
def test_packages_import_only_the_layers_below(package):
    """The folders are the architecture: the result vocabulary imports no other package, the
    plugin API only it, the engine those two and never the report, the report only the
    results. Function-level imports count."""
    allowed = {package, *LAYERS[package], *LEAVES}
    bad = sorted((m, dep) for m in MODULES if package_of(m) == package
                 for dep in GRAPH[m] if package_of(dep) not in allowed and dep != "hrsbench")
    assert bad == []


def test_every_module_sits_in_a_package_or_is_an_entry_point():
    """Besides the four packages: the public names, the two entry points and the leaves."""
    top = sorted(m for m in MODULES if package_of(m) not in LAYERS)
    assert top == sorted(["hrsbench", "hrsbench.api", "hrsbench.cli", "hrsbench.progress",
                          *LEAVES])


@pytest.mark.parametrize("statement, forbidden", [
    ("import hrsbench.report", ("torch", "art", "matplotlib")),
    ("import hrsbench", ("torch", "art", "matplotlib", "pandas")),
    ("import hrsbench.cli", ("torch", "art", "matplotlib", "pandas")),
    ("import hrsbench.results.store", ("torch", "art", "matplotlib")),
])
def test_light_imports(statement, forbidden):
    code = f"import sys; {statement}; print(sorted(m for m in {forbidden!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_public_api_resolves_lazily():
    import hrsbench

    assert set(hrsbench.__all__) <= set(dir(hrsbench))
    for name in hrsbench.__all__:
        assert getattr(hrsbench, name) is not None
