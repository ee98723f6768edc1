"""HF GPT-2, Llama and Qwen3 folders in the MLX backend: the same logits as transformers (atol 1e-4, fp32) and the
same greedy ids, from the same random folders as tests/hf/test_arch.py.

Skipped, with the reason, where mlx is not installed; CI sets GPTKIT_REQUIRE_MLX=1, which turns that into a failure.
"""

import os

import numpy as np
import pytest
import torch

if os.environ.get("GPTKIT_REQUIRE_MLX") == "1":
    import mlx.core  # noqa: F401 (CI: a missing mlx must fail, not skip)
mx = pytest.importorskip("mlx.core", reason="the MLX backend is optional: pip install 'gptkit[mlx]'")
pytest.importorskip("transformers", reason="test dependency: pip install -e '.[dev]'")

from tests.hf.test_arch import IMPORTS, V, hf_model  # noqa: E402

from gptkit.mlx import generate as mg  # noqa: E402
from gptkit.mlx import weights as mw  # noqa: E402


@pytest.mark.parametrize("case", ["gpt2", "llama-gqa-untied", "llama-tied-mha-bias", "qwen3-head-dim-tied",
                                  "qwen3-untied-sharded"])
def test_hf_folders_in_mlx_match_transformers(tmp_path, case):
    arch, kw = IMPORTS[case]
    hf = hf_model(tmp_path / "hf", arch, **kw)
    model, _ = mw.load_model(tmp_path / "hf")
    idx = torch.randint(0, V, (2, 20), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        theirs = hf(idx).logits.numpy()
    ours = np.array(model(mx.array(idx.numpy())))
    assert np.abs(ours - theirs).max() < 1e-4
    seq = idx[:1, :5]
    with torch.no_grad():
        for _ in range(12):
            seq = torch.cat([seq, hf(seq).logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    got = mg.generate(model, idx[0, :5].tolist(), 12, temperature=0)
    assert got == seq[0, 5:].tolist()
