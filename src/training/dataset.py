"""Build a training dataset from a voice's recordings: transcribe, slice by segments, filter, split, review.

Writes `training/<voice>/audio/*.wav` (22050 Hz mono 16-bit), `train.txt` and `validation.txt`
(`audio/<clip>.wav|text`) and `whisper.json`; also edits and deletes single clips for the review table.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import soundfile as sf
import torch

from src.atomic import write_text_atomic
from src.errors import AppError, DatasetEmpty, InvalidInput, VoiceNotFound
from src.training.asr import ASR_SAMPLE_RATE, Segment, Transcriber
from tortoise import (
    UNK_TOKEN_ID,
    VOICE_SAMPLE_RATE,
    AudioLoadError,
    VoiceBpeTokenizer,
    read_audio,
    resample,
    save_wav,
)

log = logging.getLogger(__name__)

MIN_CLIP_S = 0.6  # shorter slices are merged into their neighbour, shorter clips dropped
MAX_CLIP_SAMPLES = 255995  # the trainer's audio limit at 22050 Hz (about 11.61 s)
MAX_CLIP_S = MAX_CLIP_SAMPLES / VOICE_SAMPLE_RATE
MAX_TEXT_CHARS = 200  # the trainer's text limit
SILENCE_PEAK = 1e-3  # a recording that never gets louder (-60 dBFS) is silence; Whisper would invent words
AUDIO_FOLDER = "audio"
TRAIN_LIST = "train.txt"
VALIDATION_LIST = "validation.txt"
WHISPER_JSON = "whisper.json"
AUDIO_EXTENSIONS = frozenset(
    ".wav .mp3 .flac .ogg .oga .opus .m4a .aac .wma .aif .aiff .aifc .au .caf .webm .mp4 .mkv .mov".split()
)
# DLAS mapped these before tokenising, so they do not count as unknown characters.
_TRAINER_PUNCTUATION = str.maketrans({"{": "(", "}": ")", "[": "(", "]": ")", "`": "'", "ʼ": "'", "—": "-"})

ProgressCallback = Callable[[float, str], None]


class ClipFlag(StrEnum):
    """Why a clip needs a look in the review table; all but UNKNOWN_CHARACTERS keep it out of the lists."""

    TOO_SHORT = "too short"
    TOO_LONG = "too long"
    TEXT_TOO_LONG = "text too long"
    EMPTY_TEXT = "empty text"
    SILENT = "silent"
    MISSING_AUDIO = "missing audio"
    UNKNOWN_CHARACTERS = "unknown characters"


class ClipNotFound(AppError):
    """A clip the review table refers to is in neither train.txt nor validation.txt."""


@dataclass(frozen=True)
class DatasetOptions:
    """How recordings become clips and how clips are split.

    Attributes:
        validation_text_length: clips whose text has fewer characters go to validation.txt (0: never).
            Default 12.
        validation_audio_length_s: clips shorter than this many seconds go to validation.txt (0: never).
            Default 1.
        slice_start_offset_s: added to every segment's start when slicing (negative: start earlier).
        slice_end_offset_s: added to every segment's end when slicing (positive: end later).
        always_slice: cut every file into its segments; otherwise a file whose text fits 200 characters and
            whose audio fits about 11.6 s is used whole.
    """

    validation_text_length: int = 12
    validation_audio_length_s: float = 1.0
    slice_start_offset_s: float = 0.0
    slice_end_offset_s: float = 0.0
    always_slice: bool = False

    def __post_init__(self) -> None:
        if self.validation_text_length < 0 or self.validation_audio_length_s < 0:
            raise InvalidInput("Validation thresholds cannot be negative; use 0 to turn one off.")


@dataclass(frozen=True)
class DatasetClip:
    """One clip as the review table shows it.

    Attributes:
        path: the audio file relative to the dataset folder, e.g. `audio/take1_00003.wav`.
        text: the transcript.
        duration_s: length in seconds.
        split: `train`, `validation`, or `dropped` (not written, see flags).
        source: the recording it was cut from (empty when read back from the lists).
        flags: problems found; every flag but UNKNOWN_CHARACTERS means the clip was dropped.
        unknown_characters: the characters of `text` the TorToiSe tokenizer does not know.
    """

    path: str
    text: str
    duration_s: float
    split: str
    source: str = ""
    flags: tuple[ClipFlag, ...] = ()
    unknown_characters: str = ""


@dataclass(frozen=True)
class SkippedFile:
    """A recording that gave no clips, and why."""

    name: str
    reason: str


@dataclass
class DatasetSummary:
    """The outcome of `prepare_dataset`: counts for the console, the review list and problems to show."""

    dataset_dir: Path
    clips: list[DatasetClip] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def train_count(self) -> int:
        """Lines in train.txt."""
        return sum(c.split == "train" for c in self.clips)

    @property
    def validation_count(self) -> int:
        """Lines in validation.txt."""
        return sum(c.split == "validation" for c in self.clips)

    @property
    def total_minutes(self) -> float:
        """Audio in train.txt and validation.txt, in minutes."""
        return sum(c.duration_s for c in self.clips if c.split != "dropped") / 60

    @property
    def message(self) -> str:
        """A one-line report for the console output."""
        return (
            f"Processed dataset to: {self.dataset_dir}/ ({self.train_count} training and "
            f"{self.validation_count} validation clips, {self.total_minutes:.1f} min; "
            f"{len(self.skipped)} files skipped)"
        )


def list_audio_files(voice_dir: str | os.PathLike[str]) -> list[Path]:
    """The recordings of a voice: files with an audio or video extension, by name, hidden ones excluded."""
    folder = Path(voice_dir)
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in AUDIO_EXTENSIONS
    )


def sanitize_segments(segments: Iterable[Segment], min_duration_s: float = MIN_CLIP_S) -> list[Segment]:
    """Merge segments shorter than `min_duration_s` into the previous one.

    The short segment's text is appended and the previous segment's end extended; a short segment that
    lies inside the previous one is dropped. A short first segment is merged into the next one instead.

    Returns:
        The new segments, in order; their index is the segment id used in clip names.
    """
    merged: list[Segment] = []
    pending: Segment | None = None  # a short leading segment waiting for a successor
    for segment in segments:
        if pending is not None:
            segment = Segment(pending.start_s, segment.end_s, _join(pending.text, segment.text))
            pending = None
        if segment.duration_s >= min_duration_s:
            merged.append(segment)
        elif not merged:
            pending = segment
        elif segment.end_s > merged[-1].end_s:
            last = merged[-1]
            merged[-1] = Segment(last.start_s, segment.end_s, _join(last.text, segment.text))
    if pending is not None:
        merged.append(pending)
    return merged


def split_for(text: str, duration_s: float, options: DatasetOptions) -> str:
    """`validation` when the text or the audio is below its threshold, else `train`."""
    if len(text) < options.validation_text_length:
        return "validation"
    if options.validation_audio_length_s > 0 and duration_s < options.validation_audio_length_s:
        return "validation"
    return "train"


def find_unknown_characters(text: str, tokenizer: VoiceBpeTokenizer | None) -> str:
    """The distinct characters of `text` that the tokenizer encodes as [UNK] (after the trainer's mapping)."""
    if tokenizer is None:
        return ""
    mapped = text.translate(_TRAINER_PUNCTUATION)
    if UNK_TOKEN_ID not in tokenizer.encode(mapped):
        return ""
    return "".join(sorted({c for c in mapped if not c.isspace() and UNK_TOKEN_ID in tokenizer.encode(c)}))


def clip_flags(text: str, num_samples: int) -> tuple[ClipFlag, ...]:
    """The dropping flags that follow from a clip's text and length (in samples at 22050 Hz)."""
    flags = []
    if num_samples < round(MIN_CLIP_S * VOICE_SAMPLE_RATE):
        flags.append(ClipFlag.TOO_SHORT)
    if num_samples > MAX_CLIP_SAMPLES:
        flags.append(ClipFlag.TOO_LONG)
    if not text:
        flags.append(ClipFlag.EMPTY_TEXT)
    if len(text) > MAX_TEXT_CHARS:
        flags.append(ClipFlag.TEXT_TOO_LONG)
    return tuple(flags)


def prepare_dataset(
    voice_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    transcriber: Transcriber,
    language: str | None = "en",
    options: DatasetOptions | None = None,
    progress: ProgressCallback | None = None,
    *,
    tokenizer: VoiceBpeTokenizer | None = None,
    ffmpeg_path: str | os.PathLike[str] | None = None,
    unload_transcriber: bool = True,
) -> DatasetSummary:
    """Transcribe every recording of a voice and write a training dataset into `out_dir`.

    Each file is decoded (ffmpeg for formats libsndfile cannot read), resampled to 22050 Hz mono (first
    channel) and transcribed. A file is used whole when its text fits MAX_TEXT_CHARS and its audio fits
    MAX_CLIP_SAMPLES (unless `options.always_slice`), else it is cut into its segments (short segments merged,
    offsets applied). Clips that are too short, too long, silent or have too much or no text are dropped and
    listed with flags. The old `audio/` folder is replaced only once the new clips are complete.

    Args:
        voice_dir: the voice's folder of recordings.
        out_dir: the dataset folder, e.g. `training/<voice>/`; created if missing.
        transcriber: the Whisper model to use (loaded on demand).
        language: language code or name for Whisper; empty means English, `auto` detects.
        options: slicing and split settings; default `DatasetOptions()`.
        progress: called as `progress(fraction, description)` before each file.
        tokenizer: the TorToiSe tokenizer, to flag characters it does not know; None skips that check.
        ffmpeg_path: ffmpeg for formats libsndfile cannot read; None looks on PATH.
        unload_transcriber: free the Whisper model when done (also on errors).

    Returns:
        Counts, the review list, skipped files and warnings.

    Raises:
        VoiceNotFound: `voice_dir` is not a folder.
        DatasetEmpty: the voice has no recordings, or none gave a usable clip (the message says why).
        AsrUnavailable: the Whisper model cannot be loaded.
    """
    options = options or DatasetOptions()
    voice_path, dataset_dir = Path(voice_dir), Path(out_dir)
    if not voice_path.is_dir():
        raise VoiceNotFound(voice_path.name, voice_path.parent)
    files = list_audio_files(voice_path)
    if not files:
        raise DatasetEmpty(
            f"The voice folder {voice_path}/ has no audio files. Put recordings of the voice there "
            f"({', '.join(sorted(e.lstrip('.') for e in AUDIO_EXTENSIONS)[:8])}, ...) and try again."
        )
    summary = DatasetSummary(dataset_dir=dataset_dir)
    results: dict[str, dict] = {}
    dataset_dir.mkdir(parents=True, exist_ok=True)
    staging = dataset_dir / f".{AUDIO_FOLDER}-{uuid.uuid4().hex[:12]}.tmp"
    used_stems: set[str] = set()
    try:
        for index, path in enumerate(files):
            if progress is not None:
                progress(index / len(files), f"Transcribing clip {index + 1} of {len(files)}: {path.name}")
            stem = path.stem if path.stem not in used_stems else f"{path.stem}_{path.suffix.lstrip('.')}"
            used_stems.add(stem)
            try:
                wav, rate = read_audio(path, ffmpeg_path=os.fspath(ffmpeg_path) if ffmpeg_path else None)
            except AudioLoadError as error:
                log.warning("skipping %s: %s", path, error)
                summary.skipped.append(SkippedFile(path.name, f"cannot be read as audio: {error}"))
                continue
            mono = wav[0]
            if float(mono.abs().max()) < SILENCE_PEAK:
                summary.skipped.append(SkippedFile(path.name, "it is silent, so it holds no speech"))
                continue
            transcription = transcriber.transcribe(resample(mono, rate, ASR_SAMPLE_RATE).numpy(), language)
            results[path.name] = transcription.raw
            if not transcription.text:
                summary.skipped.append(SkippedFile(path.name, "no speech was recognised in it"))
                continue
            clip_audio = resample(mono, rate, VOICE_SAMPLE_RATE).clamp(-1.0, 1.0)
            summary.clips += _cut_clips(clip_audio, stem, path.name, transcription.segments, options, staging,
                                        tokenizer)  # fmt: skip
        if progress is not None:
            progress(1.0, "Writing the dataset lists")
        if not any(c.split != "dropped" for c in summary.clips):
            raise DatasetEmpty(_no_clips_message(voice_path, summary))
        _replace_audio_folder(staging, dataset_dir / AUDIO_FOLDER)
        _write_lists(dataset_dir, summary.clips)
        write_text_atomic(dataset_dir / WHISPER_JSON, json.dumps(results, indent="\t", ensure_ascii=False))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if unload_transcriber:
            transcriber.unload()
    summary.warnings = _summary_warnings(summary, options)
    log.info("%s", summary.message)
    return summary


def _cut_clips(
    audio: torch.Tensor,
    stem: str,
    source: str,
    segments: list[Segment],
    options: DatasetOptions,
    staging: Path,
    tokenizer: VoiceBpeTokenizer | None,
) -> list[DatasetClip]:
    """Choose the whole file or its segments, check each clip, and write the usable ones into `staging`."""
    num_samples = audio.shape[-1]
    whole_text = " ".join(s.text for s in segments if s.text)
    if not options.always_slice and num_samples <= MAX_CLIP_SAMPLES and len(whole_text) <= MAX_TEXT_CHARS:
        items = [(f"{stem}.wav", 0, num_samples, whole_text)]
    else:
        items = []
        for segment_id, segment in enumerate(sanitize_segments(segments)):
            start_s = max(0.0, segment.start_s + options.slice_start_offset_s)
            end_s = segment.end_s + options.slice_end_offset_s
            start, end = int(start_s * VOICE_SAMPLE_RATE), min(int(end_s * VOICE_SAMPLE_RATE), num_samples)
            items.append((f"{stem}_{segment_id:05d}.wav", start, max(start, end), segment.text))
    clips = []
    for name, start, end, text in items:
        piece = audio[start:end]
        flags = clip_flags(text, end - start)
        if end > start and not bool((piece < 0).any()):
            flags += (ClipFlag.SILENT,)
        unknown = find_unknown_characters(text, tokenizer)
        duration_s = (end - start) / VOICE_SAMPLE_RATE
        split = "dropped" if flags else split_for(text, duration_s, options)
        if unknown:
            flags += (ClipFlag.UNKNOWN_CHARACTERS,)
        if split != "dropped":
            save_wav(staging / name, piece, VOICE_SAMPLE_RATE)
        clips.append(DatasetClip(f"{AUDIO_FOLDER}/{name}", text, duration_s, split, source, flags, unknown))
    return clips


def _no_clips_message(voice_path: Path, summary: DatasetSummary) -> str:
    reasons = [f"{s.name}: {s.reason}" for s in summary.skipped[:5]]
    dropped = [c for c in summary.clips if c.split == "dropped"]
    if dropped:
        kinds = sorted({str(f) for c in dropped for f in c.flags if f != ClipFlag.UNKNOWN_CHARACTERS})
        reasons.append(f"{len(dropped)} slices were dropped ({', '.join(kinds)})")
    return (
        f"No usable clips could be made from {voice_path}/: {'; '.join(reasons)}. Clips must hold speech and "
        f"last {MIN_CLIP_S} to {MAX_CLIP_S:.1f} s with at most {MAX_TEXT_CHARS} characters of text."
    )


def _summary_warnings(summary: DatasetSummary, options: DatasetOptions) -> list[str]:
    warnings = [f"Skipped {s.name}: {s.reason}." for s in summary.skipped]
    dropped = [c for c in summary.clips if c.split == "dropped"]
    if dropped:
        warnings.append(
            f"Slices left out: {len(dropped)} (too short, too long, silent, or no or too much text); "
            "the review list marks them."
        )
    unknown = [c for c in summary.clips if c.split != "dropped" and c.unknown_characters]
    if unknown:
        chars = "".join(sorted({ch for c in unknown for ch in c.unknown_characters}))
        warnings.append(
            f"{len(unknown)} clips contain characters the TorToiSe tokenizer does not know ({chars}); "
            "edit their transcripts, or training will skip them."
        )
    warnings += dataset_split_warnings(summary.train_count, summary.validation_count, options)
    return warnings


def dataset_split_warnings(train_count: int, validation_count: int, options: DatasetOptions) -> list[str]:
    """Warnings about a split that cannot train well: nothing to train on, nothing to validate on, or a
    single clip."""
    warnings = []
    if validation_count == 0 and train_count > 1:
        warnings.append(
            f"validation.txt is empty, so training runs without a validation loss: no clip has text shorter "
            f"than {options.validation_text_length} characters or audio shorter than "
            f"{options.validation_audio_length_s:g} s. Raise 'Validation Text Length Threshold' or "
            "'Validation Audio Length Threshold' and prepare the dataset again to hold some clips out."
        )
    if train_count == 0 and validation_count > 0:
        warnings.append(
            f"train.txt is empty: all {validation_count} clips went to validation.txt because their text is "
            f"shorter than {options.validation_text_length} characters or their audio shorter than "
            f"{options.validation_audio_length_s:g} s. Lower 'Validation Text Length Threshold' or "
            "'Validation Audio Length Threshold' (0 turns a threshold off) and prepare the dataset again."
        )
    if train_count + validation_count == 1:
        warnings.append(
            "The dataset has only one clip, which is too little to fine-tune on; add more recordings "
            "of the voice (a few minutes of speech in total) and prepare it again."
        )
    return warnings


def load_dataset(
    dataset_dir: str | os.PathLike[str], tokenizer: VoiceBpeTokenizer | None = None
) -> list[DatasetClip]:
    """Read train.txt and validation.txt back into review rows (flags from text and audio length).

    Raises:
        DatasetEmpty: the folder has no train.txt.
    """
    folder = Path(dataset_dir)
    if not (folder / TRAIN_LIST).is_file():
        raise DatasetEmpty(f"{folder}/ has no {TRAIN_LIST}; prepare the dataset first.")
    return [_clip_from_line(folder, line, split, tokenizer) for split, line in _read_lines(folder)]


def edit_clip_text(
    dataset_dir: str | os.PathLike[str], clip_path: str, text: str, tokenizer: VoiceBpeTokenizer | None = None
) -> DatasetClip:
    """Replace a clip's transcript in train.txt or validation.txt (rewritten atomically).

    The clip stays in its list; a changed text does not move it between train and validation.

    Args:
        dataset_dir: the dataset folder.
        clip_path: the clip's path as in the list, e.g. `audio/take1_00003.wav`.
        text: the new transcript; whitespace (newlines included) is collapsed to single spaces.
        tokenizer: to re-check unknown characters; optional.

    Returns:
        The clip with its new text and flags.

    Raises:
        InvalidInput: the text is empty or contains `|`.
        ClipNotFound: no list holds the clip.
    """
    cleaned = " ".join(text.split())
    if not cleaned:
        raise InvalidInput("A transcript cannot be empty; delete the clip instead.")
    if "|" in cleaned:
        raise InvalidInput("A transcript cannot contain '|', which separates path and text in the lists.")
    folder = Path(dataset_dir)
    lines, split, position = _find_clip(folder, clip_path)
    fields = lines[position].split("|")
    lines[position] = "|".join([fields[0], cleaned, *fields[2:]])
    write_text_atomic(folder / _list_name(split), "\n".join(lines))
    return _clip_from_line(folder, lines[position], split, tokenizer)


def delete_clip(dataset_dir: str | os.PathLike[str], clip_path: str, delete_audio: bool = True) -> None:
    """Remove a clip's line from its list (rewritten atomically) and, by default, its audio file.

    Raises:
        ClipNotFound: no list holds the clip.
    """
    folder = Path(dataset_dir)
    lines, split, position = _find_clip(folder, clip_path)
    del lines[position]
    write_text_atomic(folder / _list_name(split), "\n".join(lines))
    audio_path = (folder / clip_path).resolve()
    if delete_audio and audio_path.is_relative_to(folder.resolve()):
        audio_path.unlink(missing_ok=True)
    _forget_transcription(folder, Path(clip_path).stem)


def _forget_transcription(folder: Path, clip_stem: str) -> None:
    """Keep whisper.json in step with a deleted clip: a whole-file clip (`<stem>.wav`) drops its source's
    entry; a slice (`<stem>_<n>.wav`, n counting the segments after `sanitize_segments` merged the short
    ones) drops the source's segments that lie within that slice's time span."""
    path = folder / WHISPER_JSON
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return  # no (readable) transcription file: nothing to keep in step
    if not isinstance(results, dict):
        return
    stem, _, number = clip_stem.rpartition("_")
    changed = False
    for source in list(results):
        if Path(source).stem == clip_stem:
            del results[source]
            changed = True
        elif Path(source).stem == stem and number.isdigit() and isinstance(results[source], dict):
            segments = [s for s in results[source].get("segments") or [] if isinstance(s, dict)]
            try:
                timed = [Segment(float(s["start"]), float(s["end"]), str(s.get("text", "")).strip())
                         for s in segments]  # fmt: skip
            except (KeyError, TypeError, ValueError):
                continue
            merged = sanitize_segments(timed)
            if int(number) >= len(merged):
                continue
            span = merged[int(number)]
            kept = [s for s, t in zip(segments, timed, strict=True)
                    if not (span.start_s <= t.start_s and t.end_s <= span.end_s)]  # fmt: skip
            changed = changed or len(kept) != len(segments)
            results[source]["segments"] = kept
    if changed:
        write_text_atomic(path, json.dumps(results, indent="\t", ensure_ascii=False))


def _list_name(split: str) -> str:
    return TRAIN_LIST if split == "train" else VALIDATION_LIST


def _read_list(path: Path) -> list[str]:
    if not path.is_file():
        return []
    return [line for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]


def _read_lines(folder: Path) -> list[tuple[str, str]]:
    return [
        (split, line) for split in ("train", "validation") for line in _read_list(folder / _list_name(split))
    ]


def _find_clip(folder: Path, clip_path: str) -> tuple[list[str], str, int]:
    wanted = clip_path.strip().replace("\\", "/")
    for split in ("train", "validation"):
        lines = _read_list(folder / _list_name(split))
        for position, line in enumerate(lines):
            if line.split("|", 1)[0].strip().replace("\\", "/") == wanted:
                return lines, split, position
    raise ClipNotFound(
        f"The clip {clip_path} is not in {folder}/{TRAIN_LIST} or {VALIDATION_LIST}; refresh the list."
    )


def _clip_from_line(folder: Path, line: str, split: str, tokenizer: VoiceBpeTokenizer | None) -> DatasetClip:
    fields = line.split("|")
    path, text = fields[0].strip(), (fields[1].strip() if len(fields) > 1 else "")
    try:
        info = sf.info(str(folder / path))
        num_samples, duration_s = round(info.duration * VOICE_SAMPLE_RATE), float(info.duration)
        flags = clip_flags(text, num_samples)
    except (sf.SoundFileError, RuntimeError, OSError):
        duration_s, flags = 0.0, (ClipFlag.MISSING_AUDIO,)
    unknown = find_unknown_characters(text, tokenizer)
    if unknown:
        flags += (ClipFlag.UNKNOWN_CHARACTERS,)
    return DatasetClip(path, text, duration_s, split, "", flags, unknown)


def _join(first: str, second: str) -> str:
    return " ".join(t for t in (first.strip(), second.strip()) if t)


def _replace_audio_folder(staging: Path, target: Path) -> None:
    """Swap the freshly written clips in for the old `audio/` folder (renames only, so no half state)."""
    staging.mkdir(parents=True, exist_ok=True)
    old = target.with_name(f".{target.name}-old-{uuid.uuid4().hex[:12]}.tmp")
    if target.exists():
        os.replace(target, old)
    os.replace(staging, target)
    shutil.rmtree(old, ignore_errors=True)


def _write_lists(folder: Path, clips: list[DatasetClip]) -> None:
    for split in ("train", "validation"):
        lines = [f"{c.path}|{c.text}" for c in clips if c.split == split]
        write_text_atomic(folder / _list_name(split), "\n".join(lines))


