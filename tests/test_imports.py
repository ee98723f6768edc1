"""The structure DESIGN.md asks for, checked from the source: `import gptkit` is cheap and side-effect free, the
module import graph (module- and function-level imports alike) has no cycle, the torch-free modules stay
torch-free, the model knows only its config, and no module or function outgrows its size."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "gptkit"
MODULES = {".".join(("gptkit", *p.relative_to(PKG).with_suffix("").parts)).removesuffix(".__init__"): p
           for p in sorted(PKG.rglob("*.py"))}
STDLIB_ONLY = {"bpe", "files", "datasets", "config", "hub", "tokenizer_files", "tokenizer_json"}
# Modules the MLX backend and the tokenizer/data tools use: neither they nor anything they import needs torch.
NO_TORCH = {"backend", "bpe", "checkpoint", "config", "data", "datasets", "engine", "files", "hellaswag", "hf",
            "hf_files", "hf_export", "hub", "loaders", "parallel", "plot", "pretrained", "run_setup", "runs",
            "serve.models", "serve.worker", "simple_tokenizers", "text_stream", "tokenizer", "tokenizer_files",
            "tokenizer_json", "tokenizer_parallel", "tokenizers"}
LAZY_TORCH = {"gptkit.hf_files"}  # imports torch inside one function, to read a legacy pytorch_model.bin only
MAX_MODULE_LINES, MAX_FUNCTION_LINES = 450, 60


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(imported module, at module level?) for every import in a file, gptkit's submodules resolved."""
    tree = ast.parse(path.read_text())
    top = {id(n) for n in tree.body}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, id(node) in top) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            out.append((node.module, id(node) in top))
            out += [(f"{node.module}.{a.name}", id(node) in top) for a in node.names
                    if f"{node.module}.{a.name}" in MODULES]  # from gptkit import checkpoint
    return out


GRAPH = {m: {name for name, _ in _imports(p) if name in MODULES and name != m} for m, p in MODULES.items()}
for _m in GRAPH:  # a package's __init__ is imported with its submodules; it imports nothing heavy (tested below)
    GRAPH[_m].discard("gptkit")
    GRAPH[_m].discard("gptkit.mlx")


def _cycle() -> list[str] | None:
    """A cycle in GRAPH as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(m, path):
        state[m] = 1
        for n in sorted(GRAPH[m]):
            if state.get(n) == 1:
                return path[path.index(n):] + [n]
            if n not in state and (found := visit(n, path + [n])):
                return found
        state[m] = 2
        return None

    for m in sorted(GRAPH):
        if m not in state and (found := visit(m, [m])):
            return found
    return None


def test_the_import_graph_has_no_cycle():
    assert _cycle() is None, f"import cycle: {' -> '.join(_cycle())}"


def test_the_cycle_finder_finds_a_cycle(monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "GRAPH", {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}})
    assert _cycle() == ["a", "b", "c", "a"]


def test_import_gptkit_pulls_no_heavy_modules():
    code = "import sys, gptkit; print(sorted(m for m in ('torch', 'mlx', 'numpy', 'tqdm') if m in sys.modules))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stdout.strip()) == (0, "[]"), r.stderr


def _closure(module: str) -> set[str]:
    seen, todo = set(), [module]
    while todo:
        for n in GRAPH[todo.pop()] - seen:
            seen.add(n)
            todo.append(n)
    return seen


@pytest.mark.parametrize("name", sorted(NO_TORCH))
def test_torch_free_modules_stay_torch_free(name):
    module = f"gptkit.{name}"
    for m in {module} | _closure(module):
        heavy = {i.split(".")[0] for i, top in _imports(MODULES[m]) if top or m not in LAZY_TORCH} & {"torch", "mlx"}
        assert not heavy, f"{module} must not need torch or mlx, but {m} (imported by it) imports {heavy}"


@pytest.mark.parametrize("name", sorted(STDLIB_ONLY))
def test_stdlib_only_modules(name):
    third_party = {i.split(".")[0] for i, _ in _imports(MODULES[f"gptkit.{name}"])}
    third_party -= set(sys.stdlib_module_names) | {"gptkit", "__future__"}
    assert not third_party, f"gptkit.{name} must use the standard library only, imports {third_party}"


def test_the_model_imports_only_its_config():
    # DESIGN: "The model imports neither data nor tokenizer"; files and hubs are gptkit.weights' business. Its one
    # other edge is the chunked loss, plain torch math that imports nothing of gptkit.
    assert GRAPH["gptkit.model"] == {"gptkit.config", "gptkit.losses"} and not GRAPH["gptkit.losses"]
    assert GRAPH["gptkit.mlx.model"] == {"gptkit.config"}
    assert GRAPH["gptkit.generate"] <= {"gptkit.engine"} and GRAPH["gptkit.engine"] == {"gptkit.config"}
    assert not GRAPH["gptkit.runtime"]


def test_public_torch_names_are_lazy():
    code = ("import sys, gptkit; assert 'torch' not in sys.modules; from gptkit import GPT, GPTConfig, from_pretrained; "
            "print(GPT.__module__, GPTConfig.__module__, from_pretrained.__module__)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert (r.returncode, r.stdout.split()) == (0, ["gptkit.model", "gptkit.config", "gptkit.weights"]), r.stderr


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("gptkit.mlx")))
def test_mlx_backend_never_imports_torch(module):
    assert "torch" not in {i.split(".")[0] for i, _ in _imports(MODULES[module])}


@pytest.mark.parametrize("module", sorted(m for m in MODULES if not m.startswith("gptkit.mlx")))
def test_torch_side_never_imports_mlx(module):
    assert "mlx" not in {i.split(".")[0] for i, _ in _imports(MODULES[module])}, f"{module} must not import mlx"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_sizes(module):
    """DESIGN: a module past ~400 lines or a function past ~60 is asking to be split (hard limits 450 and 60)."""
    source = MODULES[module].read_text()
    assert source.count("\n") <= MAX_MODULE_LINES, f"{module} has {source.count(chr(10))} lines"
    long = [f"{n.name} ({n.end_lineno - n.lineno + 1} lines)" for n in ast.walk(ast.parse(source))
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.end_lineno - n.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, f"{module}: functions over {MAX_FUNCTION_LINES} lines: {long}"


def _private_uses(path: Path) -> set[str]:
    """`from gptkit.x import _name` and `alias._name` where alias is a gptkit module: private names used across
    modules."""
    tree = ast.parse(path.read_text())
    aliases, out = {}, set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module.startswith("gptkit"):
            for a in node.names:
                if a.name.startswith("_") and not a.name.startswith("__"):
                    out.add(f"{node.module}.{a.name}")
                if f"{node.module}.{a.name}" in MODULES:
                    aliases[a.asname or a.name] = f"{node.module}.{a.name}"
        elif isinstance(node, ast.Import):
            aliases.update({a.asname: a.name for a in node.names if a.asname and a.name in MODULES})
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                and node.attr.startswith("_") and not node.attr.startswith("__")):
            out.add(f"{aliases[node.value.id]}.{node.attr}")
    return out


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_private_name_crosses_modules(module):
    assert not _private_uses(MODULES[module]), f"{module} uses another module's private names"
