"""Imports run one way (docs/design.md, "Map of the package"): every bdflow module imports only modules of its own
layer or below, there are no cycles, and no library module imports a CLI."""

from __future__ import annotations

import ast
import graphlib

from tests.helpers import REPO

# the layers of docs/design.md's map; a module may import its own layer and the ones below
LAYERS = {
    0: ["__init__", "limits", "config", "entropy"],
    1: ["quantize", "image_io", "resize", "bam", "wavelets", "coupling", "lpips", "critic", "metrics", "tiles", "encoded"],
    2: ["card", "hub", "flow", "accel", "levels", "losses"],
    3: ["pipeline", "codec", "data"],
    4: ["viz", "demo", "lab"],
    5: ["__main__", "train", "evaluate", "figures", "decoupling"],
}
CLIS = set(LAYERS[5])
LAYER = {module: layer for layer, modules in LAYERS.items() for module in modules}


def imports() -> dict[str, set[str]]:
    """module -> the bdflow modules it imports anywhere in its file (lazy and TYPE_CHECKING imports included)."""
    graph = {}
    for path in sorted((REPO / "bdflow").glob("*.py")):
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                deps.update([node.module.split(".")[0]] if node.module else [a.name for a in node.names])
        graph[path.stem] = deps - {path.stem}
    return graph


def test_every_module_has_a_layer():
    assert set(imports()) == set(LAYER)


def test_imports_run_one_way_without_cycles():
    graph = imports()
    upward = [f"{m} (layer {LAYER[m]}) imports {d} (layer {LAYER[d]})" for m, deps in graph.items() for d in deps
              if LAYER[d] > LAYER[m]]
    assert not upward
    graphlib.TopologicalSorter(graph).prepare()  # raises CycleError on a cycle
    library_to_cli = [(m, d) for m, deps in graph.items() if m not in CLIS for d in deps if d in CLIS]
    assert not library_to_cli
    assert not {"demo", "train", "pipeline"} & {m for m, deps in graph.items() if "evaluate" in deps}
