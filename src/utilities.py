"""Utilities: read the generation settings of an uploaded file, export its embedded latents as a
`.pth` download, and import a voice from uploaded clips or from a generated file's latents.

Exports go to a temporary folder outside voices/ (mrq wrote them to voices/.temp, which then showed
up as a voice). Embedded latents are only ever loaded with `weights_only=True`.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from src.errors import InvalidInput, MetadataError
from src.ffmpeg import FfmpegMissing, find_ffmpeg
from src.metadata import GenerationMetadata, decode_latents_bytes, read_metadata
from src.paths import MAX_NAME_LENGTH, SPECIAL_VOICES, AppPaths, validate_voice_name
from src.voices import LEGACY_LATENTS_FILE, load_checked_clip
from tortoise import VOICE_SAMPLE_RATE, ConditioningLatents, WeightsError, save_wav

log = logging.getLogger(__name__)

EXPORT_FOLDER = "ai-voice-cloning-latents"  # under the system temp folder
EXPORT_KEEP_S = 24 * 3600.0  # exports older than this are removed at the next export
LATENTS_FILE = LEGACY_LATENTS_FILE  # `cond_latents.pth`: drop it into voices/<name>/ to use it
_UNSAFE_NAME_CHARS = re.compile(r'[\x00-\x1f<>:"/\\|?*]+')
_CLIP_NAME_CHARS = re.compile(r"[^\w.\- ]+")


@dataclass(frozen=True)
class UploadInfo:
    """What an uploaded file tells.

    Attributes:
        path: the uploaded file.
        metadata: its generation settings (embedded tag or JSON), or None.
        latents_file: the exported `cond_latents.pth` when the file embeds usable latents, else None.
        latents_problem: why embedded latents were refused (unsafe or unreadable), else None.
        suggested_voice: a free voice name to import it under.
    """

    path: Path
    metadata: GenerationMetadata | None
    latents_file: Path | None
    latents_problem: str | None
    suggested_voice: str


@dataclass(frozen=True)
class ImportedVoice:
    """A voice created by `import_voice`.

    Attributes:
        voice: its name (a folder under voices/).
        folder: `voices/<voice>/`.
        files: the files written (22.05 kHz mono WAVs, or the latents file).
        source: "clips" or "latents".
        notes: one sentence per uploaded file that was left out, and why.
    """

    voice: str
    folder: Path
    files: tuple[Path, ...]
    source: str
    notes: tuple[str, ...] = ()


class VoiceExists(InvalidInput):
    """Importing would overwrite a voice that already exists."""

    def __init__(self, name: str, suggestion: str) -> None:
        super().__init__(
            f"A voice named '{name}' already exists. Choose another name, e.g. '{suggestion}', "
            "or delete the old voice folder first."
        )
        self.name = name
        self.suggestion = suggestion


def latents_export_dir() -> Path:
    """The folder exported latents are written to (under the system temp folder, not voices/)."""
    return Path(tempfile.gettempdir()) / EXPORT_FOLDER


def inspect_upload(
    paths: AppPaths, file: str | os.PathLike[str], export_dir: Path | None = None
) -> UploadInfo:
    """Read an uploaded file's settings and export its embedded latents, if any.

    Args:
        paths: the installation's folders (for the suggested voice name).
        file: a WAV (or other tagged audio) or a metadata `.json`.
        export_dir: where latents are exported (default: `latents_export_dir()`).

    Raises:
        MetadataError: the file is missing, or is a `.json` that does not hold metadata.
    """
    path = Path(file)
    metadata = read_metadata(path)
    latents_file, problem = None, None
    if metadata is not None and metadata.latents:
        try:
            latents_file = export_latents(metadata, export_dir or latents_export_dir())
        except MetadataError as error:  # UnsafeLatents included: nothing was loaded or run
            problem = str(error)
            log.warning("Embedded latents of %s refused: %s", path.name, error)
    wanted = metadata.voice if metadata is not None and metadata.voice else _stem(path)
    return UploadInfo(path, metadata, latents_file, problem, suggest_voice_name(paths, wanted))


def export_latents(metadata: GenerationMetadata, export_dir: Path) -> Path:
    """Write the metadata's embedded latents to a new `<export_dir>/<random>/cond_latents.pth`.

    Raises:
        UnsafeLatents: the data could run code when loaded; it was refused without loading.
        MetadataError: no latents, or not readable as latents.
    """
    if not metadata.latents:
        raise MetadataError("This file has no embedded latents.")
    data = decode_latents_bytes(metadata.latents)  # weights_only check first
    _remove_old_exports(export_dir)
    export_dir.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="latents-", dir=export_dir))
    target = folder / LATENTS_FILE
    target.write_bytes(data)
    return target


def _remove_old_exports(export_dir: Path) -> None:
    if not export_dir.is_dir():
        return
    cutoff = time.time() - EXPORT_KEEP_S
    for entry in export_dir.iterdir():
        if entry.is_dir() and entry.stat().st_mtime < cutoff:
            shutil.rmtree(entry, ignore_errors=True)


# ---------------------------------------------------------------------------- voice names


def existing_voice_names(paths: AppPaths) -> set[str]:
    """Lower-cased names of everything in voices/ (and the legacy tortoise/voices/)."""
    names: set[str] = set()
    for root in (paths.voices_dir, paths.legacy_voices_dir):
        if root.is_dir():
            names.update(entry.name.lower() for entry in root.iterdir())
    return names


def suggest_voice_name(paths: AppPaths, wanted: str | None) -> str:
    """A usable, unused voice name close to `wanted`: unsafe characters become `_`, leading dots
    go, and `_2`, `_3`... is added when the name is taken or reserved (`random`, `microphone`)."""
    base = _UNSAFE_NAME_CHARS.sub("_", (wanted or "").strip()).lstrip(". ").strip()
    base = base[: MAX_NAME_LENGTH - 4].strip() or "voice"
    taken = existing_voice_names(paths) | set(SPECIAL_VOICES)
    name, number = base, 1
    while name.lower() in taken:
        number += 1
        name = f"{base}_{number}"
    return name


# ---------------------------------------------------------------------------- import


def import_voice(
    paths: AppPaths,
    name: str,
    files: Sequence[str | os.PathLike[str]],
    *,
    use_embedded_latents: bool = True,
) -> ImportedVoice:
    """Create `voices/<name>/` from uploaded files.

    One generated file that embeds latents (with `use_embedded_latents`) gives a voice made of
    just those latents (`cond_latents.pth`, checked with weights_only). Otherwise every file is
    converted to a 22.05 kHz mono 16-bit WAV (any format soundfile or ffmpeg reads); files that
    cannot be read, are shorter than 0.5 s or are silent are left out and named in `notes`.
    The folder appears complete or not at all.

    Raises:
        InvalidVoiceName: empty, reserved or unsafe name (slashes, leading dot, ...).
        VoiceExists: the name is taken (the message suggests a free one).
        InvalidInput: no files, or none of them is usable (each one's reason is given).
        UnsafeLatents / MetadataError: the embedded latents were refused.
    """
    voice = validate_voice_name((name or "").strip())  # a typed name: surrounding spaces are trimmed
    if voice.lower() in existing_voice_names(paths):
        raise VoiceExists(voice, suggest_voice_name(paths, voice))
    uploads = [Path(f) for f in files or () if f]
    if not uploads:
        raise InvalidInput("Upload one or more audio clips (or a generated file) first.")
    paths.voices_dir.mkdir(parents=True, exist_ok=True)
    staging = (
        paths.voices_dir / f".import-{uuid.uuid4().hex[:12]}"
    )  # hidden: never listed as a voice
    staging.mkdir()
    try:
        latents = _embedded_latents(uploads) if use_embedded_latents else None
        if latents is not None:
            target = staging / LATENTS_FILE
            latents.save(target)
            written, source, notes = [target], "latents", []
        else:
            written, notes = _convert_clips(paths, uploads, staging)
            source = "clips"
        folder = paths.voices_dir / voice
        try:
            os.rename(staging, folder)  # fails if the name was taken meanwhile
        except OSError:
            raise VoiceExists(voice, suggest_voice_name(paths, voice)) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("Imported voice '%s' from %d file(s) (%s)", voice, len(written), source)
    return ImportedVoice(
        voice, folder, tuple(folder / p.name for p in written), source, tuple(notes)
    )


def _embedded_latents(uploads: list[Path]) -> ConditioningLatents | None:
    """The latents of a single uploaded generated file, or None (several files, or none embedded)."""
    if len(uploads) != 1:
        return None
    try:
        metadata = read_metadata(uploads[0])
    except MetadataError:
        return None
    if metadata is None or not metadata.latents:
        return None
    data = decode_latents_bytes(metadata.latents)  # raises UnsafeLatents without loading code
    try:
        return ConditioningLatents.from_bytes(data, f"the latents embedded in {uploads[0].name}")
    except WeightsError as error:
        raise MetadataError(str(error)) from None


def _convert_clips(
    paths: AppPaths, uploads: list[Path], folder: Path
) -> tuple[list[Path], list[str]]:
    ffmpeg = _ffmpeg(paths)
    written: list[Path] = []
    notes: list[str] = []
    used: set[str] = set()
    for upload in uploads:
        clip, problem = _load_clip(upload, ffmpeg)
        if problem is not None:
            notes.append(f"{upload.name}: {problem}; left out.")
            continue
        target = folder / _clip_name(upload, used)
        save_wav(target, clip, VOICE_SAMPLE_RATE)
        written.append(target)
    if not written:
        raise InvalidInput(
            "None of the uploaded files can be used as a voice clip:\n- " + "\n- ".join(notes)
        )
    return written, notes


def _load_clip(path: Path, ffmpeg: str | None):
    """(mono clip (1, S) at 22.05 kHz, None) or (None, the reason in plain words)."""
    if path.suffix.lower() == ".json":
        return None, "a settings file, not audio"
    clip, problem = load_checked_clip(path, use_channel_mean=True, ffmpeg_path=ffmpeg)
    return (None, problem) if problem else (clip, None)


def _ffmpeg(paths: AppPaths) -> str | None:
    try:
        return str(find_ffmpeg(paths.root))
    except FfmpegMissing:
        return None  # soundfile still reads WAV, FLAC, OGG and MP3


def _clip_name(upload: Path, used: set[str]) -> str:
    stem = _CLIP_NAME_CHARS.sub("_", _stem(upload)).strip(". ") or "clip"
    name, number = f"{stem}.wav", 1
    while name.lower() in used:
        number += 1
        name = f"{stem}_{number}.wav"
    used.add(name.lower())
    return name


def _stem(path: Path) -> str:
    return path.stem[:MAX_NAME_LENGTH]
