"""Measure DVAE code throughput (clips/s) of `tortoise.dvae_codes.encode_clips`, cold and from the cache.

Uses the full-size DiscreteVAE with random weights (the speed does not depend on the weights) and
synthetic voiced clips written to a temporary dataset folder. Run it from the repository root:

    venv/bin/python -m benchmarks.dvae_throughput --clips 16 --seconds 5 --batch-size 8
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import torch

from tortoise.audio import VOICE_SAMPLE_RATE, save_wav
from tortoise.dvae_codes import DLAS_PADDED_SAMPLES, codes_for_wavs, encode_clips
from tortoise.models import build


def synthetic_clip(seconds: float, seed: int) -> torch.Tensor:
    """(1, samples) harmonic tone with a gliding pitch, a syllable envelope and a little noise."""
    generator = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * VOICE_SAMPLE_RATE)) / VOICE_SAMPLE_RATE
    pitch_hz = 110 + (10 * seed) % 60 + 25 * torch.sin(2 * math.pi * 0.5 * t)
    phase = 2 * math.pi * torch.cumsum(pitch_hz, 0) / VOICE_SAMPLE_RATE
    voiced = sum(torch.sin(k * phase) / k for k in range(1, 6))
    envelope = torch.sin(math.pi * 2.5 * t).abs()
    wave = voiced * envelope + 0.02 * torch.randn(t.shape, generator=generator)
    return (0.7 * wave / wave.abs().max()).reshape(1, -1)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each clip")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--padded-samples", type=int, default=DLAS_PADDED_SAMPLES)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    dvae = build("dvae").to(args.device).eval()
    mel_norms = torch.ones(80)  # the real divisors change values, not cost

    with tempfile.TemporaryDirectory() as folder:
        paths = [Path(folder) / "audio" / f"{i:05d}.wav" for i in range(args.clips)]
        for i, path in enumerate(paths):
            save_wav(path, synthetic_clip(args.seconds, seed=i), VOICE_SAMPLE_RATE)
        cache = Path(folder) / "dvae_codes"

        def run() -> None:
            encode_clips(dvae, paths, cache, "random-weights", mel_norms,
                         batch_size=args.batch_size, padded_samples=args.padded_samples)

        # Warm-up on a separate cache so one-off costs (filterbank, allocator, kernels) are not timed.
        warm_cache = Path(folder) / "warmup"
        encode_clips(dvae, paths[: args.batch_size], warm_cache, "random-weights", mel_norms,
                     batch_size=args.batch_size, padded_samples=args.padded_samples)
        wavs = torch.zeros(args.batch_size, args.padded_samples)
        batches = math.ceil(args.clips / args.batch_size)

        def model_only() -> None:
            for _ in range(batches):
                codes_for_wavs(dvae, wavs, mel_norms)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()

        model_s = timed(model_only)
        cold_s = timed(run)
        hot_s = timed(run)

    print(f"device={args.device} threads={torch.get_num_threads()} clips={args.clips} x {args.seconds:g} s, "
          f"padded to {args.padded_samples} samples, batch {args.batch_size}")
    print(f"mel + DVAE only     : {args.clips / model_s:8.2f} clips/s ({model_s:.2f} s)")
    print(f"no cache (cold)     : {args.clips / cold_s:8.2f} clips/s ({cold_s:.2f} s with load, hash, write)")
    print(f"cache hit (warm)    : {args.clips / hot_s:8.2f} clips/s ({hot_s:.3f} s)")


if __name__ == "__main__":
    main()
