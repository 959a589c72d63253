"""Half precision of the pipeline's models, and the warm-up run after loading.

Half precision stores the weights in the reduced dtype instead of autocasting them: on CUDA the AR,
the diffusion decoder and the vocoder in fp16 (autocast cast every weight on every decode step, which
made half slower than fp32); on CPUs with bf16 instructions the AR in bf16 (about 2x fp32 there, against
1.4x for bf16 autocast). CLVP keeps fp32 weights and runs under the plan's autocast.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from tortoise.device import DevicePlan
from tortoise.sampling import CodeSampler

log = logging.getLogger(__name__)

CONVERTED = ("autoregressive", "diffusion", "vocoder")


def dtype_of(model: nn.Module) -> torch.dtype | None:
    """The dtype of a model's (first) parameter, or None for a model without parameters."""
    first = next(model.parameters(), None)
    return None if first is None else first.dtype


def half_models(plan: DevicePlan) -> tuple[str, ...]:
    """The models stored in `plan.weights_dtype`: AR, diffusion and vocoder on CUDA, the AR on CPU."""
    if not plan.half:
        return ()
    return CONVERTED if plan.kind == "cuda" else ("autoregressive",)


def apply_precision(models: Any, plan: DevicePlan, loaders: dict[str, Callable[[], nn.Module]]) -> None:
    """Bring `models` (a TTSModels) to the plan's precision, in place.

    Conversion goes parameter by parameter (`Module.to`), so no second copy of a model is held. A model
    going back to fp32 is loaded afresh through `loaders[name]` when there is one, since upcasting keeps
    the half-precision rounding (then a warning is logged). Captured decode graphs are dropped first.
    """
    from tortoise.models.ar_graphs import release_graphs

    release_graphs(models.autoregressive)
    reduced = half_models(plan)
    for name in CONVERTED:
        model = getattr(models, name)
        want = plan.weights_dtype if name in reduced else torch.float32
        if dtype_of(model) in (want, None):  # nothing to convert (a stand-in without weights)
            continue
        if want == torch.float32 and name in loaders:
            setattr(models, name, None)
            del model
            gc.collect()
            plan.empty_cache()
            fresh = loaders[name]().eval().requires_grad_(False)
            setattr(models, name, fresh.to(plan.vocoder_device if name == "vocoder" else plan.storage_device))
            continue
        if want == torch.float32:
            log.warning("%s upcast to fp32 keeps its half-precision rounding until it is reloaded", name)
        model.to(want)
    models.autoregressive.cuda_graphs = plan.use_cuda_graphs


def warm_up(models: Any, plan: DevicePlan, rows: list[int]) -> float:
    """Capture the AR decode graphs for each batch size in `rows` and run the diffusion decoder and the
    vocoder once
    at a tiny size (kernel selection, library start-up), so the first generation runs at full speed.

    Returns the seconds it took (also logged). Failures are logged, never raised.
    """
    started = time.perf_counter()
    try:
        with torch.inference_mode():
            for count in rows:
                _warm_ar(models.autoregressive, plan, count)
            _warm_diffusion(models.diffusion, plan)
            vocoder = models.vocoder
            with plan.on_device(vocoder, plan.vocoder_device):
                mel = torch.zeros(1, vocoder.n_mel_channels, 8, dtype=dtype_of(vocoder))
                vocoder.inference(mel.to(plan.vocoder_device))
    except Exception:  # boundary: warming up is an optimisation only
        log.warning("warm-up failed; the first generation will be slower", exc_info=True)
    seconds = time.perf_counter() - started
    log.info("warm-up (decode graphs for %s rows) took %.2f s", rows, seconds)
    return seconds


def _warm_ar(ar: nn.Module, plan: DevicePlan, rows: int) -> None:
    with plan.on_device(ar):
        cond = torch.zeros(1, ar.model_dim, device=plan.device, dtype=dtype_of(ar))
        tokens = torch.tensor([[2, 0]], device=plan.device)
        sampler = CodeSampler(repetition_penalty=2.0, temperature=0.8, top_p=0.8, top_k=50,
                              start_token=ar.start_mel_token)  # the sampling kernels warm up too
        ar.inference_codes(cond, tokens, 2, num_return_sequences=rows, next_code=sampler, check_every=2)


def _warm_diffusion(diffusion: nn.Module, plan: DevicePlan) -> None:
    with plan.on_device(diffusion):
        device = plan.device
        latents = torch.zeros(1, 4, diffusion.latent_conditioner[0].in_channels, device=device)
        voice = torch.zeros(1, 2 * diffusion.model_channels, device=device)
        embeddings = diffusion.timestep_independent(latents, voice, 16)
        x = torch.zeros(2, diffusion.in_channels, 16, device=device)
        t = torch.zeros(2, dtype=torch.long, device=device)
        diffusion(x, t, precomputed_aligned_embeddings=embeddings, conditioning_free=torch.tensor(
            [False, True], device=device))
