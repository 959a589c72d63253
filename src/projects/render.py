"""Rendering one segment's takes with the app's generation service (the Generator's engine, voice
library and option mapping), without creating a Generate run folder.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from src.engine import TTSEngine
from src.errors import AppError
from src.generate import GenerateRequest, Generator, check_request, cut_brackets
from src.metadata import GenerationMetadata, encode_latents
from src.projects.state import (
    META_INDEX,
    META_PAUSE,
    META_PROJECT,
    META_ROW,
    META_TASK,
    Project,
    Row,
    now_iso,
)
from src.prompting import apply_emotion
from src.settings import GenerateDefaults
from tortoise import OUTPUT_SAMPLE_RATE


@dataclass(frozen=True)
class Takes:
    """What one render produced.

    Attributes:
        waves: one float32 mono array per candidate, at `sample_rate` (24 kHz).
        seed: the seed used.
        seconds: wall time of the render.
        model_name / model_hash: the AR model that made them.
        latents_b64: the voice latents to embed in the metadata, or None.
        notes: remarks from TorToiSe and the voice library.
        worker: which worker rendered them (for the queue's display).
    """

    waves: tuple[np.ndarray, ...]
    seed: int
    seconds: float
    model_name: str | None = None
    model_hash: str | None = None
    latents_b64: str | None = None
    notes: tuple[str, ...] = ()
    sample_rate: int = OUTPUT_SAMPLE_RATE
    worker: str = "local"


class WorkerLost(AppError):
    """The worker rendering a segment died (a crashed process, a lost Ray node); it is retried elsewhere."""


# (request with text/voice/seed/candidates filled in) -> takes; several implementations: the app's own
# engine, one engine per GPU, a Ray actor.
Renderer = Callable[[GenerateRequest], Takes]


def build_request(settings: dict[str, Any], *, text: str, voice: str, seed: int) -> GenerateRequest:
    """A checked GenerateRequest for one segment from a project's (and row's) Generate values.

    Raises:
        InvalidInput / SettingsError: a value out of range (the message names the control).
    """
    names = {f.name for f in dataclasses.fields(GenerateRequest)}
    values = {k: v for k, v in settings.items() if k in names}
    values.update(text=text, voice=voice, seed=seed, delimiter="\n", mic_audio=None)
    return check_request(GenerateRequest(**values))


def render_takes(
    generator: Generator, request: GenerateRequest, engine: TTSEngine | None = None, worker: str = "local"
) -> Takes:
    """Render `request.candidates` takes of `request.text` (one line) with `request.seed`.

    Args:
        generator: the app's generation service (voices, settings, option mapping).
        request: from `build_request`; its seed must be non-zero (the caller picks seeds).
        engine: the engine to run on (default: the generator's; one per GPU when scaled out).
        worker: a name for this worker.

    Raises:
        TextTooLongError: the segment does not fit one pass (the caller splits it).
        GenerationCancelled: the engine's Stop flag was set.
    """
    engine = engine or generator.engine
    settings = generator.settings()
    started = time.perf_counter()
    prompt = apply_emotion(request.text, request.emotion, request.custom_emotion)
    with engine.job(half=request.half_precision) as tts:
        tts.encode_text(prompt)
        with engine.latents_on_cpu(tts, settings.force_cpu_for_conditioning_latents):
            voice = generator.voices.conditioning(
                request.voice,
                tts,
                voice_chunks=request.voice_chunks,
                slim=settings.slim_latents,
                max_chunk_s=settings.latents_max_chunk_size,
                seed=request.seed,
            )
        engine.check_cancelled()
        options = generator.options_for(request, settings)  # the Generate tab's knob mapping
        result = tts.tts(
            prompt,
            conditioning_latents=voice.latents,
            seed=request.seed,
            cancel=engine.is_cancelled,
            **options,
        )
        engine.check_cancelled()
        latents = None
        if voice.embed_latents and settings.embed_output_metadata:
            latents = encode_latents(voice.latents.to_bytes())
        notes: list[str] = []
        waves = tuple(
            cut_brackets(tts, w, prompt, request.enable_redaction, notes).reshape(-1).numpy()
            for w in result.waveforms
        )
        return Takes(
            waves,
            int(request.seed),
            time.perf_counter() - started,
            getattr(tts, "model_name", None),
            getattr(tts, "model_hash", None) or None,
            latents,
            tuple(voice.notes) + tuple(result.notes) + tuple(dict.fromkeys(notes)),
            int(result.sample_rate),
            worker,
        )


def take_metadata(
    project: Project, row: Row, index: int, takes: Takes, text: str, task: str | None
) -> GenerationMetadata:
    """The embedded record of one take: the row's Generate values and what made it, plus the project, row
    id and position (so a lost project.json can be rebuilt from the takes)."""
    names = {f.name for f in dataclasses.fields(GenerateDefaults)}
    values = GenerateDefaults(**{k: v for k, v in {**project.settings, **row.settings}.items() if k in names})
    extra = {META_PROJECT: project.name, META_ROW: row.id, META_INDEX: index, META_PAUSE: row.pause_s}
    if task:
        extra[META_TASK] = task
    return GenerationMetadata.from_generate_defaults(
        dataclasses.replace(values, voice=row.voice or project.voice),
        text=text,
        delimiter="",
        seed=takes.seed,
        time_taken_s=round(takes.seconds, 3),
        datetime=now_iso(),
        model=takes.model_name,
        model_hash=takes.model_hash,
        latents=takes.latents_b64,
        extra=extra,
    )
