"""The README's commands work as written (issue 16, item 13): every `gptkit` command in its ```bash blocks is either
run here, in the README's order, in one fresh working directory (so `runs/...` and `data/...` carry from one command
to the next, as for a user pasting them), or listed in SKIPPED with the reason it cannot run on a CPU-only machine
without network. A README command in neither list fails the test, so a new or changed command gets classified.

Shortened (said per command in RUN): training runs get a smaller --max-iters (and --eval-iters) appended (the last
value of a field wins), so the whole file takes well under a minute; nothing else is changed. The inputs a command names
as examples (my_texts/, corpus/, more/*.txt, docs.jsonl) are made first from the reference texts.
"""

import json
import re
import shlex
from pathlib import Path

from gptkit.cli import main

REPO = Path(__file__).resolve().parents[2]
# The README, then the topic pages in the README's order: a user who reads them in turn has what each command needs.
PAGES = [REPO / "README.md", *(REPO / "docs" / f"{name}.md" for name in (
    "tokenizer", "data", "training", "generation", "serve", "mlx", "hf", "gpus", "distributed", "benchmarks", "layout"))]

# README command -> what is appended to it here (the shortening), in the README's order of first appearance.
RUN = {
    "gptkit train": ["--max-iters=20", "--eval-iters=1"],
    "gptkit sample runs/shakespeare_char --prompt \"ROMEO:\" --max-new-tokens 300 --stream": [],
    "gptkit train chat": ["--max-iters=2", "--eval-iters=1"],  # both stages
    "gptkit tokenizer train shakespeare --vocab-size 320 -o tok320.model": [],
    "gptkit prepare shakespeare -t tok320.model -o data/shakespeare_bpe": [],
    "gptkit train chat --data=data/shakespeare_bpe --mlp=swiglu --out-dir=runs/chat_bpe": ["--max-iters=2",
                                                                                           "--eval-iters=1"],
    "gptkit export runs/chat_bpe --format gguf -o chat.gguf --dtype q8_0": [],
    "gptkit train gpt2_124m --dry-run --nproc=16 --parallel=fsdp --batch-size=32": [],
    "gptkit prepare shakespeare -t char -o data/shakespeare_char": [],
    "gptkit prepare shakespeare -t gpt2 -o data/shakespeare": [],
    "gptkit prepare corpus/ more/*.txt docs.jsonl --field text -t gpt2 --shard-tokens 100M -o data/web": [],
    "gptkit prepare --chat my_chats.jsonl -t runs/shakespeare_char -o data/my_chats": [],
    "gptkit prepare --chat reverse -t runs/shakespeare_char -o data/reverse": [],
    "gptkit eval runs/chat --chat reverse --batch-size 64": ["--limit=8"],
    "gptkit train --init_from=runs/shakespeare_char --data=reverse --epochs=5 --lr=3e-3 --warmup_iters=50 "
    "--eval_interval=250 --out_dir=runs/sft": ["--max-iters=2", "--eval-interval=2", "--eval-iters=1"],
    "gptkit prepare --chat pig.jsonl -t runs/chat_base -o data/pig": [],
    "gptkit train --init_from=runs/chat_base --data=data/pig --epochs=5 --lr=3e-3 --warmup_iters=50 "
    "--eval_interval=250 --out_dir=runs/pig": ["--max-iters=2", "--eval-interval=2", "--eval-iters=1"],
    "gptkit eval runs/pig --chat pig_test.jsonl --batch-size 64": [],
    "gptkit train --list": [],
    "gptkit train shakespeare_char_long": ["--max-iters=2", "--eval-iters=1"],
    "gptkit train --max-iters=500 --n-layer=6 --lr=3e-3 --out-dir=runs/mine": ["--max-iters=3", "--eval-iters=1"],
    "gptkit train --resume runs/shakespeare_char --max-iters=3000": ["--max-iters=25"],
    "gptkit prepare my_texts/ -t gpt2 -o data/mine": [],
    "gptkit train --data=data/mine --n-layer=6 --block-size=256 --out-dir=runs/mine_gpt2":
        ["--max-iters=2", "--batch-size=2", "--eval-iters=1"],  # GPT-2's 50,257 logits per position: keep it small
    "gptkit sample runs/shakespeare_char --prompt \"JULIET:\" --temperature 0.8 --top-k 40 --seed 7 --num-samples 3":
        [],
    "gptkit sample runs/shakespeare_char --temperature 0 --max-new-tokens 100": [],
    "gptkit sample runs/shakespeare_char --num-samples 8 --max-new-tokens 200": [],
    "gptkit sample runs/shakespeare_char --prompt \"ROMEO:\" --stop \"JULIET\" --stream": [],
    "gptkit sample runs/shakespeare_char --prompt \"ROMEO:\"": [],
    "gptkit train --init-from runs/shakespeare_char --lr=1e-4 --out-dir=runs/more": ["--max-iters=3", "--eval-iters=1"],
    "gptkit train shakespeare_char_gpt2 --out-dir=runs/char_gpt2": ["--max-iters=2", "--eval-iters=1"],
    "gptkit export runs/char_gpt2 --format hf -o my-model --dtype bfloat16": [],
    "gptkit train gpt2_124m --dry-run --nproc=8 --parallel=fsdp": [],
}

GPT2_WEIGHTS = "needs OpenAI's GPT-2 weights (network); tests/hf/test_arch.py and torch/test_finetune.py use a tiny GPT-2 folder"
FINEWEB = "needs FineWeb-Edu's 10BT sample (network, 27 GB); tests/data/test_web_data.py prepares its layout in small"
GPU = "a GPU recipe (gpt2_124m: 10B tokens); its config is checked in tests/test_config.py"
SYNOPSIS = "a synopsis with placeholders (FILE, N, PATH); tests/cli/test_cli.py runs every tokenizer action"
MLX = "the MLX backend (mlx is not installed here); tests/mlx/test_mlx*.py train and sample with it where it is"
SKIPPED = {
    "gptkit tokenizer train FILE... --vocab-size N [--pattern gpt2|gpt4|none|REGEX] [--special TOK] "
    "[--type bpe|char|word] -o OUT": SYNOPSIS,
    "gptkit tokenizer encode -t {gpt2,cl100k_base,char,PATH} [FILE|-] [--allowed-special all]": SYNOPSIS,
    "gptkit tokenizer decode -t {gpt2,cl100k_base,PATH} [FILE|-]": SYNOPSIS,
    "gptkit tokenizer show   -t ... [FILE|-|--text TEXT] [--ids]": SYNOPSIS,
    "gptkit tokenizer stats  -t ... [FILE|-]": SYNOPSIS,
    "gptkit prepare fineweb-edu/sample/10BT -t gpt2 --shard-tokens 100M --val-fraction 0.01 -o data/edu_fineweb10B":
        FINEWEB,
    "gptkit train my_preset.toml --device=cuda --dtype=bfloat16 --compile=true": "needs a CUDA GPU and the user's "
    "own preset file",
    "torchrun --standalone --nproc-per-node=2 -m gptkit train --loader=sequential": "tests/torch/test_ddp.py runs 2 gloo "
    "ranks through torchrun (here it would train into runs/shakespeare_char, which the first command's run holds)",
    "gptkit train --backend mlx": MLX,
    "gptkit sample path/to/SmolLM2-135M --prompt \"Once upon a time\" --temperature 0": "a downloaded HF folder "
    "(network); tests/hf/test_arch.py builds Llama and Qwen3 folders with transformers and samples them",
    "gptkit train --init_from path/to/Qwen3-0.6B --data DIR ...": "a synopsis with placeholders, and a downloaded "
    "HF folder; tests/hf/test_arch.py finetunes built folders",
    "gptkit sample gpt2 --device cuda --compile yes --max-new-tokens 1000": GPT2_WEIGHTS + " (and a CUDA GPU)",
    "gptkit chat runs/chat": "interactive: it reads turns from the terminal; tests/cli/test_chat_cli.py feeds it turns",
    "gptkit chat runs/chat --system \"Answer briefly.\"": "interactive: it reads turns from the terminal; "
    "tests/cli/test_chat_cli.py feeds it turns and checks each reply",
    "gptkit serve": "a server that runs until stopped; tests/serve/test_serve.py starts it and calls it",
    "gptkit serve gpt2 path/to/hf_folder --runs runs --port 8000 --batch-size 8": "a server, and OpenAI's GPT-2 "
    "weights (network)",
    "gptkit sample runs/shakespeare_char --backend mlx --prompt \"ROMEO:\"": MLX,
    "MKL_THREADING_LAYER=GNU LD_PRELOAD=$VIRTUAL_ENV/lib/libmkl_rt.so.3 gptkit train --backend mlx": MLX,
    "gptkit sample gpt2 --prompt \"Hello, I'm a language model,\" --num-samples 3 --max-new-tokens 40": GPT2_WEIGHTS,
    "gptkit eval gpt2 --data shakespeare_gpt2 --hellaswag val": GPT2_WEIGHTS,
    "gptkit train finetune_shakespeare": GPT2_WEIGHTS + " (gpt2-xl: and a GPU)",
    "gptkit train finetune_shakespeare --init-from=gpt2": GPT2_WEIGHTS,
    "gptkit export runs/finetune_shakespeare --format hf -o my-gpt2": "exports the finetune run above; "
    "tests/e2e/test_safety.py and hf/test_arch.py export runs trained here",
    "gptkit train gpt2_124m": GPU,
    "gptkit train gpt2_124m_speedrun": GPU,
    "torchrun --standalone --nproc-per-node=8 -m gptkit train gpt2_124m": GPU,
    "gptkit train gpt2_124m --batch-size=16": GPU,
    "gptkit train --resume runs/gpt2_124m": GPU,
    "gptkit eval runs/gpt2_124m --data data/edu_fineweb10B --hellaswag val": GPU,
    "gptkit eval gpt2 --data data/edu_fineweb10B --hellaswag val": GPT2_WEIGHTS + "; and " + FINEWEB,
    "torchrun --standalone --nproc-per-node=8 -m gptkit train gpt2_124m --parallel=fsdp": GPU + "; tests/torch/"
    "test_fsdp.py trains with 2 fsdp gloo ranks on the CPU",
    "gptkit train gpt2_124m --activation_checkpointing=true --batch-size=32": GPU + "; tests/torch/test_memory.py "
    "trains with activation checkpointing on the CPU",
    "torchrun --nnodes=2 --nproc-per-node=8 --rdzv-backend=c10d --rdzv-endpoint=node0:29500 --rdzv-id=gpt2 -m gptkit "
    "train gpt2_124m --parallel=fsdp --batch-size=32": GPU + " on two nodes; tests/torch/test_fsdp.py runs two 'nodes' on 127.0.0.1",
    "srun torchrun --nnodes=\"$SLURM_NNODES\" --nproc-per-node=8 --rdzv-backend=c10d --rdzv-endpoint=\"$head:29500\" "
    "--rdzv-id=\"$SLURM_JOB_ID\" -m gptkit train gpt2_124m --parallel=fsdp --batch-size=32": "a Slurm job script (no Slurm here); "
    "its torchrun command is the two-node one above",
}


def readme_commands() -> list[str]:
    """Each `gptkit` command of the bash blocks of the README and the docs pages, comments cut, `a && b` as two, in
    order, once each."""
    out = []
    text = "".join(page.read_text(encoding="utf-8") for page in PAGES)
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.splitlines():
            for part in re.split(r"\s+#\s", line)[0].split("&&"):
                part = part.strip()
                if re.search(r"(^|\s)gptkit\s", part) and part not in out:
                    out.append(part)
    return out


def test_every_readme_command_is_run_or_skipped_with_a_reason():
    commands = readme_commands()
    assert len(commands) > 30  # the extraction found the blocks
    assert [c for c in commands if c not in RUN and c not in SKIPPED] == []
    assert [c for c in [*RUN, *SKIPPED] if c not in commands] == []  # no stale entries


def _inputs(root: Path, data_dir: Path) -> None:
    """The example inputs the README's commands name."""
    verdict = (data_dir / "the-verdict.txt").read_text(encoding="utf-8")
    (root / "my_texts").mkdir()
    (root / "my_texts" / "verdict.txt").write_text(verdict)
    (root / "corpus").mkdir()
    (root / "corpus" / "a.txt").write_text(verdict[:5000])
    (root / "more").mkdir()
    (root / "more" / "b.txt").write_text(verdict[5000:10000])
    (root / "docs.jsonl").write_text("".join(json.dumps({"text": verdict[i:i + 500]}) + "\n"
                                             for i in range(10000, 15000, 500)))
    (root / "my_chats.jsonl").write_text("".join(json.dumps({"messages": [  # characters of tiny Shakespeare only
        {"role": "user", "content": f"Who art thou, {name}?"}, {"role": "assistant", "content": f"I am {name}."}]})
        + "\n" for name in ("Romeo", "Juliet", "Hamlet", "Lear")))
    for name, words in (("pig.jsonl", ["string", "apple", "night", "crown"] * 10), ("pig_test.jsonl", ["glove"])):
        (root / name).write_text("".join(json.dumps({"prompt": f"Pig Latin: {w}", "completion": w[2:] + w[:2] + "ay"})
                                         + "\n" for w in words))  # a rough Pig Latin: the data's, not the rule's


def test_the_readme_commands_run(tmp_path, monkeypatch, data_dir, capsys):
    monkeypatch.chdir(tmp_path)
    _inputs(tmp_path, data_dir)
    commands = [c for c in readme_commands() if c in RUN]
    assert commands == list(RUN)  # RUN is in the README's order, which later commands rely on
    for command in commands:
        argv = shlex.split(command)
        assert argv[0] == "gptkit"
        rc = main(argv[1:] + RUN[command])
        out, err = capsys.readouterr()
        assert rc == 0, f"{command}: {err[-2000:]}"
        if argv[1] == "sample":
            assert out.startswith(argv[argv.index("--prompt") + 1] if "--prompt" in argv else "\n"), command
    assert (tmp_path / "runs" / "shakespeare_char" / "metrics.jsonl").read_text().count("\n") == 3  # 0, 20, 25
    assert sorted(p.name for p in (tmp_path / "data" / "web").iterdir()) == ["meta.json", "train_000000.bin",
                                                                             "val_000000.bin"]

