"""`import gptkit` is cheap and side-effect free, and module imports follow DESIGN.md's direction."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "gptkit"
STDLIB_ONLY = {"bpe", "files", "datasets", "config", "hub"}
NO_TORCH = {"bpe", "files", "datasets", "config", "hub", "runs", "hellaswag", "tokenizer", "simple_tokenizers", "pretrained", "data", "checkpoint",
            "loaders", "parallel", "plot"}
# The model knows only its config (DESIGN: "The model imports neither data nor tokenizer").
# GPT.from_pretrained imports the HF reader and the checked weight loader inside the method (no I/O at import).
GPTKIT_IMPORTS = {"model": {"gptkit.config", "gptkit.hf", "gptkit.weights"}, "sample": {"gptkit.config"},
                  "runtime": set()}


def _gptkit_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("gptkit"):
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names |= {a.name for a in node.names if a.name.startswith("gptkit")}
    return names


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_import_gptkit_pulls_no_heavy_modules():
    code = "import sys, gptkit; print(sorted(m for m in ('torch', 'mlx', 'numpy', 'tqdm') if m in sys.modules))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stdout.strip()) == (0, "[]")


@pytest.mark.parametrize("module", sorted(p.stem for p in PKG.glob("*.py")))
def test_dependency_direction(module):
    imported = _imports(PKG / f"{module}.py")
    if module in STDLIB_ONLY:
        third_party = imported - set(sys.stdlib_module_names) - {"gptkit", "__future__"}
        assert not third_party, f"{module} must use the standard library only, imports {third_party}"
    if module in NO_TORCH:
        assert not imported & {"torch", "mlx"}, f"{module} must not import torch or mlx"
    if module in GPTKIT_IMPORTS:
        extra = _gptkit_imports(PKG / f"{module}.py") - GPTKIT_IMPORTS[module]
        assert not extra, f"{module} must not import {extra}"


def test_public_torch_names_are_lazy():
    code = ("import sys, gptkit; assert 'torch' not in sys.modules; from gptkit import GPT, GPTConfig; "
            "print(GPT.__module__, GPTConfig.__module__)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert (r.returncode, r.stdout.split()) == (0, ["gptkit.model", "gptkit.config"]), r.stderr


@pytest.mark.parametrize("module", sorted(p.stem for p in (PKG / "mlx").glob("*.py")))
def test_mlx_backend_never_imports_torch(module):
    imported = _imports(PKG / "mlx" / f"{module}.py")
    assert "torch" not in imported, f"gptkit.mlx.{module} must not import torch"


@pytest.mark.parametrize("module", sorted(p.stem for p in PKG.glob("*.py")))
def test_torch_side_never_imports_mlx(module):
    assert "mlx" not in _imports(PKG / f"{module}.py"), f"gptkit.{module} must not import mlx (gptkit.mlx does)"
