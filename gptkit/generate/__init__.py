"""Generation, the framework-free half (no torch, no mlx): the engine's bookkeeping (engine.py: requests in
slots, positions, the window slide, the sampling hash) and text out of it (text.py: streaming decode, stop
strings). The tensor work is gptkit.torch.generate's and gptkit.mlx.generate's.
"""
