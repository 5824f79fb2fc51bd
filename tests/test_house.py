"""The house stays acyclic and layered: no import circle in kolmo (imports inside functions count),
no module imports the package above it, each layer of kolmo.lm imports only the layers below it,
framing imports nothing of kolmo but its errors, and no function runs past 60 lines without
saying why in its docstring."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "kolmo"


def modules():
    out = {}
    for f in ROOT.rglob("*.py"):
        name = ".".join(f.relative_to(ROOT.parent).with_suffix("").parts)
        out[name[:-len(".__init__")] if name.endswith(".__init__") else name] = f
    return out


def import_graph():
    mods = modules()
    graph = {m: set() for m in mods}
    for m, f in mods.items():
        pkg = m if f.name == "__init__.py" else m.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = pkg.split(".")[:len(pkg.split(".")) - node.level + 1] if node.level else []
                target = ".".join(base + ([node.module] if node.module else []))
                subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in mods]
                graph[m] |= {c for c in (subs or [target]) if c in mods and c != m}
            elif isinstance(node, ast.Import):
                graph[m] |= {a.name for a in node.names if a.name in mods and a.name != m}
    return graph


def test_no_import_circle_and_nothing_imports_the_package():
    graph = import_graph()
    assert not [m for m, deps in graph.items() if "kolmo" in deps], "a module imports the package above it"
    state, path, cycles = {}, [], []

    def visit(u):
        state[u] = 1
        path.append(u)
        for v in sorted(graph[u]):
            if state.get(v) == 1:
                cycles.append(path[path.index(v):] + [v])
            elif not state.get(v):
                visit(v)
        path.pop()
        state[u] = 2

    for m in sorted(graph):
        if not state.get(m):
            visit(m)
    assert not cycles, "import circles: " + "; ".join(" -> ".join(c) for c in cycles)


#: kolmo.lm's layers, bottom up (kolmo/lm/__init__.py): a module may import its own layer and those below
LAYERS = {"kolmo.lm.kernels": 0, "kolmo.lm.machine": 0, "kolmo.lm.models": 1, "kolmo.lm.scoring": 2,
          "kolmo.lm.coding": 3, "kolmo.lm.mixing": 4, "kolmo.lm.settings": 5}
#: kolmo's base modules, which any layer may import
BASE = ("kolmo.errors", "kolmo.cache", "kolmo.progress", "kolmo.framing", "kolmo._version", "kolmo.options")


def layer(module: str):
    for prefix, rank in LAYERS.items():
        if module == prefix or module.startswith(prefix + "."):
            return rank
    return None


def test_each_layer_imports_only_the_layers_below_it():
    graph = import_graph()
    wrong = []
    for m, deps in graph.items():
        rank = layer(m)
        if rank is None:
            continue
        for d in deps:
            if d in ("kolmo.lm",) or d.startswith(BASE):
                continue
            if layer(d) is None or layer(d) > rank:
                wrong.append(f"{m} -> {d}")
    assert not wrong, "imports against the layers: " + "; ".join(sorted(wrong))
    assert {m for m in graph if m.startswith("kolmo.lm.") and layer(m) is None} == set(), "a module of no layer"


def test_framing_imports_nothing_of_kolmo_but_its_errors():
    graph = import_graph()
    deps = {d for m, ds in graph.items() if m.startswith("kolmo.framing") for d in ds}
    assert {d for d in deps if not d.startswith("kolmo.framing")} <= {"kolmo.errors"}


def test_no_function_runs_past_60_lines_without_a_reason():
    """A longer function says why in its docstring ("long: ...")."""
    long = []
    for m, f in modules().items():
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 60:
                if "long:" not in (ast.get_docstring(node) or ""):
                    long.append(f"{m}.{node.name} ({node.end_lineno - node.lineno + 1} lines)")
    assert not long, long
