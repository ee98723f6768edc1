"""gptkit: a GPT toolkit built from scratch (tokenizer, data, model, training, sampling).

Importing gptkit is cheap and side-effect free: it never imports torch or mlx.
"""

from gptkit.simple_tokenizers import CharTokenizer, WordTokenizer
from gptkit.tokenizer import Tokenizer, get_tokenizer, load_tokenizer

__version__ = "0.1.0"
__all__ = ["CharTokenizer", "Tokenizer", "WordTokenizer", "get_tokenizer", "load_tokenizer", "__version__"]
