"""The PyTorch backend (gptkit.mlx's twin): everything in gptkit that imports torch.

- model.py: `GPT` (GPT-2 and its modern options) and `Bigram`, with a static KV cache; losses.py: the chunked loss.
- optim.py: AdamW with decay groups, and Muon; runtime.py: device, dtype, threads, DDP, peak FLOP/s.
- weights.py: models <-> checkpoint tensors, and `from_pretrained`.
- backend.py: `TorchBackend`, the gptkit.training.backend contract in PyTorch.
- generate.py: the generation engine's tensor work; cpu.py: oneDNN-packed linears for CPU decoding;
  speculative.py: speculative decoding with a draft model.
- evaluate.py: loss, perplexity, bits per byte, HellaSwag.
"""
