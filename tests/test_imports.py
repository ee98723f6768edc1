"""`import gptkit` is cheap and side-effect free, and module imports follow DESIGN.md's direction."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "gptkit"
STDLIB_ONLY = {"bpe", "files", "datasets", "config"}
NO_TORCH = {"bpe", "files", "datasets", "config", "tokenizer", "simple_tokenizers", "pretrained", "data", "checkpoint"}


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
