"""gptkit: a GPT toolkit built from scratch (tokenizer, data, model, training, sampling).

Importing gptkit is cheap and side-effect free: it never imports torch or mlx.
"""

from gptkit.tokenizer import CharTokenizer, Tokenizer, WordTokenizer, get_tokenizer, load_tokenizer

__version__ = "0.1.0"
__all__ = ["GPT", "GPTConfig", "Bigram", "CharTokenizer", "Tokenizer", "WordTokenizer", "from_pretrained",
           "get_tokenizer", "load_tokenizer", "train", "__version__"]

# Names whose modules import torch (or read files): loaded on first use, so `import gptkit` stays light.
_LAZY = {"GPT": "gptkit.torch.model", "Bigram": "gptkit.torch.model", "GPTConfig": "gptkit.config",
         "from_pretrained": "gptkit.torch.weights", "train": "gptkit.training.run"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'gptkit' has no attribute {name!r}")
