"""Speed benchmark of the TTS core on the CPU: stage times, achieved GFLOP/s against plain torch GEMMs of
the same shapes, KV cache on/off, bf16 against fp32, and peak RSS of the loaded models.

Run from the repository root (see benchmarks/README.md):

    venv/bin/python -m benchmarks.bench_core [--quick] [--threads N]

Models are the full-size official configurations with seeded random weights made on the fly (nothing is
read from or written to disk but the tokenizer and the mel norms). Speed does not depend on weight values,
and the stop code is masked, so random weights give exactly the shapes of a real run.

The "P1 shape" is one `TextToSpeech.tts()` call: 4 candidates in one AR batch, each exactly 64 codes, CLVP
ranking, the latent pass of the best candidate, 4 diffusion steps (P sampler) with conditioning-free
guidance (8 diffusion forwards), and the vocoder. The 64 codes are forced with the model's own
`inference_codes(min_new_tokens=64)` (HF's MinNewTokensLengthLogitsProcessor: the stop code's logit is
-inf for the first 64 steps) together with `max_mel_tokens=64`, which ends the decode after step 64.

FLOPs are counted analytically: every stage is written down as its list of matrix products (linear
layers, convolutions as im2col GEMMs, attention score and value products) with the shapes the code uses,
and a matmul of m×k by k×n counts 2·m·k·n. The "GEMM" column replays exactly that list with plain
`torch.matmul` (model weights as the weight operands, so memory traffic matches; random activations)
in the same process, so "ratio" = achieved GFLOP/s ÷ GEMM GFLOP/s is what the stage gets out of the
matmul library. Micro-measurements take the minimum of interleaved repetitions, which is the most
robust estimate on a shared, noisy machine.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import resource
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from tortoise import models as registry
from tortoise.api import TextToSpeech, TTSModels
from tortoise.device import resolve_device
from tortoise.latents import ConditioningLatents
from tortoise.mel import load_mel_norms
from tortoise.models.autoregressive import UnifiedVoice
from tortoise.models.diffusion_decoder import DiffusionLayer, DiffusionTts, ResBlock
from tortoise.models.layers import AttentionBlock
from tortoise.models.vocoder import LVC_KERNEL_SIZE, MEL_PAD_FRAMES, UnivNetGenerator
from tortoise.models.xtransformer import DIM_HEAD, Attention
from tortoise.options import GenerationOptions
from tortoise.ranking import score_candidates
from tortoise.sampling import make_code_sampler
from tortoise.tokenizer import VoiceBpeTokenizer

REPO_ROOT = Path(__file__).resolve().parents[1]
REFERENCE_DIR = Path(os.environ.get("TORTOISE_REFERENCE", REPO_ROOT / "tests" / "data" / "reference"))
SEED = 1234
TEXT = "The quick brown fox jumps over the lazy dog."  # 29 ids, about the 3 s that 64 codes make
ALL_MODELS = ("autoregressive", "diffusion_decoder", "clvp2", "cvvp", "vocoder", "rlg_auto", "rlg_diffuser")
RSS_LIMIT_BYTES = 4.6e9
GEMM_TARGET = 0.70
BF16_TARGET = 2.0
BF16_MAX_ERROR = 0.05  # relative L2 error of the logits that still counts as correct
PEAK_GEMM_SIZE = 2048


@dataclass(frozen=True)
class Shape:
    """Sizes of one benchmark run."""

    candidates: int = 4
    codes: int = 64
    diffusion_steps: int = 4
    decode_rows: int = 16  # candidates of the decode-step targets (1) and (4)
    decode_steps: int = 12  # cached steps timed per decode variant
    reps: int = 3  # repetitions of the other micro-measurements
    repeats: int = 2  # timed tts() calls of the stage table (after one short warm-up call)
    ranking_candidates: int = 20  # candidates of the extra CLVP call-count check (two speech batches)


FULL = Shape()
QUICK = Shape(codes=16, diffusion_steps=2, decode_steps=5, reps=2, repeats=1)


# ------------------------------------------------------------------ matmul inventories of the stages


@dataclass(frozen=True, eq=False)
class MatMul:
    """One (batch ×) (m, k) @ (k, n) product; `weight` is the model's own (k, n) operand where it has one."""

    m: int
    k: int
    n: int
    batch: int = 1
    weight: torch.Tensor | None = None

    @property
    def flops(self) -> int:
        return 2 * self.batch * self.m * self.k * self.n


def linear(rows: int, layer: nn.Linear) -> MatMul:
    return MatMul(rows, layer.in_features, layer.out_features, weight=layer.weight.t())


def conv(positions: int, layer: nn.Conv1d) -> MatMul:
    """A Conv1d as its im2col GEMM: (positions, in·kernel) @ (in·kernel, out)."""
    weight = layer.weight.view(layer.out_channels, -1).t()
    return MatMul(positions, weight.shape[0], layer.out_channels, weight=weight)


def attention(batch: int, queries: int, keys: int, head_dim: int) -> list[MatMul]:
    """Scores q @ kᵀ and the weighted sum p @ v over `batch` = rows·heads."""
    return [MatMul(queries, head_dim, keys, batch), MatMul(queries, keys, head_dim, batch)]


def gpt_pass(ar: UnifiedVoice, rows: int, new: int, past: int) -> list[MatMul]:
    """The GPT-2 trunk on `new` positions of `rows` rows after `past` cached positions."""
    gpt, out = ar.gpt, []
    for block in gpt.h:
        for layer in (block.attn.c_attn, block.attn.c_proj, block.mlp.c_fc, block.mlp.c_proj):
            out.append(MatMul(rows * new, *layer.weight.shape, weight=layer.weight))
        out += attention(rows * gpt.heads, new, past + new, gpt.dim // gpt.heads)
    return out


def decode_step(ar: UnifiedVoice, rows: int, past: int) -> list[MatMul]:
    """One cached decode step: the trunk on one position per row, then the mel head."""
    return gpt_pass(ar, rows, 1, past) + [linear(rows, ar.mel_head)]


def ar_stage(ar: UnifiedVoice, prompt: int, rows: int, codes: int) -> list[MatMul]:
    """Prompt prefill (one row) and `codes` cached decode steps of `rows` rows."""
    out = gpt_pass(ar, 1, prompt, 0)
    for step in range(codes):
        out += decode_step(ar, rows, prompt + step)
    return out


def latent_pass(ar: UnifiedVoice, text_ids: int, codes: int) -> list[MatMul]:
    """The training-style forward over [cond, 255, text ids, 0, 8192, codes, 8193] of one candidate."""
    return gpt_pass(ar, 1, 1 + (text_ids + 2) + (codes + 2), 0)


def clvp_encoder(encoder: nn.Module, rows: int, tokens: int) -> list[MatMul]:
    out = []
    for _, block in encoder.transformer.attn_layers.layers:
        block = getattr(block, "wrap", block)
        if isinstance(block, Attention):
            projections = (block.to_q, block.to_k, block.to_v, block.to_out)
            out += [linear(rows * tokens, layer) for layer in projections]
            out += attention(rows * block.heads, tokens, tokens, DIM_HEAD)
        else:
            out += [linear(rows * tokens, block.net[0].proj), linear(rows * tokens, block.net[3])]
    return out


def clvp_stage(clvp: nn.Module, text_ids: int, rows: int, codes: int, batch: int = 16) -> list[MatMul]:
    """Text encoded once, speech codes in batches of `batch` (score_candidates' default)."""
    out = clvp_encoder(clvp.text_transformer, 1, text_ids) + [linear(1, clvp.to_text_latent)]
    for first in range(0, rows, batch):
        n = min(batch, rows - first)
        out += clvp_encoder(clvp.speech_transformer, n, codes) + [linear(n, clvp.to_speech_latent)]
    return out


def attention_block(block: AttentionBlock, frames: int) -> list[MatMul]:
    head_dim = block.channels // block.num_heads
    return [conv(frames, block.qkv), *attention(block.num_heads, frames, frames, head_dim),
            conv(frames, block.proj_out)]


def resblock(block: ResBlock, frames: int) -> list[MatMul]:
    return [linear(1, block.emb_layers[1]), conv(frames, block.in_layers[2]),
            conv(frames, block.out_layers[3])]


def diffusion_forward(diff: DiffusionTts, frames: int) -> list[MatMul]:
    """One timestep-dependent forward of batch 1 (precomputed aligned embeddings)."""
    out = [conv(frames, diff.inp_block), linear(1, diff.time_embed[0]), linear(1, diff.time_embed[2])]
    for layer in [*diff.conditioning_timestep_integrator, None, *diff.layers]:
        if layer is None:
            out.append(conv(frames, diff.integrating_conv))
        elif isinstance(layer, DiffusionLayer):
            out += resblock(layer.resblk, frames) + attention_block(layer.attn, frames)
        else:
            out += resblock(layer, frames)
    return out + [conv(frames, diff.out[2])]


def diffusion_stage(diff: DiffusionTts, codes: int, frames: int, steps: int) -> list[MatMul]:
    """`timestep_independent` once, then two forwards (conditioned, unconditioned) per step."""
    conditioner = diff.latent_conditioner
    out = [conv(codes, conditioner[0])]
    for block in conditioner[1:]:
        out += attention_block(block, codes)
    return out + diffusion_forward(diff, frames) * (2 * steps)


def vocoder_stage(voc: UnivNetGenerator, frames: int) -> list[MatMul]:
    """UnivNet on `frames` mel frames plus its 10 padding frames."""
    frames += MEL_PAD_FRAMES
    out, length = [conv(frames, voc.conv_pre)], frames
    for block in voc.res_stack:
        up = block.convt_pre[1]  # ConvTranspose1d weight (in, out, kernel): (length, in) @ (in, out·kernel)
        up_weight = up.weight.view(up.in_channels, -1)
        out.append(MatMul(length, up.in_channels, up_weight.shape[1], weight=up_weight))
        length *= up.stride[0]
        kp = block.kernel_predictor
        out += [conv(frames, kp.input_conv[0]), conv(frames, kp.kernel_conv), conv(frames, kp.bias_conv)]
        out += [conv(frames, residual[i]) for residual in kp.residual_convs for i in (1, 3)]
        for conv_block in block.conv_blocks:
            out.append(conv(length, conv_block[1]))
            # location-variable conv: per frame, (hop, in·taps) @ (in·taps, out)
            lvc_in = kp.conv_in_channels * LVC_KERNEL_SIZE
            out.append(MatMul(block.cond_hop_length, lvc_in, kp.conv_out_channels, batch=frames))
    return out + [conv(length, voc.conv_post[1])]


def total_flops(matmuls: list[MatMul]) -> int:
    return sum(mm.flops for mm in matmuls)


class Replay:
    """The products of a matmul list as plain torch.matmul calls (weights shared with the model)."""

    def __init__(self, matmuls: list[MatMul], dtype: torch.dtype = torch.float32):
        generator = torch.Generator().manual_seed(SEED)
        operands: dict[tuple[int, ...], torch.Tensor] = {}

        def random(*shape: int) -> torch.Tensor:
            shape = shape[1:] if shape[0] == 1 else shape
            if shape not in operands:
                operands[shape] = torch.randn(shape, generator=generator).to(dtype)
            return operands[shape]

        self.flops = total_flops(matmuls)
        self.pairs = [(random(mm.batch, mm.m, mm.k),
                       random(mm.batch, mm.k, mm.n) if mm.weight is None else mm.weight) for mm in matmuls]

    def seconds(self) -> float:
        with torch.inference_mode():
            start = time.perf_counter()
            for a, b in self.pairs:
                torch.matmul(a, b)
            return time.perf_counter() - start


# ------------------------------------------------------------------ measurement helpers


@dataclass
class Row:
    """One line of the stage table; `flops` counts the stage's products, which the replay also runs."""

    name: str
    seconds: float
    gemm_seconds: float
    flops: int
    note: str

    @property
    def ratio(self) -> float:
        return self.gemm_seconds / self.seconds


@dataclass
class Report:
    verdicts: list[str] = field(default_factory=list)

    def say(self, text: str = "") -> None:
        print(text, flush=True)

    def target(self, label: str, passed: bool | None, detail: str) -> None:
        verdict = "n/a " if passed is None else ("PASS" if passed else "MISS")
        self.verdicts.append(f"  [{verdict}] {label}: {detail}")


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


@contextlib.contextmanager
def forced_code_count(ar: UnifiedVoice, count: int) -> Iterator[None]:
    """Every decode masks the stop code for its first `count` steps (see the docstring).

    `decode_codes` is the loop both `inference_codes` and `sample_codes` go through.
    """
    original = ar.decode_codes

    def forced(*args, **kwargs):
        kwargs["min_new_tokens"] = max(kwargs.get("min_new_tokens", 0), count)
        return original(*args, **kwargs)

    ar.decode_codes = forced
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="A candidate never produced a stop token")
            yield
    finally:
        del ar.decode_codes


@contextlib.contextmanager
def counting_calls(module: nn.Module, *names: str) -> Iterator[dict[str, list[int]]]:
    """Record the batch rows of every call of `module.<name>` (an instance wrapper, removed on exit)."""
    calls: dict[str, list[int]] = {name: [] for name in names}
    for name in names:
        original = getattr(module, name)

        def wrapper(x, *args, _original=original, _calls=calls[name], **kwargs):
            _calls.append(x.shape[0])
            return _original(x, *args, **kwargs)

        setattr(module, name, wrapper)
    try:
        yield calls
    finally:
        for name in names:
            delattr(module, name)


def seeded_model(name: str) -> nn.Module:
    torch.manual_seed(SEED + ALL_MODELS.index(name))
    model = registry.build(name).requires_grad_(False)
    prepare = getattr(model, "prepare_for_inference", None)
    if callable(prepare):
        prepare()  # the vocoder folds its weight norm, as registry.load does
    return model


def measure_load_rss() -> None:
    """Child-process entry: build every model in fp32 and print the peak RSS in bytes."""
    models = [seeded_model(name) for name in ALL_MODELS]
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss is KiB on Linux, bytes on macOS
    params = sum(p.numel() for m in models for p in m.parameters())
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale, params)


def load_rss_in_fresh_process() -> tuple[int, int]:
    out = subprocess.run([sys.executable, "-m", "benchmarks.bench_core", "--measure-load-rss"], cwd=REPO_ROOT,
                         capture_output=True, text=True, check=True)
    rss, params = out.stdout.split()[-2:]
    return int(rss), int(params)


def cpu_description() -> tuple[str, str, list[str]]:
    """(model name, torch capability, bf16-related /proc/cpuinfo flags)."""
    name, flags = platform.processor() or platform.machine(), set()
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                name = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    bf16 = sorted(flags & {"avx512_bf16", "amx_bf16", "amx_tile", "avx512_fp16"})
    return name, torch.backends.cpu.get_cpu_capability(), bf16


def square_gemm_gflops(dtype: torch.dtype, reps: int) -> float:
    a, b = (torch.randn(PEAK_GEMM_SIZE, PEAK_GEMM_SIZE).to(dtype) for _ in range(2))
    torch.mm(a, b)
    best = min(timed(lambda: torch.mm(a, b)) for _ in range(reps))
    return 2 * PEAK_GEMM_SIZE**3 / best / 1e9


# ------------------------------------------------------------------ the measurements


@dataclass
class Bench:
    """Everything the sections share."""

    tts: TextToSpeech
    latents: ConditioningLatents
    tokens: torch.Tensor
    shape: Shape
    report: Report

    @property
    def ar(self) -> UnifiedVoice:
        return self.tts.models.autoregressive


def run_p1(bench: Bench, shape: Shape):
    """One tts() call of `shape`; returns (result, CLVP call counts)."""
    with forced_code_count(bench.ar, shape.codes), \
            counting_calls(bench.tts.models.clvp, "encode_text", "encode_speech") as calls:
        result = bench.tts.tts(
            TEXT, conditioning_latents=bench.latents, seed=SEED, num_autoregressive_samples=shape.candidates,
            sample_batch_size=shape.candidates, max_mel_tokens=shape.codes,
            diffusion_iterations=shape.diffusion_steps, cond_free=True, k=1, enable_redaction=False,
        )
    return result, calls


def stage_inventories(bench: Bench, frames: int) -> dict[str, list[MatMul]]:
    m, shape, text_ids = bench.tts.models, bench.shape, bench.tokens.shape[1]
    return {
        "autoregressive": ar_stage(m.autoregressive, text_ids + 3, shape.candidates, shape.codes),
        "ranking": clvp_stage(m.clvp, text_ids, shape.candidates, shape.codes),
        "latent_pass": latent_pass(m.autoregressive, text_ids, shape.codes),
        "diffusion": diffusion_stage(m.diffusion, shape.codes, frames, shape.diffusion_steps),
        "vocoder": vocoder_stage(m.vocoder, frames),
    }


def p1_section(bench: Bench) -> tuple[int, dict[str, list[int]]]:
    """The stage table: `repeats` tts() calls, each followed by the replay of every stage's products.

    Returns the mel frames of the output and the CLVP call counts of the last call.
    """
    shape, report = bench.shape, bench.report
    run_p1(bench, Shape(codes=8, diffusion_steps=1))  # warm-up: thread pools, allocator, kernels
    seconds: dict[str, list[float]] = {}
    gemm: dict[str, list[float]] = {}
    replays: dict[str, Replay] = {}
    for _ in range(shape.repeats):
        result, calls = run_p1(bench, shape)
        frames = result.waveforms[0].shape[1] // bench.tts.models.vocoder.hop_length
        replays = replays or {stage: Replay(mms) for stage, mms in stage_inventories(bench, frames).items()}
        for stage, replay in replays.items():
            seconds.setdefault(stage, []).append(result.timings_s[stage])
            gemm.setdefault(stage, []).append(replay.seconds())
    text_ids, samples = bench.tokens.shape[1], result.waveforms[0].shape[1]
    audio_s = samples / result.sample_rate
    notes = {
        "autoregressive": f"{shape.candidates} rows x {shape.codes} steps, "
                          f"{1e3 * min(seconds['autoregressive']) / shape.codes:.0f} ms/step",
        "ranking": f"text 1x{text_ids}, speech {shape.candidates}x{shape.codes}",
        "latent_pass": f"1 row x {text_ids + shape.codes + 5} positions",
        "diffusion": f"{shape.diffusion_steps} steps x 2 (cond-free), {frames} frames",
        "vocoder": f"{frames} frames -> {samples} samples",
    }
    labels = {"autoregressive": "AR", "ranking": "CLVP", "latent_pass": "latent pass"}
    rows = [Row(labels.get(stage, stage), min(seconds[stage]), min(gemm[stage]), replay.flops, notes[stage])
            for stage, replay in replays.items()]
    report.say(f"\nP1 stages: fp32, fastest of {shape.repeats} tts() calls, text of {text_ids} ids, "
               f"{audio_s:.2f} s of audio; RTF = time / audio seconds")
    header = (f"{'stage':<12}{'time s':>9}{'RTF':>8}{'GFLOP':>9}{'GFLOP/s':>9}{'GEMM GF/s':>11}{'ratio':>7}"
              "  shape")
    report.say(header)
    report.say("-" * len(header))
    for r in rows:
        report.say(f"{r.name:<12}{r.seconds:>9.2f}{r.seconds / audio_s:>8.2f}{r.flops / 1e9:>9.1f}"
                   f"{r.flops / r.seconds / 1e9:>9.1f}{r.flops / r.gemm_seconds / 1e9:>11.1f}{r.ratio:>7.0%}"
                   f"  {r.note}")
    total = sum(r.seconds for r in rows)
    report.say(f"{'total':<12}{total:>9.2f}{total / audio_s:>8.2f}")
    return frames, calls


def ar_stage_seconds(bench: Bench, use_kv_cache: bool) -> float:
    """The AR stage alone (sampling included), as sample_codes runs it, with or without the KV cache."""
    ar, shape, options = bench.ar, bench.shape, GenerationOptions()
    next_code = make_code_sampler(
        repetition_penalty=options.repetition_penalty, temperature=options.temperature, top_p=options.top_p,
        top_k=options.top_k, start_token=ar.start_mel_token,
    )
    torch.manual_seed(SEED)
    with torch.inference_mode():
        start = time.perf_counter()
        codes = ar.inference_codes(bench.latents.autoregressive, bench.tokens, shape.codes,
                                   num_return_sequences=shape.candidates, use_kv_cache=use_kv_cache,
                                   next_code=next_code, min_new_tokens=shape.codes, retire_finished=True)
        seconds = time.perf_counter() - start
    assert codes.shape == (shape.candidates, shape.codes), codes.shape
    return seconds


def kv_cache_section(bench: Bench) -> None:
    with_cache = ar_stage_seconds(bench, use_kv_cache=True)
    without = ar_stage_seconds(bench, use_kv_cache=False)
    bench.report.say(f"\nAR stage, KV cache on {with_cache:.2f} s vs off (full recomputation every step) "
                     f"{without:.2f} s: on/off = {with_cache / without:.3f} "
                     f"(x{without / with_cache:.1f} faster)")


@dataclass
class DecodeTiming:
    step_s: float  # fastest cached decode step (next_mel_logits)
    gemm_s: float  # fastest replay of the same step's products
    flops: int
    logits: torch.Tensor  # (steps, rows, vocab) float32

    @property
    def gemm_ratio(self) -> float:
        return self.gemm_s / self.step_s


def decode_timing(bench: Bench, rows: int, dtype: torch.dtype = torch.float32) -> DecodeTiming:
    """Time cached decode steps of `rows` rows, each followed by a replay of its products.

    The fed codes are the same in every call, so the logits of two precisions compare position by position.
    """
    ar, steps = bench.ar, bench.shape.decode_steps
    prompt = bench.tokens.shape[1] + 3
    replay = Replay(decode_step(ar, rows, prompt + steps // 2), dtype)
    codes = torch.randint(0, 8192, (rows, steps), generator=torch.Generator().manual_seed(SEED))
    step_times, gemm_times, logits = [], [], []
    with torch.inference_mode():
        cache = ar.prefill_prompt(bench.latents.autoregressive.to(dtype), bench.tokens)
        cache = cache.expand(rows, capacity=prompt + 1 + steps)
        x = ar.embed_mel(torch.full((rows, 1), ar.start_mel_token), 0, True)
        for i in range(steps):
            start = time.perf_counter()
            logits.append(ar.next_mel_logits(x, cache).float())
            step_times.append(time.perf_counter() - start)
            gemm_times.append(replay.seconds())
            x = ar.embed_mel(codes[:, i : i + 1], i + 1, True)
    return DecodeTiming(min(step_times), min(gemm_times), replay.flops, torch.stack(logits))


def decode_section(bench: Bench) -> DecodeTiming:
    shape = bench.shape
    decode = decode_timing(bench, shape.decode_rows)
    bench.report.say(
        f"\nAR decode step, {shape.decode_rows} rows fp32 (fastest of {shape.decode_steps}): "
        f"{1e3 * decode.step_s:.1f} ms = {decode.flops / decode.step_s / 1e9:.1f} GFLOP/s; same-shape GEMMs "
        f"{1e3 * decode.gemm_s:.1f} ms = {decode.flops / decode.gemm_s / 1e9:.1f} GFLOP/s"
    )
    bench.report.target(f"(1) AR decode step at {shape.decode_rows} candidates >= 70% of same-shape GEMM",
                        decode.gemm_ratio >= GEMM_TARGET, f"{decode.gemm_ratio:.0%}")
    return decode


def diffusion_section(bench: Bench, frames: int, square_fp32: float) -> None:
    diffusion, reps = bench.tts.models.diffusion, bench.shape.reps
    replay = Replay(diffusion_forward(diffusion, frames))
    generator = torch.Generator().manual_seed(SEED)
    with torch.inference_mode():
        ar_latents = torch.randn(1, bench.shape.codes, bench.ar.model_dim, generator=generator)
        embeddings = diffusion.timestep_independent(ar_latents, bench.latents.diffusion, frames)
        x = torch.randn(1, diffusion.in_channels, frames, generator=generator)
        t = torch.tensor([2000])
        forward_s, gemm_s = [], []
        for _ in range(reps):
            forward_s.append(timed(lambda: diffusion(x, t, precomputed_aligned_embeddings=embeddings)))
            gemm_s.append(replay.seconds())
    achieved = replay.flops / min(forward_s) / 1e9
    ratio = min(gemm_s) / min(forward_s)
    bench.report.say(f"\ndiffusion forward, {frames} frames (fastest of {reps}): {min(forward_s):.2f} s = "
                     f"{achieved:.1f} GFLOP/s; same-shape GEMMs {min(gemm_s):.2f} s = "
                     f"{replay.flops / min(gemm_s) / 1e9:.1f} GFLOP/s")
    bench.report.target("(2) diffusion forward >= 70% of GEMM peak (its own GEMM shapes)",
                        ratio >= GEMM_TARGET,
                        f"{ratio:.0%} (of the {PEAK_GEMM_SIZE}^3 fp32 GEMM: {achieved / square_fp32:.0%})")


def clvp_section(bench: Bench, calls: dict[str, list[int]]) -> None:
    """Target (3) from the tts() call counts, plus one score_candidates call with two speech batches."""
    clvp, n = bench.tts.models.clvp, bench.shape.ranking_candidates
    codes = torch.randint(0, 8192, (n, 16), generator=torch.Generator().manual_seed(SEED))
    with counting_calls(clvp, "encode_text", "encode_speech") as extra:
        score_candidates(codes, bench.tokens, clvp)
    texts, more_texts = len(calls["encode_text"]), len(extra["encode_text"])
    bench.report.target(
        "(3) CLVP encodes the text once per batch of candidates", texts == 1 and more_texts == 1,
        f"tts(): {texts} text encode for {bench.shape.candidates} candidates (speech encodes of "
        f"{calls['encode_speech']} rows); score_candidates(): {more_texts} text encode for {n} candidates "
        f"(speech encodes of {extra['encode_speech']} rows)",
    )


def bf16_section(bench: Bench, fp32_decode: DecodeTiming, has_bf16: bool) -> None:
    """fp32, bf16 autocast and bf16 weights, timed in the order fp32, autocast, bf16 weights, autocast, fp32
    so that a drift of the machine's load hits every variant alike; each variant keeps its fastest step.

    The model is converted in place (`to(bfloat16)`, then back with `float()`): run this section last,
    its weights are bf16-rounded afterwards. Logits come from each variant's first, exact-weight run.
    """
    shape, report, ar = bench.shape, bench.report, bench.ar
    sizes = (shape.candidates, shape.decode_rows)
    runs: dict[str, dict[int, list[DecodeTiming]]] = {}

    def measure(name: str, dtype: torch.dtype = torch.float32) -> None:
        for rows in sizes:
            runs.setdefault(name, {}).setdefault(rows, []).append(decode_timing(bench, rows, dtype))

    runs["fp32"] = {shape.decode_rows: [fp32_decode]}
    measure("fp32")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        measure("autocast bf16")
    ar.to(torch.bfloat16)
    measure("bf16 weights", torch.bfloat16)
    ar.float()  # same speed as the original fp32 weights
    with torch.autocast("cpu", dtype=torch.bfloat16):
        measure("autocast bf16")
    measure("fp32")

    def step_s(name: str, rows: int) -> float:
        return min(t.step_s for t in runs[name][rows])

    report.say(f"\nAR decode step, bf16 vs fp32 (fastest of {shape.decode_steps} steps per run; xN = fp32 "
               f"time / this; logits compared with fp32 at {shape.decode_rows} rows over every step)")
    reference = runs["fp32"][shape.decode_rows][0].logits
    speedups = {}
    for name, by_rows in runs.items():
        logits = by_rows[shape.decode_rows][0].logits
        error = float((logits - reference).norm() / reference.norm())
        agree = float((logits.argmax(-1) == reference.argmax(-1)).float().mean())
        gemm_ratio = min(t.gemm_s for t in by_rows[shape.decode_rows]) / step_s(name, shape.decode_rows)
        parts = [f"{rows} rows {1e3 * step_s(name, rows):6.1f} ms "
                 f"x{step_s('fp32', rows) / step_s(name, rows):.2f}" for rows in sizes]
        report.say(f"  {name:<14}{'; '.join(parts)}; {gemm_ratio:.0%} of its same-shape GEMMs; "
                   f"logits rel. error {error:.1e}, top-1 agreement {agree:.0%}")
        if name != "fp32" and bool(torch.isfinite(logits).all()) and error < BF16_MAX_ERROR:
            speedups[name] = step_s("fp32", shape.decode_rows) / step_s(name, shape.decode_rows)
    best = max(speedups, key=speedups.get) if speedups else None
    detail = f"{best} x{speedups[best]:.2f} at {shape.decode_rows} rows" if best else "none is correct"
    if not has_bf16:
        report.target("(4) bf16 AR decode >= 2x fp32 (this CPU has no bf16 instructions)", None, detail)
    else:
        passed = best is not None and speedups[best] >= BF16_TARGET
        report.target("(4) bf16 AR decode >= 2x fp32", passed, detail)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="16 codes, 2 diffusion steps, fewer repetitions")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--tokenizer", type=Path, default=REFERENCE_DIR / "tokenizer.json")
    parser.add_argument("--mel-norms", type=Path, default=REFERENCE_DIR / "mel_norms.pth")
    parser.add_argument("--measure-load-rss", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure_load_rss:
        measure_load_rss()
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    shape = QUICK if args.quick else FULL
    report = Report()

    cpu, capability, bf16_flags = cpu_description()
    report.say(f"CPU: {cpu}; torch {torch.__version__}, capability {capability}, bf16 flags: "
               f"{', '.join(bf16_flags) or 'none'}; {torch.get_num_threads()} threads; "
               f"load average {os.getloadavg()[0]:.1f} at start")
    report.say(f"shape: {shape.candidates} candidates x {shape.codes} codes, {shape.diffusion_steps} "
               f"diffusion steps + cond-free{' (--quick)' if args.quick else ''}")

    rss, params = load_rss_in_fresh_process()
    report.target("(5) peak RSS, all 7 models fp32", rss <= RSS_LIMIT_BYTES,
                  f"{rss / 1e9:.2f} GB ({rss / 2**30:.2f} GiB) for {params / 1e6:.0f} M parameters "
                  f"({4 * params / 1e9:.2f} GB of weights), limit {RSS_LIMIT_BYTES / 1e9:.1f} GB, "
                  "measured in a fresh process")

    names = ("autoregressive", "diffusion_decoder", "clvp2", "vocoder")
    ar, diffusion, clvp, vocoder = (seeded_model(name) for name in names)
    tts = TextToSpeech(TTSModels(ar, diffusion, clvp, vocoder), VoiceBpeTokenizer(args.tokenizer),
                       load_mel_norms(args.mel_norms), resolve_device("cpu"))
    generator = torch.Generator().manual_seed(SEED)
    latents = ConditioningLatents(
        torch.randn(1, ar.model_dim, generator=generator),
        torch.randn(1, 2 * diffusion.model_channels, generator=generator), None, "random",
    )
    bench = Bench(tts, latents, tts.encode_text(TEXT), shape, report)

    square = {dtype: square_gemm_gflops(dtype, shape.reps) for dtype in (torch.float32, torch.bfloat16)}
    report.say(f"reference GEMM {PEAK_GEMM_SIZE}^3: fp32 {square[torch.float32]:.0f} GFLOP/s, "
               f"bf16 {square[torch.bfloat16]:.0f} GFLOP/s")
    frames, calls = p1_section(bench)
    kv_cache_section(bench)
    fp32_decode = decode_section(bench)
    diffusion_section(bench, frames, square[torch.float32])
    clvp_section(bench, calls)
    bf16_section(bench, fp32_decode, has_bf16=bool({"avx512_bf16", "amx_bf16"} & set(bf16_flags)))

    report.say(f"\nload average {os.getloadavg()[0]:.1f} at the end\ntargets:")
    for line in report.verdicts:
        report.say(line)


if __name__ == "__main__":
    main()
