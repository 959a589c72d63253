"""GPU speed benchmark of the TTS core: one JSON line per measurement, for fp32 and half precision.

Run from the repository root on a CUDA machine (see benchmarks/README.md):

    venv/bin/python -m benchmarks.bench_gpu            # full-size models, several minutes
    venv/bin/python -m benchmarks.bench_gpu --dry      # tiny models on the CPU: checks the script only

Models are the full-size official configurations with seeded random weights made on the fly (as in
bench_core.py); lengths are forced (the stop code is masked), so random weights give the shapes of a real
run. Measurements, each printed as {"measurement": ..., "precision": "fp32" | "half", ...}:

* load: building the pipeline on the device plus its warm-up (graph capture), in seconds;
* first_call / p1: one `tts()` of the P1 shape (4 candidates x 64 codes, 4 diffusion steps with
  conditioning-free guidance), the first call after loading and the fastest of the later ones, with
  their ratio and the per-stage times;
* ultra_fast_10s: the 10 s `ultra_fast` render (16 candidates x 215 codes, 30 steps), with stage times;
* ar_tokens_per_s: the AR decode alone at 1 and 16 rows, 200 codes (per-row and total tokens/s);
* roofline: AR weight bytes / measured device copy bandwidth = the least time a decode step can take,
  and the measured step time over it;
* peak_memory: torch.cuda.max_memory_allocated over that precision's run;
* fast_mode: fast mode (one sample, HiFi-GAN decoder, streamed) from `benchmarks.bench_fast`: time to
  first audio, real-time factor of a 10 s line, per-chunk cost at the start and the end of a 60 s stream,
  with PASS/MISS against the targets (full size only; --dry skips it).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

from benchmarks.bench_core import REFERENCE_DIR, SEED, forced_code_count, seeded_model
from tortoise import models as registry
from tortoise.api import TextToSpeech, TTSModels
from tortoise.device import resolve_device
from tortoise.latents import ConditioningLatents
from tortoise.mel import load_mel_norms
from tortoise.sampling import make_code_sampler
from tortoise.tokenizer import VoiceBpeTokenizer

TEXT = "The quick brown fox jumps over the lazy dog."
GOLDEN = REFERENCE_DIR / "golden"
NAMES = {  # registry name -> golden file whose tiny config --dry uses
    "autoregressive": "autoregressive",
    "diffusion_decoder": "diffusion",
    "clvp2": "clvp",
    "vocoder": "vocoder",
}


@dataclass(frozen=True)
class Sizes:
    p1: tuple[int, int, int] = (4, 64, 4)  # candidates, codes, diffusion steps (cond-free)
    ultra: tuple[int, int, int] = (16, 215, 30)  # the 10 s ultra_fast render (no cond-free)
    ar_codes: int = 200
    ar_rows: tuple[int, ...] = (1, 16)
    repeats: int = 3


FULL = Sizes()
DRY = Sizes(p1=(2, 8, 2), ultra=(4, 12, 3), ar_codes=12, ar_rows=(1, 4), repeats=2)


def emit(**fields) -> None:
    print(json.dumps(fields), flush=True)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device: torch.device, fn: Callable[[], object]) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def build_models(dry: bool) -> TTSModels:
    if not dry:
        names = ("autoregressive", "diffusion_decoder", "clvp2", "vocoder")
        return TTSModels(*(seeded_model(name) for name in names))
    built = []
    for name, golden in NAMES.items():
        config = torch.load(GOLDEN / f"{golden}.pt", map_location="cpu", weights_only=True)["config"]
        torch.manual_seed(SEED)
        built.append(registry.build(name, **config).requires_grad_(False))
    return TTSModels(*built)


def make_tts(device: str, half: bool, dry: bool) -> tuple[TextToSpeech, ConditioningLatents, float]:
    models = build_models(dry)
    plan = resolve_device(device, half=half)
    started = time.perf_counter()
    tts = TextToSpeech(models, VoiceBpeTokenizer(REFERENCE_DIR / "tokenizer.json"),
                       load_mel_norms(REFERENCE_DIR / "mel_norms.pth"), plan)
    tts.warm_up()  # what from_dir does on CUDA
    sync(plan.device)
    load_s = time.perf_counter() - started
    generator = torch.Generator().manual_seed(SEED)
    latents = ConditioningLatents(
        torch.randn(1, models.autoregressive.model_dim, generator=generator),
        torch.randn(1, 2 * models.diffusion.model_channels, generator=generator), None, "random",
    )
    return tts, latents, load_s


def render(tts: TextToSpeech, latents, candidates: int, codes: int, steps: int, cond_free: bool):
    with forced_code_count(tts.models.autoregressive, codes):
        return tts.tts(TEXT, conditioning_latents=latents, seed=SEED, num_autoregressive_samples=candidates,
                       sample_batch_size=candidates, max_mel_tokens=codes, diffusion_iterations=steps,
                       cond_free=cond_free, k=1, enable_redaction=False)


def stage_times(result) -> dict[str, float]:
    return {k: round(v, 4) for k, v in result.timings_s.items() if k != "latents"}


def renders(tts, latents, sizes: Sizes, precision: str) -> None:
    device = tts.plan.device
    def timed_render(candidates, codes, steps, cond_free):
        out = []
        seconds = timed(device, lambda: out.append(render(tts, latents, candidates, codes, steps, cond_free)))
        return seconds, out[0]

    first_s, first = timed_render(*sizes.p1, True)
    best_s, best = min((timed_render(*sizes.p1, True) for _ in range(sizes.repeats)), key=lambda p: p[0])
    candidates, codes, steps = sizes.p1
    emit(measurement="first_call", precision=precision, seconds=round(first_s, 4),
         later_seconds=round(best_s, 4), ratio=round(first_s / best_s, 3), stages=stage_times(first))
    emit(measurement="p1", precision=precision, seconds=round(best_s, 4), candidates=candidates, codes=codes,
         diffusion_steps=steps, stages=stage_times(best))
    seconds, result = min((timed_render(*sizes.ultra, False) for _ in range(max(1, sizes.repeats - 1))),
                          key=lambda p: p[0])
    candidates, codes, steps = sizes.ultra
    audio_s = result.waveforms[0].shape[1] / result.sample_rate
    emit(measurement="ultra_fast_10s", precision=precision, seconds=round(seconds, 4), candidates=candidates,
         codes=codes, diffusion_steps=steps, audio_seconds=round(audio_s, 2), stages=stage_times(result))


def ar_decode_seconds(tts, latents, rows: int, codes: int) -> float:
    ar, device = tts.models.autoregressive, tts.plan.device
    sampler = make_code_sampler(repetition_penalty=2.0, temperature=0.8, top_p=0.8, top_k=50,
                                start_token=ar.start_mel_token)
    cond = latents.autoregressive.to(device, next(ar.parameters()).dtype)
    tokens = tts.encode_text(TEXT).to(device)

    def decode():
        for _ in ar.decode_codes(cond, tokens, codes, num_return_sequences=rows, next_code=sampler,
                                 min_new_tokens=codes, check_every=tts.plan.decode_check_every):
            pass

    decode()  # captures this batch size's graphs if it is new
    return min(timed(device, decode) for _ in range(2))


def copy_bandwidth(device: torch.device) -> float:
    """Bytes per second of a large device-to-device copy (read + write)."""
    n = 256 * 2**20 if device.type == "cuda" else 16 * 2**20
    src = torch.empty(n, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)
    seconds = min(timed(device, lambda: dst.copy_(src)) for _ in range(5))
    return 2 * n / seconds


def ar_section(tts, latents, sizes: Sizes, precision: str) -> None:
    ar, device = tts.models.autoregressive, tts.plan.device
    step_s = {}
    for rows in sizes.ar_rows:
        seconds = ar_decode_seconds(tts, latents, rows, sizes.ar_codes)
        step_s[rows] = seconds / sizes.ar_codes
        emit(measurement="ar_tokens_per_s", precision=precision, rows=rows, codes=sizes.ar_codes,
             seconds=round(seconds, 4), tokens_per_s_per_row=round(sizes.ar_codes / seconds, 1),
             tokens_per_s_total=round(rows * sizes.ar_codes / seconds, 1))
    weight_bytes = sum(p.numel() * p.element_size() for p in ar.parameters())
    bandwidth = copy_bandwidth(device)
    floor_s = weight_bytes / bandwidth
    emit(measurement="roofline", precision=precision, ar_weight_bytes=weight_bytes,
         copy_bandwidth_gb_s=round(bandwidth / 1e9, 1), step_floor_ms=round(1e3 * floor_s, 4),
         **{f"step_ms_{rows}_rows": round(1e3 * s, 3) for rows, s in step_s.items()},
         **{f"ratio_to_roofline_{rows}_rows": round(s / floor_s, 2) for rows, s in step_s.items()})


def run_precision(device: str, half: bool, sizes: Sizes, dry: bool) -> None:
    precision = "half" if half else "fp32"
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    tts, latents, load_s = make_tts(device, half, dry)
    emit(measurement="load", precision=precision, seconds_including_warm_up=round(load_s, 3),
         weights_dtype=str(tts.plan.weights_dtype), cuda_graphs=tts.models.autoregressive.cuda_graphs)
    renders(tts, latents, sizes, precision)
    ar_section(tts, latents, sizes, precision)
    if device.startswith("cuda"):
        emit(measurement="peak_memory", precision=precision,
             max_allocated_gib=round(torch.cuda.max_memory_allocated() / 2**30, 3),
             max_reserved_gib=round(torch.cuda.max_memory_reserved() / 2**30, 3))
    tts.release()
    del tts
    fast_section(device, half, dry, precision)


def fast_section(device: str, half: bool, dry: bool, precision: str) -> None:
    """The fast-mode figures of bench_fast on this device, as one JSON line."""
    if dry:
        emit(measurement="fast_mode", precision=precision, skipped="full-size models only (not with --dry)")
        return
    from benchmarks.bench_fast import TARGETS, measure_fast

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The line never produced a stop code")
        figures = asdict(measure_fast(device, half))
    verdicts = {
        f"{name}_target": ("PASS" if figures[name] <= limits["cuda"] else "MISS")
        for name, limits in TARGETS.items()
        if figures.get(name) is not None and "cuda" in limits
    }
    emit(measurement="fast_mode", precision=precision,
         **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in figures.items() if k != "half"},
         **verdicts)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N (default cuda); cpu only with --dry")
    parser.add_argument("--dry", action="store_true",
                        help="tiny models and short lengths: checks that the script runs, measures nothing")
    parser.add_argument("--precision", choices=("both", "fp32", "half"), default="both")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"bench_gpu needs a CUDA GPU, and torch {torch.__version__} sees none "
              "(torch.cuda.is_available() is False). Install a CUDA build of torch on a GPU machine, or "
              "check the script with --dry --device cpu.", file=sys.stderr)
        return 2
    if not args.dry and not args.device.startswith("cuda"):
        print("Full-size runs are for CUDA devices; use --dry for a CPU check.", file=sys.stderr)
        return 2
    sizes = DRY if args.dry else FULL
    if args.device.startswith("cuda"):
        emit(measurement="device", name=torch.cuda.get_device_name(args.device), torch=torch.__version__,
             cuda=torch.version.cuda)
    halves = {"both": (False, True), "fp32": (False,), "half": (True,)}[args.precision]
    with warnings.catch_warnings(), contextlib.suppress(KeyboardInterrupt):
        warnings.filterwarnings("ignore", message="A candidate never produced a stop token")
        for half in halves:
            run_precision(args.device, half, sizes, args.dry)
    return 0


if __name__ == "__main__":
    sys.exit(main())
