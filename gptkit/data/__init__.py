"""Data, no torch: text into token files on disk, and batches out of them.

- prepare.py: `gptkit prepare` (text, jsonl, parquet, folders, named datasets -> train/val shards + meta.json).
- named.py: named text sources (a short name -> a local file with its sha256).
- loaders.py: (x, y) batches from the token files: nanoGPT's random windows, build-nanogpt's shard strides.
- hellaswag.py: HellaSwag examples as the rows a model scores (the scoring is gptkit.torch.evaluate's).
"""
