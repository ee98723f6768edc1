"""A training run for the FSDP tests, run as a script by torchrun (or python alone): trains, then writes rank 0's
per-step losses and its bytes of weights, gradients and optimizer state (taken just before each optimizer step, when
all three are held) to the JSON file given first.

    train_worker.py OUT.json KEY=VALUE ...                 a fresh run of nanogpt_cpu with these train/model fields
    train_worker.py OUT.json --resume RUN_DIR --KEY=VALUE  gptkit train --resume RUN_DIR --KEY=VALUE

With GPTKIT_TEST_EAGER=1, torch.compile runs dynamo's capture without inductor's codegen (minutes on a CPU).
"""

import json
import os
import sys

import torch

if os.environ.get("GPTKIT_TEST_EAGER"):
    _compile = torch.compile
    torch.compile = lambda model: _compile(model, backend="eager")

from gptkit.config import load_run_config  # noqa: E402 -- after the patch, as the run imports it
from gptkit.torch.backend import TorchBackend  # noqa: E402
from gptkit.training.run import Run  # noqa: E402
from gptkit.training.setup import resume_config  # noqa: E402


def main(out: str, args: list[str]) -> None:
    resume = args[0] == "--resume"
    cfg = resume_config(args[1], args[2:]) if resume else load_run_config("nanogpt_cpu", [f"--{a}" for a in args])
    backend = TorchBackend()
    try:
        run = Run(cfg, backend, resume=resume)
        held = []
        run.backend.optimizer.register_step_pre_hook(lambda *_: held.append(run.backend.state_bytes()))
        result = run.run()
    finally:
        backend.close()
    if int(os.environ.get("RANK", "0")) == 0:
        with open(out, "w") as f:
            json.dump({"losses": result.losses, "step": result.step, "bytes": held[-1] if held else None}, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
