"""TorToiSe TTS core: a from-scratch, checkpoint-compatible re-implementation. No UI, no app imports."""

from tortoise.api import OFFICIAL_TEXT_TOKEN_LIMIT, TextToSpeech, TTSModels, TTSResult
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
from tortoise.tokenizer import UNK_TOKEN_ID, VoiceBpeTokenizer

__all__ = [
    "OFFICIAL_TEXT_TOKEN_LIMIT",
    "PRESETS",
    "SAMPLERS",
    "UNK_TOKEN_ID",
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
    "VoiceBpeTokenizer",
    "WeightsError",
]
