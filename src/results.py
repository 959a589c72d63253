"""Generated outputs on disk: `results/<voice>/<YYYYmmdd-HHMMSS>/` run folders, clip names, atomic WAV
writes with metadata, `input.txt`, and the History listing (newest first).

Run folder contents: `result.wav` (one line, one candidate) or `result_<line>_<candidate>.wav`,
`combined.wav` / `combined_<candidate>.wav` for multi-line runs, and `input.txt` (the run's settings).
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import soundfile as sf
import torch

from src.atomic import replacing, write_json_atomic
from src.errors import ResultNotFound
from src.metadata import (
    GenerationMetadata,
    embed_metadata,
    read_embedded_metadata,
    read_sidecar,
    sidecar_path,
    write_sidecar,
)
from src.paths import AppPaths, validate_voice_name
from tortoise import save_wav

log = logging.getLogger(__name__)
PROJECTS_FOLDER = "projects"  # results/<voice>/projects/<name>/: long-form projects (src/projects)

RUN_TIME_FORMAT = "%Y%m%d-%H%M%S"
INPUT_FILE = "input.txt"
_RUN_NAME_RE = re.compile(r"^(\d{8}-\d{6})(?:-(\d+))?$")


@dataclass(frozen=True)
class ResultRun:
    """One Generate click's output folder.

    Attributes:
        voice: the voice (folder under results/).
        run_dir: `results/<voice>/<YYYYmmdd-HHMMSS>[-N]/`, already created.
        started: the time the name was made from.
    """

    voice: str
    run_dir: Path
    started: datetime


@dataclass(frozen=True)
class HistoryEntry:
    """One clip under `results/<voice>/`, for the History tab.

    Attributes:
        path: the WAV file.
        name: its path relative to `results/<voice>/` (`<run>/<file>.wav`, or the bare file name for
            clips in mrq's flat layout).
        run: the run folder name, or None for flat-layout clips.
        created: from the run folder name, else the metadata's datetime, else the file's mtime.
        duration_s / sample_rate: from the WAV header (None if unreadable).
        metadata: embedded tag, sidecar, or the run's input.txt (see metadata_source); None if none.
        metadata_source: "embedded", "sidecar", "input.txt" or None.
    """

    path: Path
    name: str
    run: str | None
    created: datetime
    duration_s: float | None
    sample_rate: int | None
    metadata: GenerationMetadata | None
    metadata_source: str | None


def create_run(paths: AppPaths, voice: str, now: datetime | None = None) -> ResultRun:
    """Create a new, unique run folder `results/<voice>/<YYYYmmdd-HHMMSS>/`.

    A second run in the same second gets `-2`, then `-3`, ... The folder is created with an exclusive
    mkdir, so two runs never share one even when they race.

    Args:
        paths: the installation's folders.
        voice: a voice name, `random` or `microphone`.
        now: the start time (default: the current local time).

    Raises:
        InvalidVoiceName: the voice is not a plain folder name.
    """
    started = now or datetime.now()
    folder = paths.results_dir_for(voice, create=True)
    stamp = started.strftime(RUN_TIME_FORMAT)
    number = 1
    while True:
        run_dir = folder / (stamp if number == 1 else f"{stamp}-{number}")
        try:
            run_dir.mkdir()
            return ResultRun(folder.name, run_dir, started)
        except FileExistsError:
            number += 1


def clip_filename(line: int, candidate: int, *, lines: int, candidates: int) -> str:
    """`result.wav` for a one-line, one-candidate run, else `result_<line>_<candidate>.wav` (0-based)."""
    if lines == 1 and candidates == 1:
        return "result.wav"
    return f"result_{line}_{candidate}.wav"


def combined_filename(candidate: int, *, candidates: int) -> str:
    """`combined.wav`, or `combined_<candidate>.wav` when there are several candidates."""
    return "combined.wav" if candidates == 1 else f"combined_{candidate}.wav"


def write_input_file(run_dir: str | os.PathLike[str], settings: Mapping[str, Any]) -> Path:
    """Write the run's settings as tab-indented JSON to `<run_dir>/input.txt` (atomically)."""
    path = Path(run_dir) / INPUT_FILE
    write_json_atomic(path, dict(settings))
    return path


def read_input_file(run_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The settings in `<run_dir>/input.txt`, or None when it is missing or not a JSON object."""
    path = Path(run_dir) / INPUT_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, ValueError) as error:
        log.warning("Ignoring %s: %s", path, error)
        return None
    return data if isinstance(data, dict) else None


def save_clip(
    path: str | os.PathLike[str],
    wav: torch.Tensor,
    sample_rate: int,
    metadata: GenerationMetadata | None = None,
    *,
    embed: bool = True,
) -> Path:
    """Write a 16-bit WAV and its metadata so that `path` only ever holds a complete, tagged file.

    The audio is written and tagged under a temporary name, then renamed over `path`. With
    `embed=False` the metadata goes to a `.json` sidecar (without latents) instead.

    Args:
        path: the destination, e.g. `run_dir / clip_filename(...)`.
        wav: float waveform [samples] or [channels, samples], full scale 1.0 (clipped, never wrapped).
        sample_rate: its rate in Hz.
        metadata: what to record, or None for a bare clip.
        embed: the "Embed Output Metadata" setting.

    Returns:
        `path`.
    """
    target = Path(path)
    with replacing(target, suffix=".tmp.wav") as temporary:
        save_wav(temporary, wav, sample_rate)
        if metadata is not None and embed:
            embed_metadata(temporary, metadata)
    if metadata is not None and not embed:
        write_sidecar(target, metadata)
    return target


def delete_clips(files: list[Path]) -> None:
    """Delete clips and their sidecars (missing files are fine), e.g. `audio_ops.non_final_outputs`."""
    for file in files:
        Path(file).unlink(missing_ok=True)
        sidecar_path(file).unlink(missing_ok=True)


def list_result_voices(paths: AppPaths) -> list[str]:
    """Voices with at least one WAV under `results/<voice>/`, sorted (hidden folders skipped)."""
    if not paths.results_dir.is_dir():
        return []
    return sorted(
        entry.name
        for entry in paths.results_dir.iterdir()
        if entry.is_dir() and not entry.name.startswith(".") and next(_wavs(entry), None) is not None
    )


def _wavs(folder: Path):
    """WAV files directly in `folder`, in its run folders, and in its projects (`projects/<name>/` and their
    `segments/`); temporary files are skipped."""
    for entry in sorted(folder.iterdir()):
        if entry.is_dir() and entry.name == PROJECTS_FOLDER:
            for project in sorted(p for p in entry.iterdir() if p.is_dir() and not p.name.startswith(".")):
                for part in (project, project / "segments"):
                    if part.is_dir():
                        yield from (f for f in sorted(part.iterdir()) if _is_clip(f))
        elif entry.is_dir() and not entry.name.startswith("."):
            yield from (f for f in sorted(entry.iterdir()) if _is_clip(f))
        elif _is_clip(entry):
            yield entry


def _is_clip(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() == ".wav" and not path.name.startswith(".")


def list_history(paths: AppPaths, voice: str) -> list[HistoryEntry]:
    """Every clip of `voice`, newest run first (files of one run by name), with what is known of it.

    Clips without metadata are listed too, with what the file and the run's input.txt tell.

    Raises:
        InvalidVoiceName: the voice is not a plain folder name.
    """
    folder = paths.results_dir / validate_voice_name(voice, allow_special=True)
    if not folder.is_dir():
        return []
    inputs: dict[Path, dict[str, Any] | None] = {}
    entries: list[tuple[tuple[datetime, int], HistoryEntry]] = []
    for wav in _wavs(folder):
        run = wav.parent.relative_to(folder).as_posix() if wav.parent != folder else None
        metadata, source = _metadata_of(wav, run, inputs)
        created, suffix = _created(wav, run, metadata)
        duration, rate = _header(wav)
        name = wav.relative_to(folder).as_posix()
        entries.append(
            ((created, suffix), HistoryEntry(wav, name, run, created, duration, rate, metadata, source))
        )
    entries.sort(key=lambda item: item[1].name)
    entries.sort(key=lambda item: item[0], reverse=True)
    return [entry for _, entry in entries]


def resolve_result(paths: AppPaths, voice: str, name: str) -> Path:
    """The file `results/<voice>/<name>` picked in History, refusing names that leave that folder.

    Raises:
        ResultNotFound: missing file or a name outside `results/<voice>/`.
    """
    folder = (paths.results_dir / validate_voice_name(voice, allow_special=True)).resolve()
    path = (folder / name).resolve()
    if not path.is_relative_to(folder) or not path.is_file():
        raise ResultNotFound(Path("results") / voice / name)
    return path


def _metadata_of(
    wav: Path, run: str | None, inputs: dict[Path, dict[str, Any] | None]
) -> tuple[GenerationMetadata | None, str | None]:
    embedded = read_embedded_metadata(wav)
    if embedded is not None:
        return embedded, "embedded"
    sidecar = read_sidecar(wav)
    if sidecar is not None:
        return sidecar, "sidecar"
    if run is None:
        return None, None
    if wav.parent not in inputs:
        inputs[wav.parent] = read_input_file(wav.parent)
    settings = inputs[wav.parent]
    return (GenerationMetadata.from_dict(settings), INPUT_FILE) if settings else (None, None)


def _created(wav: Path, run: str | None, metadata: GenerationMetadata | None) -> tuple[datetime, int]:
    match = _RUN_NAME_RE.match(run or "")
    if match:
        return datetime.strptime(match.group(1), RUN_TIME_FORMAT), int(match.group(2) or 1)
    if metadata is not None and metadata.datetime:
        try:
            return datetime.fromisoformat(metadata.datetime).replace(tzinfo=None), 0
        except ValueError:
            log.debug("%s: datetime %r is not ISO; using the file time", wav, metadata.datetime)
    return datetime.fromtimestamp(wav.stat().st_mtime), 0


def _header(wav: Path) -> tuple[float | None, int | None]:
    try:
        info = sf.info(str(wav))
    except (sf.SoundFileError, RuntimeError, OSError) as error:
        log.warning("Cannot read the header of %s: %s", wav, error)
        return None, None
    return info.frames / info.samplerate, int(info.samplerate)
