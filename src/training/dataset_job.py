"""Prepare Dataset as one job beside generation: check the clips and the Whisper model first, then wait
for the TTS engine (telling the queue position), unload it, and build the dataset; a failure leaves no
new folder behind."""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from src.doctor import whisper_model_file
from src.engine import TTSEngine
from src.errors import DatasetEmpty
from src.ffmpeg import FfmpegError, find_ffmpeg
from src.paths import AppPaths
from src.training.asr import Transcriber
from src.training.dataset import DatasetOptions, DatasetSummary, list_audio_files, prepare_dataset
from tortoise import VoiceBpeTokenizer

log = logging.getLogger(__name__)

ProgressFn = Callable[[float, str], None]


@dataclass(frozen=True)
class PreparedDataset:
    summary: DatasetSummary
    notes: tuple[str, ...]


def ensure_transcriber(paths: AppPaths, transcriber: Transcriber) -> None:
    """Make sure the Whisper model can be used before anything is unloaded: a cached model is enough;
    one that is not there is loaded (downloaded) now, so that a failure leaves the TTS loaded.

    Raises:
        AsrUnavailable: the backend or the model cannot be loaded (the message says what to do).
    """
    cached = whisper_model_file(paths, transcriber.backend, transcriber.model_name)
    if cached is None and not transcriber.is_loaded:
        transcriber.load()


def prepare_voice_dataset(
    paths: AppPaths,
    engine: TTSEngine,
    voice_dir: Path,
    transcriber: Transcriber,
    language: str,
    options: DatasetOptions,
    progress: ProgressFn | None = None,
    *,
    tokenizer: VoiceBpeTokenizer | None = None,
    ffmpeg_path: str | os.PathLike[str] | None = None,
) -> PreparedDataset:
    """Check, wait for the engine, unload the TTS, then `src.training.dataset.prepare_dataset` into
    `training/<voice>/`.

    Raises:
        DatasetEmpty: the voice has no audio files (said at once, without waiting for a running job).
        AsrUnavailable: the Whisper model cannot be loaded (the TTS stays loaded).
        VoiceNotFound / DatasetEmpty: see `prepare_dataset`.
    """
    report = progress or (lambda fraction, text: None)
    if ffmpeg_path is None:
        try:
            ffmpeg_path = find_ffmpeg(paths.root)
        except FfmpegError:
            ffmpeg_path = None  # WAV and FLAC still load; other formats then name the missing ffmpeg
    if not list_audio_files(voice_dir):
        raise DatasetEmpty(
            f"The voice folder {voice_dir.name}/ has no audio files, so there is nothing to transcribe. "
            f"Put recordings of the voice into {voice_dir} and press Prepare again."
        )
    report(0.0, "Checking the Whisper model")
    ensure_transcriber(paths, transcriber)
    notes = []

    def waiting(position: int) -> None:
        report(0.0, f"Waiting for the current job to finish (position {position} in the queue)")

    if engine.unload(on_wait=waiting):
        notes.append("TorToiSe was unloaded to free memory; it loads again on the next generation.")
    folder = paths.training_dir_for(voice_dir.name)
    existed = folder.exists()
    try:
        summary = prepare_dataset(
            voice_dir, folder, transcriber, language, options, progress,
            tokenizer=tokenizer, ffmpeg_path=ffmpeg_path,
        )  # fmt: skip
    except BaseException:
        if not existed:
            shutil.rmtree(folder, ignore_errors=True)  # no empty training/<voice>/ left behind
        raise
    return PreparedDataset(summary, tuple(notes))
