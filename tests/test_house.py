"""The house stays acyclic and small: no import circle in kolmo (imports inside functions count),
no module imports the package above it, and every module stays under 350 lines."""

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


def test_modules_stay_small():
    sizes = {m: len(f.read_text().splitlines()) for m, f in modules().items()}
    assert max(sizes.values()) < 350, sorted(sizes.items(), key=lambda kv: -kv[1])[:3]
