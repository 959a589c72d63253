"""TorToiSe TTS core: a from-scratch, checkpoint-compatible re-implementation. No UI, no app imports."""

from tortoise.api import TextToSpeech, TTSModels, TTSResult
from tortoise.audio import OUTPUT_SAMPLE_RATE, VOICE_SAMPLE_RATE, load_audio, read_audio, resample, save_wav
from tortoise.device import cpu_supports_bf16, cuda_device_count, list_devices, release_accelerator_memory
from tortoise.errors import (
    AudioLoadError,
    GenerationCancelled,
    InvalidInputError,
    ModelDownloadError,
    TextTooLongError,
    TortoiseError,
    WeightsError,
)
from tortoise.latents import MIN_CLIP_SAMPLES, ConditioningLatents
from tortoise.options import (
    PRESETS,
    SAMPLERS,
    GenerationOptions,
    normalize_preset_name,
    normalize_sampler_name,
)
from tortoise.text import split_and_recombine_text
from tortoise.tokenizer import UNK_TOKEN_ID, VoiceBpeTokenizer

__all__ = [
    "AudioLoadError",
    "ConditioningLatents",
    "GenerationCancelled",
    "GenerationOptions",
    "InvalidInputError",
    "MIN_CLIP_SAMPLES",
    "ModelDownloadError",
    "OUTPUT_SAMPLE_RATE",
    "PRESETS",
    "SAMPLERS",
    "TTSModels",
    "TTSResult",
    "TextToSpeech",
    "TextTooLongError",
    "TortoiseError",
    "UNK_TOKEN_ID",
    "VOICE_SAMPLE_RATE",
    "VoiceBpeTokenizer",
    "WeightsError",
    "cpu_supports_bf16",
    "cuda_device_count",
    "list_devices",
    "load_audio",
    "normalize_preset_name",
    "normalize_sampler_name",
    "read_audio",
    "release_accelerator_memory",
    "resample",
    "save_wav",
    "split_and_recombine_text",
]
