"""Imports point down the layers, never up.

Every module under ``src/forgetlab`` is parsed (``ast``) and every ``import`` of a forgetlab
module is an edge, wherever it stands: module level, inside a function, under
``TYPE_CHECKING``. A module belongs to the layer of the longest prefix in :data:`LAYERS`; an edge
from layer i to layer j > i fails. Layers, lowest first:

====  ==================  ==========================================================================
  0   foundation          ``_validation`` (array, range and pydantic-error checks),
                          ``progress`` (the progress bar), ``parallel`` (threads over
                          independent runs, the core count), ``vocabulary`` (the one table of
                          method names and knobs that both registries read), ``seeding``
                          (many seed-sequence generators from one vectorised hash)
  1   geometry            ``gaussian``, ``mixture``, ``kmixture``: the model objects
  2   config              ``config``: the validated mixture problem; it builds the mixture and
                          checks D(a, b) with the geometry, so it sits on the geometry
  3   engine              ``quadrature``, ``population``, ``kpopulation``: exact expectations;
                          ``optim``: the gd/Adam stepper (imports nothing of the package)
  4   theory, methods     ``theory``, ``methods`` (rewards included): predictions and gradients
  5   run config          ``simconfig``: a method by name and its knobs, checked against the
                          method registry, so it sits on the methods
  6   measures            ``metrics``, ``trajectory``: drift, overlap, snapshots of a state; the
                          loop records them at every stride, so they sit under the loop
  7   dynamics            ``dynamics``, ``continual``, ``presets``, ``planner``, ``chen2025``
                          (its own model and loop), ``lm`` (the torch side: its own model,
                          losses, methods and loop, importing nothing of the mixture)
  8   sweep               ``sweep``: grids, executors, store, plots of a stored sweep
  9   claims              ``claims``: checks and figure *data* only (no drawing)
 10   report              ``report``: figures and the HTML report
 11   api                 ``forgetlab`` (the package root: lazy re-exports, loads nothing)
 12   cli                 ``cli``: the command line
====  ==================  ==========================================================================

Within a layer imports are free, but the graph of top-level units (``forgetlab.methods``,
``forgetlab.theory``, ``forgetlab.dynamics``, ...) must have no cycle. Claims are data: no
module under ``claims`` imports matplotlib. The package root is light: importing a low module
does not load a higher one (checked in a fresh interpreter).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

LAYERS: dict[str, int] = {
    "forgetlab._validation": 0, "forgetlab.progress": 0, "forgetlab.parallel": 0,
    "forgetlab.vocabulary": 0, "forgetlab.seeding": 0,
    "forgetlab.gaussian": 1, "forgetlab.mixture": 1, "forgetlab.kmixture": 1,
    "forgetlab.config": 2,
    "forgetlab.quadrature": 3, "forgetlab.population": 3, "forgetlab.kpopulation": 3,
    "forgetlab.optim": 3,
    "forgetlab.theory": 4, "forgetlab.methods": 4,
    "forgetlab.simconfig": 5,
    "forgetlab.metrics": 6, "forgetlab.trajectory": 6,
    "forgetlab.dynamics": 7, "forgetlab.continual": 7, "forgetlab.presets": 7,
    "forgetlab.planner": 7, "forgetlab.chen2025": 7, "forgetlab.lm": 7,
    "forgetlab.sweep": 8,
    "forgetlab.claims": 9,
    "forgetlab.report": 10,
    "forgetlab": 11,
    "forgetlab.cli": 12,
}


@dataclass(frozen=True)
class Edge:
    """``source`` imports ``target`` at ``line`` of ``source``'s file."""

    source: str
    target: str
    line: int


def modules(src: Path = SRC) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package (packages by __init__)."""
    found = {}
    for path in sorted((src / "forgetlab").rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def import_edges(mods: dict[str, Path]) -> list[Edge]:
    """Every import of a forgetlab module, at any depth of each file's syntax tree.

    ``from pkg import name`` is an edge to ``pkg.name`` when that is a module, else to ``pkg``;
    relative imports are resolved against the importing module's package.
    """
    edges = []
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in mods else base
                           for alias in node.names]
            else:
                continue
            edges += [Edge(name, t, node.lineno) for t in targets
                      if t == "forgetlab" or t.startswith("forgetlab.")]
    return edges


def layer_of(module: str) -> int:
    """The layer of the longest prefix of ``module`` in :data:`LAYERS` (KeyError if none; the
    root's entry covers the root only)."""
    if module == "forgetlab":
        return LAYERS[module]
    parts = module.split(".")
    for end in range(len(parts), 1, -1):
        prefix = ".".join(parts[:end])
        if prefix in LAYERS:
            return LAYERS[prefix]
    raise KeyError(module)


def unit_of(module: str) -> str:
    """The top-level unit of a module: ``forgetlab.methods.rl`` -> ``forgetlab.methods``."""
    return ".".join(module.split(".")[:2])


def upward(edges: list[Edge]) -> list[str]:
    """'source:line -> target (layer i -> j)' for every edge that points up."""
    return [f"{e.source}:{e.line} -> {e.target} (layer {layer_of(e.source)} -> "
            f"{layer_of(e.target)})" for e in edges if layer_of(e.target) > layer_of(e.source)]


def unit_cycle(edges: list[Edge]) -> list[str]:
    """One cycle of the graph of top-level units, as a path, or [] if it has none."""
    graph: dict[str, set[str]] = {}
    for e in edges:
        a, b = unit_of(e.source), unit_of(e.target)
        if a != b:
            graph.setdefault(a, set()).add(b)
    state: dict[str, int] = {}  # 1 on the current path, 2 finished
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = 2
        path.pop()
        return []

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return []


@pytest.fixture(scope="module")
def edges() -> list[Edge]:
    return import_edges(modules())


def test_every_module_has_a_layer() -> None:
    for name in modules():
        layer_of(name)


def test_imports_point_down(edges: list[Edge]) -> None:
    assert upward(edges) == [], "\n".join(upward(edges))


def test_top_level_units_have_no_cycle(edges: list[Edge]) -> None:
    assert unit_cycle(edges) == [], " -> ".join(unit_cycle(edges))


def test_claims_do_not_draw() -> None:
    drawing = []
    for name, path in modules().items():
        if layer_of(name) == LAYERS["forgetlab.claims"]:
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                         [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
                drawing += [f"{name}:{node.lineno}" for n in names if n.split(".")[0] ==
                            "matplotlib"]
    assert drawing == []


@pytest.mark.parametrize("module", ["forgetlab.config", "forgetlab.methods", "forgetlab.theory"])
def test_importing_a_low_module_loads_nothing_above_it(module: str) -> None:
    code = (f"import sys, {module}\n"
            "print(' '.join(m for m in sys.modules if m.startswith('forgetlab')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={"PYTHONPATH": str(SRC)}).stdout.split()
    own = layer_of(module)
    assert [m for m in out if m in modules() and m != "forgetlab" and layer_of(m) > own] == []


def test_resolving_a_configuration_does_not_import_scipy_stats() -> None:
    """scipy.stats costs about a second to import, which every sweep worker would pay on its
    first configuration (the method registry loads every method)."""
    code = ("import sys\n"
            "from forgetlab.sweep.engine import DynamicsRunner\n"
            "DynamicsRunner().resolve({'method': 'ttt-discover', 'regime': 'finite'})\n"
            "print('scipy.stats' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={"PYTHONPATH": str(SRC)}).stdout
    assert out.split() == ["False"]


# -- the checks above can fail: each is fed a graph with one planted fault ---------------------

def _plant(tmp_path: Path, files: dict[str, str]) -> dict[str, Path]:
    for rel, text in files.items():
        path = tmp_path / "forgetlab" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return modules(tmp_path)


def test_an_upward_import_inside_a_function_is_caught(tmp_path: Path) -> None:
    mods = _plant(tmp_path, {
        "__init__.py": "",
        "mixture.py": "def f():\n    from forgetlab.dynamics import simulate\n",
        "dynamics.py": "from forgetlab import mixture\n",
        "methods/__init__.py": "", "methods/rl.py": "from ..sweep import spec\n",
        "sweep/__init__.py": "", "sweep/spec.py": "",
    })
    assert upward(import_edges(mods)) == [
        "forgetlab.methods.rl:1 -> forgetlab.sweep.spec (layer 4 -> 8)",
        "forgetlab.mixture:2 -> forgetlab.dynamics (layer 1 -> 7)",
    ]


def test_a_cycle_within_a_layer_is_caught(tmp_path: Path) -> None:
    mods = _plant(tmp_path, {
        "__init__.py": "", "theory/__init__.py": "import forgetlab.methods.rl\n",
        "methods/__init__.py": "", "methods/rl.py": "from forgetlab.theory import rho\n",
    })
    assert unit_cycle(import_edges(mods)) == ["forgetlab.methods", "forgetlab.theory",
                                              "forgetlab.methods"]
