"""Tokenizers, no torch: text <-> token ids.

- bpe.py: byte-pair encoding on integers (pair counts, merges, training, rank-based encoding).
- byte_level.py: `Tokenizer`, the byte-level BPE tokenizer (split pattern, byte ranks, special tokens);
  stream.py: its UTF-8 decoder for ids that arrive one at a time.
- simple.py: `CharTokenizer` and `WordTokenizer`, the lecture's first tokenizers, with the same interface.
- encodings.py: OpenAI's GPT-2 and cl100k_base encodings (tiktoken's exact ids) from local reference files.
- files.py, hf_json.py: the files tokenizers live in (gptkit's own format, .tiktoken, HF tokenizer.json).
- parallel.py: BPE training counts and long encodes spread over processes.
- load.py: every tokenizer by file or by name (`load_tokenizer`, `get_tokenizer`).

This package's own names are re-exported here for users (`from gptkit.tokenizer import Tokenizer`); gptkit's
modules import from the module that defines a name, never from this file.
"""

from gptkit.tokenizer.byte_level import Tokenizer
from gptkit.tokenizer.load import get_tokenizer, load_tokenizer
from gptkit.tokenizer.simple import CharTokenizer, WordTokenizer

__all__ = ["CharTokenizer", "Tokenizer", "WordTokenizer", "get_tokenizer", "load_tokenizer"]
