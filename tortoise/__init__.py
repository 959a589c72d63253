"""TorToiSe TTS core: a from-scratch, checkpoint-compatible re-implementation. No UI, no app imports."""

from tortoise.api import TextToSpeech, TTSModels, TTSResult
from tortoise.errors import (
    AudioLoadError,
    GenerationCancelled,
    InvalidInputError,
    ModelDownloadError,
    TextTooLongError,
    TortoiseError,
    WeightsError,
)
from tortoise.fast import FAST_UNUSED_OPTIONS, FastStream
from tortoise.latents import ConditioningLatents
from tortoise.options import PRESETS, SAMPLERS, GenerationOptions
from tortoise.streaming import StreamSettings

__all__ = [
    "FAST_UNUSED_OPTIONS",
    "PRESETS",
    "SAMPLERS",
    "AudioLoadError",
    "ConditioningLatents",
    "FastStream",
    "GenerationCancelled",
    "GenerationOptions",
    "InvalidInputError",
    "ModelDownloadError",
    "StreamSettings",
    "TTSModels",
    "TTSResult",
    "TextToSpeech",
    "TextTooLongError",
    "TortoiseError",
    "WeightsError",
]
