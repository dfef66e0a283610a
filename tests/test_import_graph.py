"""The import graph of `orpheus/`, read from the source with `ast` (imports inside functions included): no cycles,
and an import inside a function only at the boundaries declared here (and in docs/architecture.md), each of which
keeps TensorFlow out of a light path."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "orpheus"

# (importer, imported): why the import waits inside a function. Each imported module loads Keras or TensorFlow.
BOUNDARIES = {
    ("orpheus", "orpheus.api"): "`import orpheus` stays cheap: the Python API loads on first use of orpheus.tag",
    ("orpheus.commands.models", "orpheus.models.registry"): "`orpheus models --help` builds no model",
    ("orpheus.commands.predict_and_test", "orpheus.evaluate"): "`orpheus predict` (OpenVINO) never loads TensorFlow",
    ("orpheus.formats.rundir", "orpheus.models.layers"): "reading run.json needs no Keras; loading model.keras does",
    ("orpheus.models.pretrained", "orpheus.models.musicnn"): "finding a cached pretrained model needs no Keras",
}
# Modules that tagging with OpenVINO, the API and the decoding workers import: never TensorFlow or Keras.
LIGHT = ("orpheus", "orpheus.api", "orpheus.cli", "orpheus.commands.predict_and_test", "orpheus.tagging.predict",
         "orpheus.tagging.inputs", "orpheus.tagging.library", "orpheus.models.pretrained", "orpheus.formats.dataset",
         "orpheus.formats.tfrecord", "orpheus.export", "tfrecords.preprocessing")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted((ROOT / PACKAGE).rglob("*.py"))}


def imported_modules(path: Path, name: str, modules: dict[str, Path]) -> set[str]:
    """The package's modules that `name` (the file `path`) imports anywhere in its body, each with the packages
    that importing it initialises; not its own parent packages, which Python has initialised before it runs."""
    is_package = path.name == "__init__.py"
    here = name if is_package else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = here.split(".")[:len(here.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            targets.add(base)
            targets.update(f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in modules)
    edges = set()
    for target in targets:
        parts = target.split(".")
        for i in range(1, len(parts) + 1):        # importing a.b.c initialises a, a.b and a.b.c
            prefix = ".".join(parts[:i])
            if prefix in modules and prefix != name and not name.startswith(prefix + "."):
                edges.add(prefix)
    return edges


def function_level_imports() -> set[tuple[str, str]]:
    """(importer, imported module) for every import of the package made inside a function."""
    modules = package_modules()
    found = set()
    for name, path in modules.items():
        for function in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for node in ast.walk(function):
                    targets = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                        [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module or ""
                         for a in node.names] if isinstance(node, ast.ImportFrom) else []
                    found.update((name, t) for t in targets if t.split(".")[0] == PACKAGE)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = package_modules()
    return {name: imported_modules(path, name, modules) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module, or of one that imports itself (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_cycle_through_a_function_level_import(tmp_path, monkeypatch):
    """The finder itself, on a package written here: a -> b at the top, b -> a inside a function."""
    package = tmp_path / PACKAGE
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "a.py").write_text("from orpheus.sub import b\n")
    (package / "sub" / "b.py").write_text("def f():\n    from .. import a\n    return a\n")
    (package / "c.py").write_text("import orpheus.a\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    graph = import_graph()
    assert graph["orpheus.a"] == {"orpheus.sub", "orpheus.sub.b"}
    assert cycles(graph) == [["orpheus.a", "orpheus.sub.b"]]


def test_orpheus_has_no_import_cycle():
    graph = import_graph()
    assert len(graph) > 30 and graph["orpheus.cli"]          # the package was read
    found = cycles(graph)
    assert not found, "import cycles in orpheus/: " + "; ".join(" <-> ".join(c) for c in found)


def test_imports_inside_functions_are_the_declared_boundaries():
    assert function_level_imports() == set(BOUNDARIES)


def test_light_modules_load_no_tensorflow():
    code = (f"import importlib, sys; [importlib.import_module(m) for m in {LIGHT!r}]; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'tensorflow', 'keras'}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
