"""The package's shape: the graph of imports between reidlab's own modules has no cycle, and every import goes
down the layer order of docs/design.md.

A cycle works only as long as one side imports lazily or at the bottom of a module, and breaks when someone
reorders imports; it also means two modules are one concept split in two. Every import counts, also those
inside functions.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import reidlab

PACKAGE_ROOT = Path(reidlab.__file__).resolve().parent


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """reidlab module -> the reidlab modules it imports (``from pkg import sub`` counts as importing ``pkg.sub``)."""
    modules = {module_name(path): path for path in PACKAGE_ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
            else:
                continue
            graph[name].update(t for t in targets if t in modules and t != name)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a list of modules (first = last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_the_graph_sees_relative_absolute_and_lazy_imports():
    graph = import_graph()
    assert "reidlab.evaluation.checks" in graph["reidlab.evaluation.search"]  # absolute
    assert "reidlab.data.samplers.pk" in graph["reidlab.data.samplers.hard"]  # relative
    assert "reidlab.data.synth" in graph["reidlab.study.plan"]  # inside a function


def test_reidlab_has_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


# docs/design.md, "Layers": a module imports its own package and lower layers only. The root package holds only
# the version; `python -m reidlab` is the top.
# `search` (your own images) shows its results with the explorer's tiles: above explore, below the command line.
# `export` (ONNX) rebuilds a trained run through the engine; search embeds with its files, so it sits below search.
LAYERS = {"reidlab": 0, "utils": 0, "data": 1, "losses": 1, "models": 1, "evaluation": 1, "engine": 2, "study": 3,
          "export": 3, "viz": 4, "explore": 5, "search": 6, "cli": 7, "__main__": 8}


def layer_of(module: str) -> tuple[int, str]:
    """(layer, top-level package) of a reidlab module."""
    package = module.split(".")[1] if "." in module else "reidlab"
    return LAYERS[package], package


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    """Imports that go up the layer order or sideways into another package of the same layer."""
    found = []
    for module, targets in sorted(graph.items()):
        (level, package) = layer_of(module)
        for target in sorted(targets):
            (target_level, target_package) = layer_of(target)
            if target_package != package and target_level >= level and target_package != "reidlab":
                found.append(f"{module} (layer {level}) imports {target} (layer {target_level})")
    return found


def test_every_package_has_a_layer():
    assert {layer_of(module)[1] for module in import_graph()} <= set(LAYERS)


def test_the_layer_check_finds_upward_and_sideways_imports():
    graph = {name: set(targets) for name, targets in import_graph().items()}
    assert layer_violations(graph) == []
    graph["reidlab.data.datasets"].add("reidlab.study.plan")  # upward
    graph["reidlab.losses.common"].add("reidlab.models.heads")  # sideways, into another base package
    assert layer_violations(graph) == [
        "reidlab.data.datasets (layer 1) imports reidlab.study.plan (layer 3)",
        "reidlab.losses.common (layer 1) imports reidlab.models.heads (layer 1)"]


def test_imports_follow_the_layer_order():
    violations = layer_violations(import_graph())
    assert not violations, "imports against the layer order of docs/design.md:\n" + "\n".join(violations)


# import name -> distribution name, where they differ
DISTRIBUTION_OF = {"PIL": "pillow", "yaml": "pyyaml", "sklearn": "scikit-learn", "umap": "umap-learn",
                   "faiss": "faiss-cpu", "IPython": "ipython",
                   "jupyter_client": "jupyter-client"}
# conda package name -> distribution name, where they differ
CONDA_NAMES = {"pytorch": "torch"}


def declared_dependencies() -> set[str]:
    import re
    import tomllib

    project = tomllib.loads((PACKAGE_ROOT.parent / "pyproject.toml").read_text())["project"]
    return {re.split(r"[<>=!\[ ;]", spec, maxsplit=1)[0].lower() for spec in project["dependencies"]}


def third_party_imports() -> dict[str, str]:
    """Top-level third-party modules imported by reidlab and the notebooks -> one file importing each."""
    import json
    import sys

    sources = {str(path): path.read_text() for path in PACKAGE_ROOT.rglob("*.py")}
    for notebook in (PACKAGE_ROOT.parent / "notebooks").glob("*.ipynb"):
        cells = json.loads(notebook.read_text())["cells"]
        sources[str(notebook)] = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    found: dict[str, str] = {}
    for where, text in sources.items():
        for node in ast.walk(ast.parse(text, where)):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top != "reidlab":
                    found.setdefault(top, where)
    return found


def test_every_imported_package_is_declared_in_pyproject_and_environment():
    import yaml

    declared = declared_dependencies()
    missing = {top: where for top, where in third_party_imports().items()
               if DISTRIBUTION_OF.get(top, top).lower() not in declared}
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"
    environment = yaml.safe_load((PACKAGE_ROOT.parent / "environment.yml").read_text())["dependencies"]
    conda = {str(spec).split("=")[0].split(">")[0].split("<")[0].strip().lower() for spec in environment if isinstance(spec, str)}
    pip_lines = [spec for item in environment if isinstance(item, dict) for spec in item["pip"]]
    pip = {spec.split("=")[0].split(">")[0].strip().lower() for spec in pip_lines if not spec.startswith("-r")}
    for requirements in (spec.removeprefix("-r").strip() for spec in pip_lines if spec.startswith("-r")):
        text = (PACKAGE_ROOT.parent / requirements).read_text()  # e.g. the lock: its pinned names
        pip |= {m.lower() for m in re.findall(r"^([A-Za-z0-9][A-Za-z0-9_.-]*)==", text, re.M)}
    in_environment = {CONDA_NAMES.get(name, name).replace("_", "-") for name in conda | pip}
    assert declared <= in_environment, f"in pyproject.toml but not in environment.yml: {sorted(declared - in_environment)}"
