"""TorToiSe TTS core: a from-scratch, checkpoint-compatible re-implementation. No UI, no app imports."""

from tortoise import models  # the model registry: models.build(name) and models.load(name, path)
from tortoise.api import OFFICIAL_TEXT_TOKEN_LIMIT, TextToSpeech, TTSModels, TTSResult
from tortoise.audio import OUTPUT_SAMPLE_RATE, VOICE_SAMPLE_RATE, load_audio, read_audio, resample, save_wav
from tortoise.consistency import reads_codes, voice_clip_mels, waveform_similarity
from tortoise.device import (
    cpu_supports_bf16,
    cuda_device_count,
    list_devices,
    release_accelerator_memory,
    torch_build_info,
)
from tortoise.download import INFERENCE_FILES, MODEL_FILES, ModelStore, checkpoint_problem
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
from tortoise.latents import MIN_CLIP_SAMPLES, ConditioningLatents
from tortoise.mel import load_mel_norms
from tortoise.options import (
    PRESETS,
    SAMPLERS,
    GenerationOptions,
    normalize_preset_name,
    normalize_sampler_name,
)
from tortoise.redaction import CTC_TOKENIZER_ID, WAV2VEC2_MODEL_ID
from tortoise.streaming import StreamSettings
from tortoise.text import english_cleaners, split_and_recombine_text, split_text_by_tokens
from tortoise.tokenizer import UNK_TOKEN_ID, VoiceBpeTokenizer
from tortoise.training import release_memory, resident_bytes

__all__ = [
    "AudioLoadError",
    "CTC_TOKENIZER_ID",
    "ConditioningLatents",
    "FAST_UNUSED_OPTIONS",
    "FastStream",
    "GenerationCancelled",
    "GenerationOptions",
    "INFERENCE_FILES",
    "InvalidInputError",
    "MIN_CLIP_SAMPLES",
    "MODEL_FILES",
    "ModelDownloadError",
    "ModelStore",
    "OFFICIAL_TEXT_TOKEN_LIMIT",
    "OUTPUT_SAMPLE_RATE",
    "PRESETS",
    "SAMPLERS",
    "StreamSettings",
    "TTSModels",
    "TTSResult",
    "TextToSpeech",
    "TextTooLongError",
    "TortoiseError",
    "UNK_TOKEN_ID",
    "VOICE_SAMPLE_RATE",
    "VoiceBpeTokenizer",
    "WAV2VEC2_MODEL_ID",
    "WeightsError",
    "checkpoint_problem",
    "cpu_supports_bf16",
    "cuda_device_count",
    "english_cleaners",
    "list_devices",
    "load_audio",
    "load_mel_norms",
    "models",
    "normalize_preset_name",
    "normalize_sampler_name",
    "read_audio",
    "reads_codes",
    "release_accelerator_memory",
    "release_memory",
    "resample",
    "resident_bytes",
    "save_wav",
    "split_and_recombine_text",
    "split_text_by_tokens",
    "torch_build_info",
    "voice_clip_mels",
    "waveform_similarity",
]
