"""Typed, frozen configuration: the model (`GPTConfig`), a training run (`TrainConfig`), and how a run's
config is assembled from a TOML preset plus `--key=value` overrides.

Stdlib only (the MLX backend shares it). Presets are TOML data under `configs/`, never executed code.
A preset file has two tables, `[model]` (GPTConfig fields, plus `preset = "char-tiny"` to start from a
named model) and `[train]` (TrainConfig fields). An override names a field of either, bare or
qualified: `--n_layer=6`, `--model.dropout=0.1`, `--train.lr=3e-4`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path

CONFIGS_DIR = Path(__file__).resolve().parent / "configs"  # the shipped presets (package data)
DEFAULT_PRESET = "shakespeare_char"


@dataclass(frozen=True)
class GPTConfig:
    """The shape of a model. Defaults are GPT-2 small (124M)."""

    vocab_size: int = 50257  # tokens the tokenizer knows (training sets it from the data's tokenizer)
    block_size: int = 1024  # context length in tokens; also the number of learned positions
    n_layer: int = 12  # transformer blocks
    n_head: int = 12  # attention heads; n_embd must divide by it
    n_embd: int = 768  # residual stream width
    dropout: float = 0.0  # probability, on attention weights, residual branches and embeddings
    bias: bool = True  # biases in Linear layers and LayerNorms (GPT-2: True)
    tie_weights: bool = True  # lm_head shares wte's weight (GPT-2: True)
    pad_vocab_to: int = 1  # round the embedding rows up to a multiple of this (64 -> 50,304); 1 = none
    arch: str = "gpt"  # "gpt" (GPT-2) or "bigram" (the lecture's first model: a table of next-token logits)
    gelu: str = "tanh"  # "tanh" (GPT-2's approximation, HF gelu_new) or "exact" (erf: nanoGPT; ~10x faster
    #                     backward on AVX2 CPUs, so the CPU presets use it)
    # The modern options (modded-nanogpt, Llama, Qwen3); every default is GPT-2's architecture.
    pos: str = "learned"  # "learned" (GPT-2's wpe table) or "rope" (rotary, no position table)
    rope_theta: float = 10000.0  # rotary base: the slowest pair turns once per ~2*pi*theta tokens
    norm: str = "layernorm"  # "layernorm" (GPT-2) or "rmsnorm" (Llama: no mean, no bias)
    norm_eps: float = 1e-5  # epsilon of every norm (GPT-2, Llama: 1e-5; Qwen3: 1e-6)
    qk_norm: bool = False  # RMSNorm on each head's queries and keys before attention (Qwen3, modded-nanogpt)
    mlp: str = "gelu"  # "gelu" (GPT-2), "relu2" (ReLU squared: modded-nanogpt) or "swiglu" (Llama: a gated SiLU)
    mlp_hidden: int = 0  # MLP width; 0 = 4 x n_embd (gelu, relu2) or 8/3 x n_embd rounded up to 64 (swiglu)
    n_kv_head: int = 0  # key/value heads (grouped-query attention); 0 = n_head; n_head must be a multiple
    head_dim: int = 0  # width of each head; 0 = n_embd / n_head (Qwen3-0.6B: 128 with n_embd 1024, 16 heads)
    logit_softcap: float = 0.0  # logits -> cap * tanh(logits / cap) (Gemma 2, modded-nanogpt); 0 = off
    zero_init_proj: bool = False  # attention and MLP output projections start at zero (modded-nanogpt)

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd", "pad_vocab_to"):
            if getattr(self, name) < 1:
                raise ValueError(f"model.{name} must be >= 1, got {getattr(self, name)}")
        if self.n_embd % self.n_head and not self.head_dim:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head}), or set head_dim")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        for name, allowed in (("gelu", ("tanh", "exact")), ("arch", ("gpt", "bigram")), ("pos", ("learned", "rope")),
                              ("norm", ("layernorm", "rmsnorm")), ("mlp", ("gelu", "relu2", "swiglu"))):
            if getattr(self, name) not in allowed:
                raise ValueError(f"model.{name} must be one of {', '.join(allowed)}; got {getattr(self, name)!r}")
        for name in ("mlp_hidden", "n_kv_head", "head_dim", "logit_softcap"):
            if getattr(self, name) < 0:
                raise ValueError(f"model.{name} must be >= 0 (0 = the default), got {getattr(self, name)}")
        if not (self.norm_eps > 0 and self.rope_theta > 0):
            raise ValueError(f"model.norm_eps and model.rope_theta must be > 0, got {self.norm_eps}, {self.rope_theta}")
        if self.n_head % self.kv_heads:
            raise ValueError(f"model.n_kv_head={self.n_kv_head} must divide n_head={self.n_head} (each key/value "
                             "head serves n_head / n_kv_head query heads)")
        if self.pos == "rope" and self.head_size % 2:  # rotary turns the head's dimensions in pairs
            if self.head_dim:
                raise ValueError(f"model.pos='rope' needs an even head size; model.head_dim={self.head_dim} is odd: "
                                 "set model.head_dim to an even number")
            raise ValueError(f"model.pos='rope' needs an even head size; n_embd / n_head = {self.n_embd} / "
                             f"{self.n_head} = {self.head_size} is odd: change model.n_embd or model.n_head, or set "
                             "an even model.head_dim")

    @property
    def head_size(self) -> int:
        """Each head's width: head_dim, or n_embd / n_head when 0."""
        return self.head_dim or self.n_embd // self.n_head

    @property
    def kv_heads(self) -> int:
        """Key/value heads: n_kv_head, or n_head when 0."""
        return self.n_kv_head or self.n_head

    @property
    def hidden_size(self) -> int:
        """The MLP's width. Examples: n_embd=768 -> 3072 (gelu); swiglu: 768 -> 2048, 128 -> 384 (8/3 x 128 = 341.3,
        rounded up to a multiple of 64)."""
        if self.mlp_hidden:
            return self.mlp_hidden
        if self.mlp == "swiglu":
            return -(-8 * self.n_embd // (3 * 64)) * 64  # ceil(8/3 x n_embd / 64) x 64
        return 4 * self.n_embd

    @property
    def padded_vocab_size(self) -> int:
        """Example: vocab_size=50257, pad_vocab_to=64 -> 50304."""
        return math.ceil(self.vocab_size / self.pad_vocab_to) * self.pad_vocab_to

    @classmethod
    def from_preset(cls, name: str, **overrides) -> GPTConfig:
        if name not in MODEL_PRESETS:
            raise ValueError(f"unknown model preset {name!r}; presets: {', '.join(MODEL_PRESETS)}")
        return cls(**{**MODEL_PRESETS[name], **overrides})


MODEL_PRESETS: dict[str, dict] = {
    # OpenAI's GPT-2 family (vocab 50,257, block 1,024)
    "gpt2": dict(n_layer=12, n_head=12, n_embd=768),  # 124M
    "gpt2-medium": dict(n_layer=24, n_head=16, n_embd=1024),  # 350M
    "gpt2-large": dict(n_layer=36, n_head=20, n_embd=1280),  # 774M
    "gpt2-xl": dict(n_layer=48, n_head=25, n_embd=1600),  # 1558M
    # small models for CPUs (vocab from the data)
    "char-tiny": dict(n_layer=4, n_head=4, n_embd=128, block_size=64, vocab_size=65, gelu="exact"),  # nanoGPT CPU
    "char-small": dict(n_layer=6, n_head=6, n_embd=384, block_size=256, vocab_size=65, dropout=0.2, gelu="exact"),
    "bigram": dict(arch="bigram", n_layer=1, n_head=1, n_embd=1, block_size=8, vocab_size=65),
}


@dataclass(frozen=True)
class TrainConfig:
    """One training run. Batch sizes count sequences per rank; `total_batch_tokens` sets accumulation."""

    data: str = "shakespeare_char"  # a data dir from `gptkit prepare`, or a named one prepared on first use
    out_dir: str = ""  # the run dir; "" = runs/<preset name>
    # Start from these weights as a new run: a run dir (its last checkpoint), a HF GPT-2/Llama/Qwen3 folder, or gpt2,
    # gpt2-medium, gpt2-large, gpt2-xl. The model's shape comes from them; dropout and a smaller block_size
    # (the position table is cropped) from this config. "" = random init.
    init_from: str = ""
    seed: int = 1337  # model init, dropout and batches; rank r draws batches with seed + r
    backend: str = "torch"  # torch (PyTorch: CPU, CUDA, MPS) or mlx (Apple's MLX; pip install "gptkit[mlx]")
    device: str = "auto"  # auto (cuda > mps > cpu), cpu, cuda, cuda:N, mps
    dtype: str = "auto"  # auto, float32, bfloat16, float16 (autocast; auto = bf16 where it is fast)
    compile: bool = False  # torch.compile the training step (eval and sampling use the plain module)
    chunked_loss: bool = True  # PyTorch: the loss in row chunks, never the whole (B, T, vocab) logits
    #                            (gptkit.torch.losses)
    threads: int = 0  # CPU threads for torch; 0 = all cores of this process
    loader: str = "random"  # random (nanoGPT's random windows) or sequential (build-nanogpt's shard strides)
    batch_size: int = 12  # sequences per micro-step per rank
    total_batch_tokens: int = 0  # tokens per optimizer step over all ranks; 0 = one micro-step per rank
    max_iters: int = 2000  # optimizer steps
    epochs: float = 0.0  # > 0: max_iters is this many passes over the training split (conversations for chat data);
    #                      a --max_iters override wins over it
    max_seconds: float = 0.0  # also stop (eval + checkpoint) after this many seconds of this invocation; 0 = none
    lr: float = 1e-3  # peak learning rate
    min_lr: float = 1e-4  # the cosine decays to this
    warmup_iters: int = 100  # linear warmup steps from lr/warmup_iters
    lr_decay_iters: int = 0  # where the cosine reaches min_lr; 0 = max_iters
    weight_decay: float = 0.1  # AdamW's, on 2-D weights only (matmuls and embeddings), never biases or norms
    optimizer: str = "adamw"  # "adamw", or "muon": Muon for the matrices inside the blocks, AdamW for the rest
    muon_lr: float = 0.02  # Muon's peak learning rate (under the same warmup and decay as lr)
    muon_momentum: float = 0.95  # Muon's momentum (Nesterov)
    muon_weight_decay: float = 0.0  # Muon's decoupled weight decay: w *= 1 - lr x this each step (lr: Muon's)
    # > 0: evaluate, sample and checkpoint (as the `model.` weights every reader takes) an exponential moving average
    # of the weights, avg <- d avg + (1 - d) w after each step, d = min(ema_decay, (1 + step) / (10 + step)); 0 = off
    ema_decay: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0  # max global grad norm; 0 = no clipping
    eval_interval: int = 250  # steps between evaluations (and checkpoints); the last step always evaluates
    eval_iters: int = 50  # batches per split in an evaluation (the same fixed batches each time)
    log_interval: int = 10  # steps between progress bar updates
    sample_tokens: int = 200  # tokens sampled at each evaluation; 0 = none
    sample_prompt: str = "\n"  # prompt for the samples printed during training
    peak_flops: float = 0.0  # device peak FLOP/s for MFU; 0 = known GPU table, or measured on a CPU
    progress: bool = True  # progress bar and eval lines on stderr
    # Under torchrun: "ddp" (each rank holds the whole model) or "fsdp" (FSDP2: weights, gradients and optimizer
    # state sharded over the ranks; gptkit.torch.fsdp). One process trains alike with either.
    parallel: str = "ddp"
    reshard_after_forward: bool = True  # fsdp: free each block's gathered weights after its forward (ZeRO-3)
    activation_checkpointing: bool = False  # recompute each block's activations in the backward (less memory)

    def __post_init__(self) -> None:
        positive = ("batch_size", "max_iters", "eval_interval", "eval_iters", "log_interval")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("total_batch_tokens", "warmup_iters", "lr_decay_iters", "sample_tokens", "threads",
                     "max_seconds", "weight_decay", "muon_weight_decay", "grad_clip", "peak_flops", "epochs"):
            if getattr(self, name) < 0:
                raise ValueError(f"train.{name} must be >= 0, got {getattr(self, name)}")
        if not 0 < self.lr or not 0 <= self.min_lr <= self.lr:
            raise ValueError(f"need 0 < lr and 0 <= min_lr <= lr, got lr={self.lr}, min_lr={self.min_lr}")
        if self.dtype not in ("auto", "float32", "bfloat16", "float16"):
            raise ValueError(f"dtype must be auto, float32, bfloat16 or float16, got {self.dtype!r}")
        if self.loader not in ("random", "sequential"):
            raise ValueError(f"loader must be 'random' or 'sequential', got {self.loader!r}")
        if self.backend not in ("torch", "mlx"):
            raise ValueError(f"backend must be 'torch' or 'mlx', got {self.backend!r}")
        if self.optimizer not in ("adamw", "muon"):
            raise ValueError(f"train.optimizer must be 'adamw' or 'muon', got {self.optimizer!r}")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"train.ema_decay must be in [0, 1) (0 = no average; 0.99-0.999 are usual), got "
                             f"{self.ema_decay}")
        if not (self.muon_lr > 0 and 0 <= self.muon_momentum < 1):
            raise ValueError(f"need muon_lr > 0 and 0 <= muon_momentum < 1, got {self.muon_lr}, {self.muon_momentum}")
        if self.parallel not in ("ddp", "fsdp"):
            raise ValueError(f"train.parallel must be 'ddp' or 'fsdp', got {self.parallel!r}")
        if self.backend == "mlx" and (self.parallel == "fsdp" or self.activation_checkpointing):
            what = "parallel='fsdp'" if self.parallel == "fsdp" else "activation_checkpointing"
            raise ValueError(f"{what} is the torch backend's (PyTorch FSDP2 over torchrun); the MLX backend trains on "
                             "one device: use --backend=torch, or leave it out")


@dataclass(frozen=True)
class RunConfig:
    """What `gptkit train` runs: a model, a training config, and the preset name they came from."""

    model: GPTConfig
    train: TrainConfig
    name: str = DEFAULT_PRESET

    def __post_init__(self) -> None:
        if self.train.optimizer == "muon" and self.model.arch != "gpt":
            raise ValueError(f"train.optimizer='muon' needs the matrices of transformer blocks; model.arch="
                             f"{self.model.arch!r} has none: use optimizer='adamw'")

    @property
    def run_dir(self) -> Path:
        """Where the run lives: train.out_dir, else runs/<preset name>."""
        return Path(self.train.out_dir or f"runs/{self.name}")

    def to_dict(self) -> dict:
        return {"name": self.name, "model": dataclasses.asdict(self.model), "train": dataclasses.asdict(self.train)}

    @classmethod
    def from_dict(cls, d: dict) -> RunConfig:
        try:
            return cls(GPTConfig(**d["model"]), TrainConfig(**d["train"]), d.get("name", DEFAULT_PRESET))
        except (KeyError, TypeError) as e:
            raise ValueError(f"not a gptkit run config ({e})") from None

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"


# -- assembling a config: preset file + overrides ---------------------------------------------------


def _coerce(value, to: type, key: str):
    """A TOML value or a command-line string, checked and converted to the field's type.

    Example: _coerce("3e-4", float, "lr") -> 0.0003; _coerce("false", bool, "compile") -> False
    """
    if isinstance(value, str) and to is not str:
        text = value.strip()
        if to is bool:
            if text.lower() in ("true", "1", "yes", "on"):
                return True
            if text.lower() in ("false", "0", "no", "off"):
                return False
        else:
            try:
                if to is int:
                    number = float(text)  # accepts "2000" and "2e3", refuses "2.5" below
                    if number.is_integer():
                        return int(number)
                else:
                    return to(text)
            except ValueError:
                pass
        raise ValueError(f"{key} must be {to.__name__}, got {value!r}")
    if to is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if to is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if not isinstance(value, to) or (to is int and isinstance(value, bool)):
        raise ValueError(f"{key} must be {to.__name__}, got {value!r}")
    return value


_TYPES = {"int": int, "float": float, "bool": bool, "str": str}


def _field_types(cls) -> dict[str, type]:
    return {f.name: _TYPES[f.type if isinstance(f.type, str) else f.type.__name__] for f in fields(cls)}


MODEL_FIELDS = _field_types(GPTConfig)
TRAIN_FIELDS = _field_types(TrainConfig)
assert not MODEL_FIELDS.keys() & TRAIN_FIELDS.keys(), "bare overrides need unique field names"


def find_preset(name: str) -> Path:
    """A preset name (configs/<name>.toml) or a path to a TOML file."""
    p = Path(name)
    if p.suffix == ".toml" or p.exists():
        if not p.is_file():
            raise FileNotFoundError(f"{name}: no such config file")
        return p
    p = CONFIGS_DIR / f"{name}.toml"
    if not p.is_file():
        have = sorted(q.stem for q in CONFIGS_DIR.glob("*.toml"))
        raise ValueError(f"unknown preset {name!r}; presets: {', '.join(have) or '(none found)'}, or a .toml path")
    return p


def parse_overrides(items: list[str]) -> tuple[dict, dict]:
    """`--key=value` strings -> (model overrides, train overrides), values typed and checked. A key is a field
    name, bare or qualified by its table, with underscores or dashes (the CLI passes `--model.key=value`).

    Example: ["--n_layer=6", "--train.lr=3e-4", "--max-iters=5"] -> ({"n_layer": 6}, {"lr": 0.0003, "max_iters": 5})
    """
    model, train = {}, {}
    for item in items:
        if not item.startswith("--") or "=" not in item:
            raise ValueError(f"overrides look like --key=value, got {item!r}")
        key, value = item[2:].split("=", 1)
        table, _, name = key.rpartition(".")
        _put(table, name.replace("-", "_"), value, model, train, where=item)
    return model, train


def unknown_field(key: str) -> str:
    """What to say about a key that names no config field, with the closest field.

    Example: "n_layr" -> "unknown config field 'n_layr'; did you mean 'n_layer'?";
    "train.n_layer" -> "unknown config field 'train.n_layer'; did you mean 'model.n_layer'?"
    """
    import difflib

    name = key.rpartition(".")[2].replace("-", "_")
    if name in MODEL_FIELDS or name in TRAIN_FIELDS:  # the right name in the wrong table
        close = [f"{'model' if name in MODEL_FIELDS else 'train'}.{name}"]
    else:
        close = difflib.get_close_matches(name, [*MODEL_FIELDS, *TRAIN_FIELDS], n=1)
    return f"unknown config field {key!r}" + (f"; did you mean {close[0]!r}?" if close else "")


def _put(table: str, name: str, value, model: dict, train: dict, where: str) -> None:
    if table in ("", "model") and name in MODEL_FIELDS:
        model[name] = _coerce(value, MODEL_FIELDS[name], name)
    elif table in ("", "train") and name in TRAIN_FIELDS:
        train[name] = _coerce(value, TRAIN_FIELDS[name], name)
    else:
        raise ValueError(f"{where}: {unknown_field('.'.join(filter(None, [table, name])))}")


def load_run_config(preset: str = DEFAULT_PRESET, overrides: list[str] | tuple = ()) -> RunConfig:
    """A preset (a name under configs/ or a .toml path) with `--key=value` overrides applied; for a preset of two
    stages (load_stages), its first."""
    return load_stages(preset, overrides)[0]


STAGE_FIELDS = ("data", "init_from", "out_dir")  # what each stage of a two-stage preset has of its own


def load_stages(preset: str = DEFAULT_PRESET, overrides: list[str] | tuple = ()) -> list[RunConfig]:
    """The runs a preset makes, in order: one, or two for a preset with a `[finetune]` table (train fields of a second
    run, e.g. supervised finetuning on a chat task, started from the first run's weights).

    Of two stages, the second writes the run dir (out_dir, else runs/<preset>) and the first the same name + "_base";
    the second's train fields are the first's (less data, init_from and out_dir) with [finetune]'s over them. A bare
    or `--train.` override applies to both stages (data, init_from and out_dir aside), `--finetune.FIELD=VALUE` to the
    second only. Example: load_stages("chat", ["--seed=2", "--finetune.lr=1e-3"]) -> [runs/chat_base, seed 2;
    runs/chat, seed 2, lr 1e-3, init_from runs/chat_base]
    """
    path = find_preset(preset)
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{path}: not valid TOML ({e})") from None
    unknown = set(doc) - {"model", "train", "finetune"}
    if unknown:
        raise ValueError(f"{path}: unknown table(s) {sorted(unknown)}; a preset has [model], [train] and [finetune]")
    second = [f"--train.{o[len('--finetune.'):]}" for o in overrides if o.startswith("--finetune.")]
    shared = [o for o in overrides if not o.startswith("--finetune.")]
    if second and "finetune" not in doc:
        raise ValueError(f"{second[0].replace('--train.', '--finetune.')}: the preset {preset} has one stage (no "
                         "[finetune] table); drop the finetune. prefix")
    first = _assemble(path, doc.get("model", {}), doc.get("train", {}), shared)
    if "finetune" not in doc:
        return [first]
    train = {k: v for k, v in doc.get("train", {}).items() if k not in STAGE_FIELDS} | doc["finetune"]
    own = [o for o in shared if parse_overrides([o])[1].keys() & set(STAGE_FIELDS)]
    out = first.run_dir
    last = _assemble(path, doc.get("model", {}), train, [o for o in shared if o not in own] + second)
    base = out.with_name(out.name + "_base")
    return [replace(first, train=replace(first.train, out_dir=str(base))),
            replace(last, train=replace(last.train, init_from=str(base), out_dir=str(out)))]


def _assemble(path: Path, model_doc: dict, train_doc: dict, overrides: list[str]) -> RunConfig:
    """A RunConfig from a preset's [model] and train fields with overrides over them."""
    model_doc = dict(model_doc)
    base = model_doc.pop("preset", None)
    model, train = {}, {}
    for name, value in model_doc.items():
        _put("model", name, value, model, train, where=str(path))
    for name, value in train_doc.items():
        _put("train", name, value, model, train, where=str(path))
    m_over, t_over = parse_overrides(list(overrides))
    if "lr" in t_over and "min_lr" not in t_over:  # keep the preset's decay ratio: --lr=1e-4 alone stays valid
        base_lr, base_min = train.get("lr", TrainConfig.lr), train.get("min_lr", TrainConfig.min_lr)
        t_over["min_lr"] = t_over["lr"] * base_min / base_lr
    if "max_iters" in t_over:  # a --max_iters given outright wins over epochs (HF Trainer's max_steps does too)
        t_over["epochs"] = 0.0
    model.update(m_over)
    train.update(t_over)
    model_cfg = GPTConfig.from_preset(base, **model) if base else GPTConfig(**model)
    return RunConfig(model_cfg, TrainConfig(**train), name=path.stem)


# The sampling defaults of `gptkit sample`, `gptkit serve` (its API and its page's requests) and any front end to
# come: OpenAI's API's. One place, so that one seed gives one text whichever of them asks.
TEMPERATURE = 1.0
TOP_P = 1.0  # 1 = no nucleus cut
MAX_TEMPERATURE = 2.0  # OpenAI's limit too: past it the text is noise


class SamplingError(ValueError):
    """A sampling option out of its range. `option` names it as the API does (temperature, top_k, top_p,
    max_tokens, n) and `rule` says what it must be, so that a front end can name it its own way (a flag, a field)."""

    def __init__(self, option: str, rule: str, value) -> None:
        super().__init__(f"{option} must be {rule}, got {value!r}")
        self.option, self.rule, self.value = option, rule, value


def check_sampling(temperature: float, top_k: int | None = None, top_p: float | None = None, max_tokens: int = 0,
                   n: int = 1) -> None:
    """The limits of the sampling options, one set for the engine, `gptkit sample` and `gptkit serve`: temperature a
    finite number in [0, 2] (0 = greedy), top_k a whole number >= 1, top_p in (0, 1] (top_k, top_p: None = no cut),
    max_tokens >= 0 and n >= 1 whole numbers. Raises SamplingError for the first one out of range."""
    real = lambda v: isinstance(v, numbers.Real) and not isinstance(v, bool)  # noqa: E731 -- a table's helpers
    whole = lambda v: isinstance(v, numbers.Integral) and not isinstance(v, bool)  # noqa: E731
    rules = (
        ("temperature", temperature, f"a number from 0 to {MAX_TEMPERATURE:g} (0 = greedy)",
         lambda v: real(v) and 0 <= v <= MAX_TEMPERATURE),
        ("top_k", top_k, "a whole number >= 1", lambda v: v is None or whole(v) and v >= 1),
        ("top_p", top_p, "in (0, 1] (1 = no cut)", lambda v: v is None or real(v) and 0 < v <= 1),
        ("max_tokens", max_tokens, "a whole number >= 0", lambda v: whole(v) and v >= 0),
        ("n", n, "a whole number >= 1", lambda v: whole(v) and v >= 1),
    )
    for option, value, rule, ok in rules:
        if not ok(value):
            raise SamplingError(option, rule, value)
