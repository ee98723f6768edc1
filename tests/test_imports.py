"""The structure DESIGN.md asks for, checked from the source: the folder listing is the architecture (at most 16
entries at gptkit's top level, no module names that differ by a plural or a prefix alone), the import graph has no
cycle between modules nor between top-level folders, torch, mlx and FastAPI are imported only in the folders named
for them, `import gptkit` is cheap and side-effect free, the model knows only its config, and no module or function
outgrows its size nor any line 120 columns."""

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "gptkit"
MODULES = {".".join(("gptkit", *p.relative_to(PKG).with_suffix("").parts)).removesuffix(".__init__"): p
           for p in sorted(PKG.rglob("*.py"))}
PACKAGES = {m for m, p in MODULES.items() if p.name == "__init__.py"}
# The standard library only: the foundations, the tokenizer's pure-Python core and its file formats, and the lists of
# named downloads.
STDLIB_ONLY = {"config", "files", "pool", "tokenizer.bpe", "tokenizer.formats", "tokenizer.hf_json", "data.named",
               "hf.hub"}
# Where each heavy dependency may be imported (any module under these folders, or these modules).
ALLOWED = {"torch": ("gptkit.torch",), "mlx": ("gptkit.mlx",), "fastapi": ("gptkit.serve",),
           "uvicorn": ("gptkit.serve", "gptkit.cli.serve")}
LAZY_TORCH = {"gptkit.hf.tensors"}  # imports torch inside one function, to read a legacy pytorch_model.bin only
# The folders that never import torch or mlx, not even through what they import (the MLX backend and the tokenizer
# and data tools use them): everything but the two framework folders, the CLI (which imports a backend in the
# subcommand that needs it) and gptkit/__init__ (whose torch names are lazy).
FRAMEWORK_FREE = ("gptkit.config", "gptkit.files", "gptkit.pool", "gptkit.tokenizer", "gptkit.data",
                  "gptkit.training", "gptkit.generate", "gptkit.hf", "gptkit.serve")
# Packages whose __init__ re-exports names for users; gptkit's own modules import from the defining module instead.
REEXPORTS = {"gptkit", "gptkit.tokenizer"}
MAX_TOP_LEVEL, MAX_MODULE_LINES, MAX_FUNCTION_LINES, MAX_COLUMNS = 16, 600, 60, 120


def _under(module: str, prefixes) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(imported module, at module level?) for every import in a file; `from gptkit.pkg import submodule` is an edge
    to the submodule (not to the package's __init__)."""
    tree = ast.parse(path.read_text())
    top = {id(n) for n in tree.body}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, id(node) in top) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            subs = [f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in MODULES]
            out += [(m, id(node) in top) for m in subs]
            if len(subs) < len(node.names):
                out.append((node.module, id(node) in top))
    return out


GRAPH = {m: {name for name, _ in _imports(p) if name in MODULES and name != m} for m, p in MODULES.items()}


def _folder(module: str) -> str:
    """The top-level entry a module belongs to. Example: gptkit.training.run -> training; gptkit.config -> config"""
    return module.split(".")[1] if "." in module else module


FOLDERS = {}
for _m, _edges in GRAPH.items():
    if _m != "gptkit":  # the root re-exports for users; nothing inside gptkit imports it but for __version__
        FOLDERS.setdefault(_folder(_m), set()).update(_folder(n) for n in _edges if n != "gptkit")
for _f in FOLDERS:
    FOLDERS[_f].discard(_f)


def _cycle(graph: dict[str, set[str]] | None = None) -> list[str] | None:
    """A cycle in `graph` (default GRAPH) as [a, b, ..., a], or None."""
    graph = GRAPH if graph is None else graph
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(m, path):
        state[m] = 1
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return path[path.index(n):] + [n]
            if n not in state and (found := visit(n, path + [n])):
                return found
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m, [m])):
            return found
    return None


def test_the_import_graph_has_no_cycle():
    assert _cycle() is None, f"import cycle: {' -> '.join(_cycle())}"


def test_the_folders_import_each_other_without_a_cycle():
    """Folder level: tokenizer -> data -> training -> torch/mlx -> cli, never back (a module-level cycle is not needed
    for two folders to lean on each other)."""
    assert _cycle(FOLDERS) is None, f"folder cycle: {' -> '.join(_cycle(FOLDERS))}"


def test_the_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycle(graph) == ["a", "b", "c", "a"] and _cycle({"a": {"b"}, "b": set()}) is None


def test_the_folder_listing_is_short():
    entries = sorted(p.name for p in PKG.iterdir() if p.name != "__pycache__")
    assert len(entries) <= MAX_TOP_LEVEL, f"{len(entries)} entries at gptkit's top level: {entries}"


def _twins(names: set[str]) -> list[tuple[str, str]]:
    """Names that differ by a plural or a prefix alone. Example: {"tokenizer", "tokenizers", "hf_files", "files",
    "hf"} -> [("files", "hf_files"), ("tokenizer", "tokenizers")]"""
    return sorted((a, b) for a in names for b in names if a != b and (b == a + "s" or b.endswith("_" + a)))


def test_no_two_module_names_are_twins():
    assert _twins({"tokenizer", "tokenizers", "hf_files", "files", "hf"}) == [("files", "hf_files"),
                                                                            ("tokenizer", "tokenizers")]
    names = {m.rsplit(".", 1)[-1] for m in MODULES if m != "gptkit"} - {"__main__"}
    assert not _twins(names)


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


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _under(m, FRAMEWORK_FREE)))
def test_framework_free_folders_stay_framework_free(module):
    for m in {module} | _closure(module):
        heavy = {i.split(".")[0] for i, top in _imports(MODULES[m]) if top or m not in LAZY_TORCH} & {"torch", "mlx"}
        assert not heavy, f"{module} must not need torch or mlx, but {m} (imported by it) imports {heavy}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_heavy_dependencies_only_in_their_folders(module):
    for name, _ in _imports(MODULES[module]):
        root = name.split(".")[0]
        if root in ALLOWED and not (module in LAZY_TORCH and root == "torch"):
            assert _under(module, ALLOWED[root]), f"{module} imports {root}, allowed only under {ALLOWED[root]}"


@pytest.mark.parametrize("name", sorted(STDLIB_ONLY))
def test_stdlib_only_modules(name):
    third_party = {i.split(".")[0] for i, _ in _imports(MODULES[f"gptkit.{name}"])}
    third_party -= set(sys.stdlib_module_names) | {"gptkit", "__future__"}
    assert not third_party, f"gptkit.{name} must use the standard library only, imports {third_party}"


def test_modules_import_names_from_where_they_are_defined():
    """gptkit/__init__ and gptkit/tokenizer/__init__ re-export for users; gptkit's modules import from the module that
    defines a name (the package's version aside), so the graph sees the real edges."""
    bad = [f"{m} imports from {n}" for m, p in MODULES.items() if m not in REEXPORTS
           for n, _ in _imports(p) if n in REEXPORTS and n != "gptkit"]
    bad += [f"{m}: from gptkit import {a.name}" for m, p in MODULES.items() if m not in REEXPORTS
            for node in ast.walk(ast.parse(p.read_text())) if isinstance(node, ast.ImportFrom) and node.module == "gptkit"
            for a in node.names if a.name != "__version__" and f"gptkit.{a.name}" not in MODULES]
    assert not bad, bad


def test_the_model_imports_only_its_config():
    # DESIGN: "The model imports neither data nor tokenizer"; files and hubs are gptkit.torch.weights' business. Its
    # one other edge is the chunked loss, plain torch math that imports nothing of gptkit.
    assert GRAPH["gptkit.torch.model"] == {"gptkit.config", "gptkit.torch.losses"} and not GRAPH["gptkit.torch.losses"]
    assert GRAPH["gptkit.mlx.model"] == {"gptkit.config"}
    assert GRAPH["gptkit.torch.generate"] <= {"gptkit.generate.engine"}
    assert GRAPH["gptkit.generate.engine"] == {"gptkit.config"}
    assert not GRAPH["gptkit.torch.runtime"]


def test_public_names_are_lazy():
    code = ("import sys, gptkit; assert 'torch' not in sys.modules; "
            "from gptkit import GPT, GPTConfig, from_pretrained, train; "
            "print(GPT.__module__, GPTConfig.__module__, from_pretrained.__module__, train.__module__)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert (r.returncode, r.stdout.split()) == (0, ["gptkit.torch.model", "gptkit.config", "gptkit.torch.weights",
                                                    "gptkit.training.run"]), r.stderr


@pytest.mark.parametrize("module", sorted(MODULES))
def test_sizes(module):
    """DESIGN: a module past ~400 lines or a function past ~60 is asking to be split (hard limits 600 and 60), and
    no line (code, docstring or comment) is wider than 120 columns."""
    source = MODULES[module].read_text()
    assert source.count("\n") <= MAX_MODULE_LINES, f"{module} has {source.count(chr(10))} lines"
    long = [f"{n.name} ({n.end_lineno - n.lineno + 1} lines)" for n in ast.walk(ast.parse(source))
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.end_lineno - n.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, f"{module}: functions over {MAX_FUNCTION_LINES} lines: {long}"
    wide = [i for i, line in enumerate(source.splitlines(), 1) if len(line) > MAX_COLUMNS]
    assert not wide, f"{module}: lines over {MAX_COLUMNS} columns: {wide}"


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


def _defined(module: str) -> set[str]:
    """The top-level names a module defines or imports (what `module.name` can point at)."""
    names = set()
    for node in ast.parse(MODULES[module].read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return names


def _stale_pointers(text: str) -> list[str]:
    """The `gptkit.x.y` references in a text whose module does not exist, or whose next name that module does not
    define. Example: "see gptkit.runs.Run and gptkit.training.run.Run" -> ["gptkit.runs.Run"]"""
    bad = []
    for ref in sorted(set(re.findall(r"(?<![\w.])gptkit(?:\.\w+)+", text))):  # not a file name: .gptkit.lock
        parts = ref.split(".")
        k = max((i for i in range(1, len(parts) + 1) if ".".join(parts[:i]) in MODULES), default=0)
        module, rest = ".".join(parts[:k]), parts[k:]
        if not k or (rest and rest[0] not in _defined(module) and f"{module}.{rest[0]}" not in MODULES):
            bad.append(ref)
    return bad


@pytest.mark.parametrize("path", sorted([*PKG.rglob("*.py"), *PKG.parent.glob("docs/*.md"), PKG.parent / "README.md"]),
                         ids=lambda p: str(p.relative_to(PKG.parent)))
def test_every_pointer_to_a_module_points_at_one(path):
    assert _stale_pointers("see gptkit.runs.Run and gptkit.training.run.Run") == ["gptkit.runs.Run"]
    text = path.read_text(encoding="utf-8")
    assert not _stale_pointers(text), "stale pointers"
    files = re.findall(r"(?<![\w/.])((?:gptkit|tests|bench)/[\w/*]+\.(?:py|toml|md))", text)
    assert not [f for f in files if not list(PKG.parent.glob(f))], "pointers to files that are not there"
