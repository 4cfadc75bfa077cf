"""The house's borders, read from the source with `ast`: no import circles, and no import that points up.

Every import counts, also those inside functions (a lazy import is still a dependency, and it is how circles
hide). `docs/INTERFACES.md` draws the same rooms and arrows.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("data", "gan", "train", "generate", "evaluation")

# room → the rooms it may import (itself always allowed). The longest matching prefix names a module's room.
COMPUTE = ("data", "gan", "generate")
ALLOWED = {
    "data": (),
    "gan": ("data",),                                 # data.pretrained reads the projected D's frozen weights
    "train": ("data", "gan"),
    "generate": ("data", "gan"),
    "evaluation": (),                                 # the package docstring only
    "evaluation.cli_common": ("data",),               # shared CLI arguments: a leaf every room's cli may use
    "evaluation.cli": (),                             # dispatches by dotted name (importlib), imports no room
    "evaluation.callbacks": ("evaluation.metrics",),  # deprecated class_path, forwards to metrics.callbacks
    "evaluation.features": ("data", "evaluation.cli_common"),
    "evaluation.metrics": (*COMPUTE, "evaluation.features", "evaluation.cli_common"),
    "evaluation.personalisation": (*COMPUTE, "evaluation.features", "evaluation.metrics", "evaluation.cli_common"),
    "evaluation.slot": (*COMPUTE, "evaluation.features", "evaluation.metrics", "evaluation.personalisation",
                        "evaluation.cli_common"),
    "evaluation.report": ("data",),                   # reads files other stages wrote; imports nothing that computes
}


def module_files(root: Path) -> dict[str, Path]:
    mods = {}
    for pkg in PACKAGES:
        for f in sorted((root / pkg).rglob("*.py")):
            parts = f.relative_to(root).with_suffix("").parts
            mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return mods


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules `name` imports: `from a.b import c` counts as a.b.c when that is a module, else a.b."""
    is_pkg = path.name == "__init__.py"
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")[: len(name.split(".")) - node.level + (1 if is_pkg else 0)]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in known:  # `import data.io.x` → the deepest project module named
                t = t.rpartition(".")[0]
            if t and t != name:
                out.add(t)
    return out


def graph(root: Path) -> dict[str, set[str]]:
    mods = module_files(root)
    return {name: imports_of(name, path, set(mods)) for name, path in mods.items()}


def room(module: str) -> str:
    return max((r for r in ALLOWED if module == r or module.startswith(r + ".")), key=len)


def upward_imports(g: dict[str, set[str]]) -> list[str]:
    bad = []
    for src, targets in sorted(g.items()):
        mine = room(src)
        for dst in sorted(targets):
            theirs = room(dst)
            if theirs != mine and theirs not in ALLOWED[mine]:
                bad.append(f"{src} imports {dst} ({mine} may import only {', '.join(ALLOWED[mine]) or 'itself'})")
    return bad


def circles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def test_the_graph_is_read():
    g = graph(ROOT)
    assert {"data.io", "gan.generator", "generate.loading", "evaluation.metrics.compute", "evaluation.slot.run"} <= set(g)
    assert "data.io" in g["generate.run"] and "evaluation.features.domain" in g["evaluation.features.domain_train"]


def test_no_import_circles():
    assert circles(graph(ROOT)) == []


def test_no_import_points_up():
    assert upward_imports(graph(ROOT)) == []


def test_every_module_has_a_room():
    assert all(room(m) in ALLOWED for m in graph(ROOT))


@pytest.mark.parametrize("files, problem", [
    ({"data/a.py": "from data import b\n", "data/b.py": "def f():\n    import data.a\n"}, "circle"),
    ({"data/a.py": "from gan.x import y\n", "gan/x.py": "y = 1\n"}, "up"),
    ({"evaluation/metrics/m.py": "from evaluation.slot import s\n", "evaluation/slot/s.py": ""}, "up"),
    ({"evaluation/report/r.py": "from ..metrics import m\n", "evaluation/metrics/m.py": ""}, "up"),
])
def test_the_checks_catch_what_they_claim(tmp_path, files, problem):
    for rel, text in files.items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        for folder in [p.parent, *p.parent.parents]:
            if folder == tmp_path:
                break
            (folder / "__init__.py").touch()
        p.write_text(text)
    g = graph(tmp_path)
    assert (circles(g) if problem == "circle" else upward_imports(g)), f"{problem} not found in {files}"
