"""Speed of fast mode (one AR sample + the HiFi-GAN decoder): time to first streamed audio, real-time factor
of a 10 s utterance, and the decoder's cost per chunk at the start and at the end of a long stream, with the
bounded decode window and with upstream's full re-decode.

Run from the repository root (see benchmarks/README.md):

    venv/bin/python -m benchmarks.bench_fast [--device cpu|cuda] [--half] [--quick]

`measure_fast(...)` returns the figures as a FastFigures, for other benchmarks (bench_gpu) to call.
Models are the full-size official configurations with seeded random weights; the stop code's logit is
pushed to -1e4 so that every line runs to exactly `max_mel_tokens` codes (speed does not depend on values).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from tortoise import models as registry
from tortoise.api import TextToSpeech, TTSModels
from tortoise.device import DevicePlan
from tortoise.latents import ConditioningLatents
from tortoise.mel import load_mel_norms
from tortoise.streaming import StreamDecoder, StreamSettings
from tortoise.tokenizer import VoiceBpeTokenizer

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = Path(os.environ.get("TORTOISE_REFERENCE", ROOT / "tests" / "data" / "reference"))
TEXT = "The quick brown fox jumps over the lazy dog, and then it runs far away into the woods."
CODES_PER_S = 22050 / 1024  # AR codes per second of audio
TARGETS = {  # from the fast-mode issue: (figure, limit, where it applies)
    "first_audio_s": {"cpu": 3.0, "cuda": 0.3},
    "rtf_10s": {"cuda": 0.05},
    "chunk_cost_ratio": {"cpu": 1.2, "cuda": 1.2},
}


@dataclass
class FastFigures:
    device: str
    half: bool
    first_chunk_codes: int
    first_audio_s: float  # from the call to the first chunk in hand (best of the runs)
    rtf_10s: float | None  # wall time / audio time of a whole 10 s line (tts_fast)
    stream_s: float  # audio length of the per-chunk stream
    chunk_first_s: float  # decoder + stitching time per chunk at the start (chunks 2-4), bounded window
    chunk_last_s: float  # ... at the end (the three before the final one)
    chunk_cost_ratio: float  # last / first
    full_redecode_first_s: float | None  # upstream's full re-decode: first chunk
    full_redecode_last_s: float | None  # ... last chunk (it grows with the stream)


def build_fast_tts(device: str = "cpu", half: bool = False, seed: int = 0) -> TextToSpeech:
    """A TextToSpeech with a full-size random AR (stop code masked) and HiFi-GAN decoder, nothing else."""
    torch.manual_seed(seed)
    ar = registry.build("autoregressive")
    with torch.no_grad():
        ar.mel_head.bias[ar.stop_mel_token] = -1e4  # every line runs to max_mel_tokens
    decoder = registry.build("hifidecoder")
    decoder.prepare_for_inference()
    idle = nn.Identity()
    models = TTSModels(ar, idle, idle, idle, hifidecoder=decoder)
    plan = DevicePlan(torch.device(device), "cuda" if device.startswith("cuda") else "cpu", half=half)
    return TextToSpeech(models, VoiceBpeTokenizer(REFERENCE / "tokenizer.json"),
                        load_mel_norms(REFERENCE / "mel_norms.pth"), plan)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_to_first_audio(
    tts: TextToSpeech, voice: ConditioningLatents, first_codes: int, runs: int = 2
) -> float:
    """Best wall time from the tts_stream call to the first chunk (after one warm-up run)."""
    settings = StreamSettings(first_chunk_codes=first_codes, chunk_codes=first_codes)
    best = float("inf")
    for run in range(runs + 1):
        t0 = time.perf_counter()
        stream = iter(tts.tts_stream(
            TEXT, conditioning_latents=voice, seed=run, max_mel_tokens=first_codes + 1, settings=settings
        ))
        next(stream)
        elapsed = time.perf_counter() - t0
        stream.close()
        if run > 0:
            best = min(best, elapsed)
    return best


def rtf_of_line(tts: TextToSpeech, voice: ConditioningLatents, seconds: float) -> float:
    codes = round(seconds * CODES_PER_S)
    t0 = time.perf_counter()
    result = tts.tts_fast(TEXT, conditioning_latents=voice, seed=1, max_mel_tokens=codes)
    elapsed = time.perf_counter() - t0
    return elapsed / (result.waveforms[0].shape[-1] / result.sample_rate)


def stream_latents(decoder: nn.Module, device: str, seconds: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Smooth random latents (codes, dim) for `seconds` of audio and a conditioning latent (1, dim)."""
    gen = torch.Generator().manual_seed(0)
    codes = round(seconds * CODES_PER_S)
    latents = torch.randn(codes, decoder.in_channels, generator=gen).cumsum(0) / 8
    return latents.to(device), torch.randn(1, decoder.cond_channels, generator=gen).to(device)


def chunk_costs(decoder: nn.Module, device: str, seconds: float, chunk_codes: int = 40) -> list[float]:
    """Decoder + stitching time of every chunk of a `seconds` stream, with the bounded window (after one
    untimed warm-up decode of the same size)."""
    latents, cond = stream_latents(decoder, device, seconds)
    warm = StreamDecoder(decoder, cond, StreamSettings(chunk_codes, chunk_codes))
    for latent in latents[: 2 * chunk_codes]:
        warm.add(latent)
    warm.decode()
    stream = StreamDecoder(decoder, cond, StreamSettings(chunk_codes, chunk_codes))
    costs = []
    for i in range(latents.shape[0]):
        stream.add(latents[i])
        is_end = i + 1 == latents.shape[0]
        if (i + 1) % chunk_codes == 0 or is_end:
            _sync(device)
            t0 = time.perf_counter()
            stream.decode(final=is_end)
            _sync(device)
            costs.append(time.perf_counter() - t0)
    return costs


@torch.inference_mode()
def full_redecode_costs(decoder: nn.Module, device: str, seconds: float, chunk_codes: int = 40
                        ) -> tuple[float, float]:
    """Upstream's per-chunk decode (all latents so far) at the first chunk and at the end of the stream."""
    latents, cond = stream_latents(decoder, device, seconds)
    out = []
    for count in (chunk_codes, latents.shape[0]):
        _sync(device)
        t0 = time.perf_counter()
        decoder.inference(latents[None, :count], cond)
        _sync(device)
        out.append(time.perf_counter() - t0)
    return out[0], out[1]


def measure_fast(device: str = "cpu", half: bool = True, quick: bool = False, first_codes: int = 20,
                 stream_seconds: float = 60.0) -> FastFigures:
    """Every fast-mode figure on one device; `quick` shortens the streams and skips the 10 s line."""
    tts = build_fast_tts(device, half)
    voice = ConditioningLatents(torch.randn(1, 1024) * 0.1, torch.zeros(1, 2048), None, "random")
    first = time_to_first_audio(tts, voice, first_codes, runs=1 if quick else 2)
    rtf = None if quick else rtf_of_line(tts, voice, 10.0)
    seconds = 15.0 if quick else stream_seconds
    decoder = tts.models.hifidecoder.to(device)
    windowed = chunk_costs(decoder, device, seconds)
    full_first, full_last = full_redecode_costs(decoder, device, seconds)
    # regular chunks only: the first has no left context yet, the final one is shorter; medians of three
    # resist the load spikes of a shared machine
    start, end = statistics.median(windowed[1:4]), statistics.median(windowed[-4:-1])
    return FastFigures(device, half, first_codes, first, rtf, seconds, start, end, end / start,
                       full_first, full_last)


def report(figures: FastFigures) -> str:
    kind = "cuda" if figures.device.startswith("cuda") else "cpu"
    lines = [f"fast mode on {figures.device} ({'half' if figures.half else 'fp32'}), threads "
             f"{torch.get_num_threads()}"]
    for name, value in asdict(figures).items():
        if name in ("device", "half"):
            continue
        text = "skipped" if value is None else (f"{value:.3f}" if isinstance(value, float) else str(value))
        limit = TARGETS.get(name, {}).get(kind)
        verdict = "" if limit is None or value is None else (" PASS" if value <= limit else " MISS")
        target = "" if limit is None else f"   target <= {limit}"
        lines.append(f"  {name:24s} {text}{target}{verdict}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--half", action="store_true", help="bf16 AR weights on CPU, fp16 autocast on CUDA")
    parser.add_argument("--quick", action="store_true", help="15 s stream, no 10 s line")
    parser.add_argument("--first-codes", type=int, default=20)
    parser.add_argument("--stream-seconds", type=float, default=60.0)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    # the stop code is masked on purpose, so every line "never produced a stop code"
    warnings.filterwarnings("ignore", message="The line never produced a stop code")
    figures = measure_fast(args.device, args.half, args.quick, args.first_codes, args.stream_seconds)
    print(report(figures))


if __name__ == "__main__":
    main()
