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
from tortoise.latents import ConditioningLatents
from tortoise.options import PRESETS, SAMPLERS, GenerationOptions

__all__ = [
    "PRESETS",
    "SAMPLERS",
    "AudioLoadError",
    "ConditioningLatents",
    "GenerationCancelled",
    "GenerationOptions",
    "InvalidInputError",
    "ModelDownloadError",
    "TTSModels",
    "TTSResult",
    "TextToSpeech",
    "TextTooLongError",
    "TortoiseError",
    "WeightsError",
]
