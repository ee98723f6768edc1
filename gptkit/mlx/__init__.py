"""The MLX backend: gptkit's GPT in Apple's MLX (Metal on Apple silicon; `mlx[cpu]` on Linux).

Same config (gptkit.config), same parameter names, same checkpoint files (gptkit.training.checkpoint, numpy +
safetensors) as the PyTorch backend, so a run trained with one samples with the other. Never imports torch.
Install with `pip install "gptkit[mlx]"`. Modules: model.py (GPT, Bigram), weights.py (weights in and out), generate.py
(the engine), optim.py, backend.py (MLXBackend).
"""

from __future__ import annotations

INSTALL_HINT = ('the MLX backend needs mlx: pip install "gptkit[mlx]" (on Linux this installs "mlx[cpu]"; '
                'on Apple silicon, mlx with Metal)')


def require_mlx() -> None:
    """Raise ValueError with the install command when mlx is not importable."""
    import importlib.util

    if importlib.util.find_spec("mlx") is None or importlib.util.find_spec("mlx.core") is None:
        raise ValueError(INSTALL_HINT)
