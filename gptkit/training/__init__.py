"""Training, whatever the backend; no torch, no mlx (both backends share all of it).

- run.py: `Run`, the loop (schedule, evaluation, checkpoints, metrics, Ctrl-C, why it stopped), and
  `train(cfg)`, which picks the backend the config names.
- backend.py: the contract between the Run and a backend (gptkit.torch.backend, gptkit.mlx.backend).
- setup.py: what a run decides before its first step: config on --resume, model shape, --init_from, batches,
  gradient accumulation and the learning-rate schedule.
- run_dir.py: the run dir, all of it (files, lock, fresh and resume checks, config.json, metrics).
- checkpoint.py: the checkpoint file format (safetensors + a JSON header).
- source.py: weights from anywhere gptkit reads them: a run dir, a HF folder, a GPT-2 name.
- plot.py: loss.png.
"""
