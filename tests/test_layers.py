"""The import graph keeps the layers of docs/ARCHITECTURE.md: no module imports a higher layer, no import circle
between modules, the model layer and kernels import neither gradio nor yaml, and ui/ imports only the services.
Every import counts, module-level or inside a function."""
import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Lowest first. A module's layer is that of the longest prefix naming it; each may import its own layer and below.
LAYERS = [
    ("kernels",),
    ("rwkv_app.errors", "rwkv_app.models", "rwkv_app.core", "rwkv_app.tokenizers", "rwkv_app.weights"),
    ("rwkv_app.engine", "rwkv_app.state_tree", "rwkv_app.train"),
    ("rwkv_app.services", "rwkv_app.openai_api", "rwkv_app.cli", "rwkv_app.__main__"),
    ("rwkv_app.ui",),
]
MODEL_LAYER = ("kernels", "rwkv_app.errors", "rwkv_app.models", "rwkv_app.tokenizers", "rwkv_app.weights",
               "rwkv_app.core.generation", "rwkv_app.core.generation_inputs", "rwkv_app.core.sampling",
               "rwkv_app.core.stopping", "rwkv_app.core.outputs")  # core.presets reads YAML: a service's input


def modules() -> dict[str, Path]:
    found = {}
    for top in ("kernels", "rwkv_app"):
        for path in (ROOT / top).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(name: str, path: Path, known: dict) -> set[str]:
    """The modules (of this repository, or the top-level name of any other) that `name` imports."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            out.add(base)
            out |= {f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in known}
    return {m if m in known else m.split(".")[0] for m in out}


def layer_of(name: str) -> int | None:
    best = None
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (name == prefix or name.startswith(prefix + ".")) and (best is None or len(prefix) > len(best[1])):
                best = (index, prefix)
    return None if best is None else best[0]


GRAPH = {name: imports(name, path, modules()) for name, path in modules().items()}


def test_no_module_imports_a_higher_layer():
    bad = [(a, b) for a, deps in GRAPH.items() for b in deps
           if b in GRAPH and layer_of(a) is not None and layer_of(b) is not None and layer_of(b) > layer_of(a)]
    assert not bad, bad


def test_every_module_has_a_layer():
    assert [m for m in GRAPH if layer_of(m) is None and m != "rwkv_app"] == []


def test_the_model_layer_and_kernels_import_neither_gradio_nor_yaml():
    bad = [(m, d) for m, deps in GRAPH.items() if m.startswith(MODEL_LAYER) for d in deps & {"gradio", "yaml"}]
    assert not bad, bad


def test_the_ui_imports_only_the_services_gradio_and_the_standard_library():
    allowed = ("rwkv_app.services", "rwkv_app.ui", "rwkv_app.errors")
    bad = [(m, d) for m, deps in GRAPH.items() if m.startswith("rwkv_app.ui") for d in deps
           if d.startswith("rwkv_app") and not d.startswith(allowed) or d in ("torch", "kernels")]
    assert not bad, bad


def test_there_is_no_import_circle():
    """No module reaches itself through the graph (a package's __init__ importing its own submodules, and a
    submodule importing its package, are not counted: Python runs those in a fixed order)."""
    edges = {m: {d for d in deps if d in GRAPH and not m.startswith(d + ".") and not d.startswith(m + ".")}
             for m, deps in GRAPH.items()}
    for start in edges:
        parents, stack = {}, list(edges[start])
        for d in stack:
            parents[d] = start
        while stack:
            current = stack.pop()
            if current == start:
                path, node = [start], parents[start]
                while node != start:
                    path.append(node)
                    node = parents[node]
                raise AssertionError("import circle: " + " <- ".join(path + [start]))
            for nxt in edges[current]:
                if nxt not in parents:
                    parents[nxt] = current
                    stack.append(nxt)


def test_the_ui_gets_plain_data_not_trees_or_tensors():
    """UI callbacks go through the visitor session's methods: they never reach into its tree or a tensor."""
    reach = re.compile(r"session\.tree\b|\.state_at\(|\bimport torch\b|\.model\.")
    bad = [(path.name, match.group(0)) for path in (ROOT / "rwkv_app" / "ui").glob("*.py")
           for match in reach.finditer(path.read_text(encoding="utf-8"))]
    assert not bad, bad
