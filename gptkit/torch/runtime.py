"""Where and how torch runs: device choice, autocast dtype, CPU threads, DDP setup, peak FLOP/s for MFU.

Nothing happens at import time; every function is called by train/sample when it needs it. The rules:
- device "auto" = cuda > mps > cpu; asking for one that is not there is a ValueError saying so.
- dtype "auto" = bf16 autocast on CUDA (fp16 when the GPU has no bf16) and on CPUs with native bf16
  matmul (AVX512-BF16 or AMX), else fp32; fp32 on MPS. fp16 (with a GradScaler) is CUDA only.
- DDP starts when torchrun's WORLD_SIZE > 1 is set: nccl on CUDA, gloo on CPU.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import time
from dataclasses import dataclass

import torch

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

# Dense bf16 tensor-core peaks from NVIDIA's datasheets (FLOP/s), matched against the device name.
GPU_PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10G": 70e12, "4090": 165e12}


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device cuda was asked for, but torch sees no CUDA GPU here; use --device=cpu (or auto)")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"{name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device mps was asked for, but MPS is not available here; use --device=cpu (or auto)")
    if device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"unsupported device {name!r}; use auto, cpu, cuda, cuda:N or mps")
    return device


def cpu_has_fast_bf16() -> bool:
    """True when the CPU multiplies bf16 natively (AVX512-BF16 or AMX); without it torch's bf16 matmul
    is emulated and about 100x slower than fp32 (docs/training.md)."""
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(cpu, c, lambda: False)()) for c in checks)


def pick_dtype(name: str, device: torch.device) -> torch.dtype:
    """The autocast dtype for a device (float32 = no autocast). See the module docstring for "auto"."""
    if name == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if device.type == "cpu" and cpu_has_fast_bf16():
            return torch.bfloat16
        return torch.float32
    dtype = DTYPES[name]
    if dtype == torch.float16 and device.type != "cuda":
        raise ValueError(f"float16 training needs a GradScaler, which gptkit uses on CUDA only; on {device.type} "
                         "use --dtype=bfloat16 or float32")
    return dtype


def autocast(device: torch.device, dtype: torch.dtype):
    """A context running matmuls in `dtype` (weights stay fp32); a no-op for float32."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


# glibc's mallopt parameters (malloc.h) and the values keep_freed_memory sets
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 32 << 20  # glibc's largest: blocks below it come from the heap, and go back to it when freed
TRIM_THRESHOLD = 256 << 20  # free heap kept before any is handed back to the system


def keep_freed_memory() -> bool:
    """On Linux with glibc, keep the memory of freed tensors of up to 32 MiB for the next ones (up to 256 MiB of it),
    instead of unmapping it on free and faulting fresh zeroed pages in on the next allocation, which is what glibc
    does with blocks above its starting mmap threshold (128 KiB) until it has seen them freed. A CPU training step
    allocates and frees the same activations every step (docs/training.md has what that costs).
    True when set; False where there is no glibc (macOS, musl), which changes nothing."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(None)
    return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def setup_threads(threads: int = 0) -> int:
    """Use `threads` CPU threads, or (0) the cores this process may run on, divided among local ranks;
    flush denormals to zero; keep freed memory for the next step's tensors (keep_freed_memory)."""
    if threads <= 0:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        threads = max(1, cores // int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    torch.set_num_threads(threads)
    # Denormal floats (below ~1e-38) take a slow microcode path on x86; flushing them to zero changes no
    # result that matters and keeps small-learning-rate runs from slowing down as they train.
    torch.set_flush_denormal(True)
    keep_freed_memory()
    return threads


@dataclass(frozen=True)
class Dist:
    """This process's place in a torchrun job (a lone process is rank 0 of 1)."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device: torch.device) -> tuple[Dist, torch.device]:
    """Join the torchrun job if there is one; each rank gets its own GPU (cuda:LOCAL_RANK)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist(), device
    import torch.distributed as dist

    d = Dist(int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0")), world)
    if device.type == "cuda":
        check_gpus_per_process(int(os.environ.get("LOCAL_WORLD_SIZE", d.local_rank + 1)), torch.cuda.device_count())
        device = torch.device("cuda", d.local_rank)
        torch.cuda.set_device(device)
    elif device.type != "cpu":
        raise ValueError(f"DDP runs on cuda (nccl) or cpu (gloo), not {device.type}")
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return d, device


def check_gpus_per_process(processes: int, gpus: int) -> None:
    """DDP on CUDA gives each process on a machine its own GPU: more processes than GPUs is a ValueError that says
    what to run instead (every rank raises it, before any CUDA call could fail with a traceback)."""
    if processes > gpus:
        raise ValueError(f"torchrun started {processes} processes on this machine, which has {gpus} CUDA GPU(s), and "
                         f"each process needs its own; pass --nproc-per-node={gpus} or fewer, or --device=cpu to run "
                         "the processes on the CPU (gloo)")


def released(*tensors: torch.Tensor, timeout: float = 2.0) -> None:
    """Return once the collective that just finished on these CPU tensors has let go of them (gloo, on the CPU).
    A gloo worker thread drops a finished collective a moment after it wakes the rank waiting on it, and dropping it
    releases the tensors' Python objects, which takes the GIL: a process that begins to exit in that moment aborts
    ("terminate called without an active exception": the thread asks for the GIL of a finalizing interpreter; see
    pytorch/pytorch#179291), and gloo, unlike NCCL, has no shutdown that joins its threads. The wait is microseconds;
    past `timeout` (a torch that keeps its own references) it stops waiting, there and from then on."""
    global _wait_for_release
    deadline = time.monotonic() + timeout
    while _wait_for_release and any(t.device.type == "cpu" and t._use_count() > 1 for t in tensors):
        if time.monotonic() > deadline:
            _wait_for_release = False
        time.sleep(1e-4)


_wait_for_release = True


def teardown_distributed() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def peak_flops(device: torch.device, dtype: torch.dtype, configured: float = 0.0) -> float | None:
    """The device's peak FLOP/s for MFU: configured, a GPU datasheet figure, or a CPU matmul measured now."""
    if configured > 0:
        return configured
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        peak = next((v for k, v in GPU_PEAK_BF16.items() if k in name), None)
        if peak and dtype == torch.float32:
            peak /= 2  # TF32 tensor cores run at half the bf16 rate
        return peak
    if device.type == "cpu":
        return measure_matmul_flops(dtype)
    return None


def measure_matmul_flops(dtype: torch.dtype = torch.float32, n: int = 512, seconds: float = 0.05) -> float:
    """FLOP/s of an n x n matmul on this CPU, in `dtype`, with torch's current thread count."""
    g = torch.Generator().manual_seed(0)  # its own RNG: measuring must not move the training stream
    a, b = torch.randn(n, n, generator=g).to(dtype), torch.randn(n, n, generator=g).to(dtype)
    a @ b  # warm up
    reps, t0 = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - t0) < seconds:
        a @ b
        reps += 1
    return 2 * n**3 * reps / elapsed
