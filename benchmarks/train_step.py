"""Trainer step time and peak memory of the FULL-size autoregressive model (421.5 M parameters) on the CPU.

    venv/bin/python -m benchmarks.train_step [--steps 3] [--seconds 6] [--text-tokens 60] [--checkpointing]
                                             [--bf16] [--threads N]

One step is exactly what the trainer runs per batch (`tortoise.training.step.StepRunner.run`): LR update,
the two-conditioning-clip training forward, weighted cross-entropies, backward, per-group clipping and an
AdamW update, at batch 1 without accumulation. Weights are random (speed does not depend on their values);
the batch has the shapes of a real item: `--text-tokens` BPE ids, the DVAE codes of a `--seconds` clip (cut
to seconds·22050 // 1024 codes by the forward), two 44000-sample conditioning crops (80 × 172 mels).
Peak RSS is the process maximum (ru_maxrss), i.e. model + gradients + AdamW moments + activations.
"""

from __future__ import annotations

import argparse
import platform
import resource
import statistics
import sys
import time

import torch

from tortoise.models import build
from tortoise.training.objective import LRSchedule, TrainingForward
from tortoise.training.step import StepRunner, choose_precision, make_optimizer

SAMPLE_RATE = 22050


def peak_rss_gib() -> float:
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**30


def make_batch(text_tokens: int, seconds: float) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "text": torch.randint(3, 255, (1, text_tokens), generator=g),
        "text_length": torch.tensor([text_tokens]),
        "codes": torch.randint(0, 8192, (1, 250), generator=g),
        "wav_length": torch.tensor([int(seconds * SAMPLE_RATE)]),
        "cond_mels": torch.randn(1, 2, 80, 172, generator=g),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=3, help="timed steps (after one warm-up step)")
    parser.add_argument("--seconds", type=float, default=6.0, help="target clip length in seconds")
    parser.add_argument("--text-tokens", type=int, default=60)
    parser.add_argument("--checkpointing", action="store_true", help="gradient checkpointing of GPT blocks")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    t0 = time.perf_counter()
    torch.manual_seed(0)
    model = build("autoregressive").train()
    build_s = time.perf_counter() - t0
    params = sum(p.numel() for p in model.parameters())
    device = torch.device("cpu")
    forward = TrainingForward(model, use_gradient_checkpointing=args.checkpointing)
    optimizer, kind = make_optimizer(model, device, 1e-5, 0.01, (0.9, 0.96), 1e-8, use_bitsandbytes=False)
    runner = StepRunner(forward, optimizer, LRSchedule(1e-5), accumulation=1, clip_grad_norm=4.0,
                        precision=choose_precision(device, False, args.bf16), device=device)
    batch = make_batch(args.text_tokens, args.seconds)
    codes = int(batch["wav_length"]) // 1024
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads; model {params / 1e6:.1f} M params built in {build_s:.1f} s")
    print(f"batch 1: {args.text_tokens} text tokens, {codes} codes (+2 start/stop), 2 conditioning clips; "
          f"sequence {2 + args.text_tokens + 2 + codes + 2} positions; {runner.precision.name}, "
          f"gradient checkpointing {'on' if args.checkpointing else 'off'}, optimiser {kind}")

    times = []
    for step in range(1, args.steps + 2):
        t0 = time.perf_counter()
        result = runner.run(batch, step)
        seconds = time.perf_counter() - t0
        label = "warm-up" if step == 1 else "timed"
        print(f"step {step} ({label}): {seconds:.2f} s, loss {result.loss_gpt_total:.3f}, "
              f"grad norm {result.grad_norm:.2f}, peak RSS so far {peak_rss_gib():.2f} GiB")
        if step > 1:
            times.append(seconds)
    print(f"step time: median {statistics.median(times):.2f} s, min {min(times):.2f} s "
          f"over {len(times)} steps; "
          f"peak RSS {peak_rss_gib():.2f} GiB")


if __name__ == "__main__":
    main()
