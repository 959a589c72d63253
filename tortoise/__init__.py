"""TorToiSe TTS core: a from-scratch, checkpoint-compatible re-implementation. No UI, no app imports."""

from tortoise.errors import (
    AudioLoadError,
    GenerationCancelled,
    InvalidInputError,
    ModelDownloadError,
    TextTooLongError,
    TortoiseError,
    WeightsError,
)

__all__ = [
    "AudioLoadError",
    "GenerationCancelled",
    "InvalidInputError",
    "ModelDownloadError",
    "TextTooLongError",
    "TortoiseError",
    "WeightsError",
]
