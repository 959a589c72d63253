"""The peak memory of a fine-tuning run, estimated before it starts: weights, gradients, optimiser state,
activations of the longest clip at the chosen batch, data-loader workers and the checkpoint sample; and
the memory free for it (host RAM on the CPU, GPU memory on a GPU)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

GB = 1024**3
BYTES_FP32 = 4
MARGIN = 0.9  # plan for at most this share of the free memory (the OS and the page cache need some)
PROCESS_BASE = int(1.2 * GB)  # Python, torch and the dataset's cached codes in the trainer process
# one data-loader worker (a forked trainer: the pages it touches stop being shared); measured at full
# size as the proportional set size of two workers (benchmarks/bench_training_memory.py): 2.3 GB
PER_WORKER = int(1.1 * GB)
# Activations kept for backward per layer per position, in units of the model width, for fp32: the
# Korthikanti et al. (2022) count of 34 + 5·heads·seq/width bytes per element at 16 bits, doubled.
ACTIVATION_FACTOR = 2 * 34
ATTENTION_FACTOR = 2 * 5
CODES_PER_SAMPLE = 1 / 1024  # DVAE codes per audio sample at 22.05 kHz
DECODER_FILES = ("diffusion_decoder.pth", "clvp2.pth", "vocoder.pth")
FULL_SIZE_DECODERS = int(2.3 * GB)  # fp32 diffusion decoder + CLVP + vocoder, when the files are absent


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes a run needs at its peak, by part. The peak is the larger of a training step and a sample
    (during a sample the gradients are freed and the decoders are loaded instead).

    Attributes:
        weights, gradients, optimizer: of the trained model (fp32; 8-bit AdamW keeps 2 bytes a weight).
        activations: for backward, for the longest clip at the batch size.
        workers: data-loader worker processes.
        sample: decoder models and the AR's KV cache of the checkpoint sample (0 when samples are off).
        base: the process itself.
    """

    weights: int
    gradients: int
    optimizer: int
    activations: int
    workers: int
    sample: int
    base: int = PROCESS_BASE

    @property
    def training_peak(self) -> int:
        return self.base + self.weights + self.gradients + self.optimizer + self.activations + self.workers

    @property
    def sample_peak(self) -> int:
        return self.base + self.weights + self.optimizer + self.workers + self.sample

    @property
    def peak(self) -> int:
        return max(self.training_peak, self.sample_peak)

    def describe(self) -> str:
        parts = [("weights", self.weights), ("gradients", self.gradients), ("optimiser", self.optimizer),
                 ("activations", self.activations), ("workers", self.workers), ("sample", self.sample),
                 ("process", self.base)]
        listed = ", ".join(f"{name} {gigabytes(size)}" for name, size in parts if size)
        return f"about {gigabytes(self.peak)} ({listed})"


def gigabytes(size: int) -> str:
    return f"{size / GB:.1f} GB"


def count_parameters(model_kwargs: dict) -> tuple[int, int, int]:
    """(parameters, layers, width) of the AR with these constructor arguments, built without memory."""
    from tortoise.models import build

    with torch.device("meta"):
        model = build("autoregressive", **model_kwargs)
    return sum(p.numel() for p in model.parameters()), len(model.gpt.h), int(model.model_dim)


def estimate_run_memory(model_kwargs: dict, *, batch_size: int, longest_codes: int, longest_text: int,
                        workers: int, sample: bool, models_dir: Path | None = None,
                        eight_bit_adam: bool = False, gradient_checkpointing: bool = False,
                        heads: int | None = None) -> MemoryEstimate:
    """The run's peak memory by part (see MemoryEstimate).

    Args:
        model_kwargs: the AR's constructor overrides (empty = full size).
        batch_size: clips per step (per process).
        longest_codes, longest_text: DVAE codes and text tokens of the longest clip.
        workers: data-loader workers.
        sample: whether a checkpoint sample is rendered at each save.
        models_dir: where the decoder files are (their sizes are the sample's models); None or absent
            files take the full-size figure.
    """
    params, layers, width = count_parameters(model_kwargs)
    heads = heads or int(model_kwargs.get("heads", 16))
    weights = params * BYTES_FP32
    optimizer = params * (2 if eight_bit_adam else 2 * BYTES_FP32)
    seq = longest_codes + longest_text + 3  # + conditioning latent, start and stop tokens
    per_layer = batch_size * seq * width * (ACTIVATION_FACTOR + ATTENTION_FACTOR * heads * seq / width)
    kept_layers = 2 if gradient_checkpointing else layers  # checkpointing keeps one block's at a time
    vocabulary = 8194 + 256  # mel and text logits, their softmax and gradients
    activations = int(per_layer * kept_layers + batch_size * seq * vocabulary * BYTES_FP32 * 3)
    sample_bytes = 0
    if sample:
        positions = int(model_kwargs.get("max_mel_tokens", 604)) + int(model_kwargs.get("max_text_tokens",
                                                                                         402))
        kv_cache = 2 * layers * positions * width * BYTES_FP32  # one row (the sample draws one candidate)
        sample_bytes = _decoder_bytes(models_dir) + kv_cache
    return MemoryEstimate(weights, weights, optimizer, activations, workers * PER_WORKER, sample_bytes)


def _decoder_bytes(models_dir: Path | None) -> int:
    if models_dir is None:
        return FULL_SIZE_DECODERS
    files = [Path(models_dir) / name for name in DECODER_FILES]
    if not all(f.is_file() for f in files):
        return FULL_SIZE_DECODERS
    return sum(f.stat().st_size for f in files)


def available_memory(device: torch.device) -> int:
    """Bytes a run on `device` can use now: free GPU memory plus what this process holds there, or
    the host's available RAM plus this process's resident memory."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free + torch.cuda.memory_reserved(device))
    return host_available() + resident_bytes()


def host_available() -> int:
    """MemAvailable of /proc/meminfo (Linux), else physical memory as sysconf reports it."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 62  # unknown: do not refuse


def resident_bytes(pid: int | None = None) -> int:
    """Resident set size of a process (this one by default); 0 where it cannot be read."""
    try:
        fields = Path(f"/proc/{pid or 'self'}/statm").read_text().split()
        return int(fields[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def release_memory() -> None:
    """Collect garbage, empty the GPU caches, and hand freed heap pages back to the OS (glibc keeps them
    otherwise)."""
    from tortoise.device import release_accelerator_memory

    release_accelerator_memory()
    trim_heap()


def trim_heap() -> bool:
    """glibc's malloc_trim(0): return free heap memory to the OS. False where there is no glibc."""
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.malloc_trim(0))
    except (OSError, AttributeError):
        return False
