"""A project service over a FakeTTS whose audio depends on the seed, so takes differ."""

import math

import pytest
import torch

from src.projects import ProjectService
from src.settings import AppSettings, GenerateDefaults
from tests.app_doubles import FakeTTS, make_context, make_voice
from tortoise.api import TTSResult
from tortoise.audio import OUTPUT_SAMPLE_RATE
from tortoise.options import GenerationOptions

SIX = "One. Two two. Three three three.\nFour four. Five. Six six six six."


class SeededTTS(FakeTTS):
    """FakeTTS whose tone (pitch and length) depends on the text and the seed."""

    def tts(
        self,
        text,
        voice_samples=None,
        conditioning_latents=None,
        preset=None,
        seed=None,
        progress=None,
        cancel=None,
        **overrides,
    ):
        options = GenerationOptions.from_preset(preset, **overrides)
        self.encode_text(text)
        with self.lock:
            self.calls.append((text, dict(overrides, seed=seed)))
        if cancel is not None and cancel():
            from tortoise.errors import GenerationCancelled

            raise GenerationCancelled("cancelled")
        waves = []
        for k in range(options.k):
            seconds = 0.1 + 0.01 * len(text) + 0.001 * ((seed or 0) % 97) + 0.01 * k
            t = torch.arange(int(seconds * OUTPUT_SAMPLE_RATE)) / OUTPUT_SAMPLE_RATE
            pitch = 150 + (seed or 0) % 300 + 20 * k
            waves.append((0.3 * torch.sin(2 * math.pi * pitch * t)).reshape(1, -1))
        return TTSResult(waves, options, int(seed or 1), notes=[], timings_s={})


@pytest.fixture
def tts():
    return SeededTTS()


@pytest.fixture
def ctx(tmp_path, tts):
    context = make_context(tmp_path, tts, settings=AppSettings(output_sample_rate=24000))
    make_voice(context.paths.voices_dir, "amy", (1.0,))
    return context


@pytest.fixture
def service(ctx) -> ProjectService:
    return ctx.projects


@pytest.fixture
def values() -> GenerateDefaults:
    return GenerateDefaults(seed=1234, num_autoregressive_samples=2, candidates=1, voice="amy")
