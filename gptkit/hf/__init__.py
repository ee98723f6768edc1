"""Hugging Face model folders, no torch (but for reading a legacy pytorch_model.bin): arch.py (one table per
architecture: GPT-2, Llama, Qwen3; folders read and written), files.py (safetensors by hand, bf16 included),
hub.py (GPT-2 names -> local folders). Tokenizer files are gptkit.tokenizer.hf_json's; `gptkit export` is
gptkit.cli.export's.
"""
