"""Files as the Generate tab writes them, for the History/Utilities tests: a clip with embedded
metadata (optionally with latents), a sidecar-only clip, a bare clip, and malicious latents."""

from __future__ import annotations

import base64
import io
import pickle
from dataclasses import replace
from pathlib import Path

import torch

from src.metadata import GenerationMetadata, encode_latents
from src.results import save_clip
from tests.conftest import speech_like
from tortoise.latents import ConditioningLatents

RATE = 24000


class Payload:
    """Unpickling this calls Path.write_text(marker, 'pwned'): it runs code if ever loaded unsafely."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pwned"))


def malicious_latents_b64(marker: Path, *, container: str = "torch_zip") -> str:
    """Base64 of a `.pth` whose unpickling would create `marker`."""
    if container == "torch_zip":
        buf = io.BytesIO()
        torch.save({"autoregressive": Payload(marker), "diffusion": torch.zeros(1, 4)}, buf)
        data = buf.getvalue()
    else:
        data = pickle.dumps({"autoregressive": Payload(marker)}, protocol=2)
    return base64.b64encode(data).decode("ascii")


def tiny_latents(seed: int = 0) -> ConditioningLatents:
    g = torch.Generator().manual_seed(seed)
    return ConditioningLatents(torch.randn(1, 16, generator=g), torch.randn(1, 32, generator=g))


def metadata(**changes) -> GenerationMetadata:
    values = dict(
        text="Hello there.",
        voice="amy",
        seed=1234,
        candidates=1,
        num_autoregressive_samples=4,
        diffusion_iterations=6,
        temperature=0.5,
        diffusion_sampler="DDIM",
        breathing_room=8,
        cvvp_weight=0.0,
        top_p=0.7,
        diffusion_temperature=0.9,
        length_penalty=1.5,
        repetition_penalty=2.5,
        cond_free_k=3.0,
        experimentals=("Conditioning-Free",),
        time_taken_s=1.23456,
        datetime="2023-02-28T12:00:05",
        model="tiny_autoregressive",
        model_hash="tiny0001",
        emotion="None",
    )
    values.update(changes)
    return GenerationMetadata(**values)


def write_generated(
    path: Path, meta: GenerationMetadata | None = None, *, embed=True, seconds=1.0
) -> Path:
    """A speech-like clip at 24 kHz with `meta` embedded (or in a sidecar with embed=False)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_clip(path, speech_like(seconds, RATE), RATE, meta, embed=embed)


def with_latents(
    meta: GenerationMetadata, latents: ConditioningLatents | None = None
) -> GenerationMetadata:
    return replace(meta, latents=encode_latents((latents or tiny_latents()).to_bytes()))
