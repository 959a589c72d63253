"""Checks made before a generation starts, so that a run never fails after minutes of work for a
reason known at the start: the [bracket] aligner, ffmpeg for clips only it can read, and disk space.

Each check is a plain function; `src/generate.py` calls them in order before sampling.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import soundfile as sf

from src.errors import MissingRequirement
from src.ffmpeg import FfmpegMissing, find_ffmpeg

log = logging.getLogger(__name__)

BYTES_PER_SAMPLE = 2  # clips are saved as 16-bit PCM
AR_CODE_S = 1024 / 22050  # seconds of speech one AR code stands for
METADATA_BYTES = 512 * 1024  # embedded settings and latents, per file (latents are ~100 kB)
SPACE_MARGIN_BYTES = 50 * 1024 * 1024  # keep this much free after the run
REDACTION_SWITCH = "Cut [Bracketed] Words"  # the Experimental checkbox that turns redaction off

DiskUsage = Callable[[str], Any]  # shutil.disk_usage's signature: returns an object with .free


def estimate_output_bytes(lines: int, candidates: int, output_sample_rate: int, max_mel_tokens: int) -> int:
    """An upper bound on what a run writes: every clip at its longest possible length.

    Args:
        lines: lines to generate.
        candidates: clips per line.
        output_sample_rate: the Output Sample Rate setting in Hz.
        max_mel_tokens: the longest clip in AR codes.

    Returns:
        Bytes: one clip per line and candidate, plus the joined clips of a several-line run (which
        hold every line again), each with its metadata.
    """
    clip_audio = int(max_mel_tokens * AR_CODE_S * output_sample_rate * BYTES_PER_SAMPLE)
    files = lines * candidates + (candidates if lines > 1 else 0)
    audio = clip_audio * lines * candidates * (2 if lines > 1 else 1)
    return audio + METADATA_BYTES * files


def check_disk_space(folder: Path, needed_bytes: int, disk_usage: DiskUsage = shutil.disk_usage) -> None:
    """Refuse to start when the disk holding `folder` has less than `needed_bytes` plus a margin free.

    Raises:
        MissingRequirement: naming the folder, what is free and what the run may need.
    """
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = disk_usage(str(probe)).free
    if free < needed_bytes + SPACE_MARGIN_BYTES:
        raise MissingRequirement(
            f"Not enough disk space for this run: {_mb(free)} free where results are saved ({folder}), "
            f"and the run may write up to {_mb(needed_bytes)} (plus {_mb(SPACE_MARGIN_BYTES)} kept free). "
            "Free some space, or generate fewer lines or candidates."
        )


def needs_aligner(prompts: Sequence[str]) -> bool:
    """Whether a prompt has [brackets] (typed, or the hidden emotion prefix): redaction needs wav2vec2."""
    return any("[" in prompt for prompt in prompts)


def check_aligner(tts: Any, emotion: str | None) -> None:
    """Load the [bracket] aligner now, so that a missing one is reported before any sampling.

    Args:
        tts: the TextToSpeech (objects without `load_aligner` are taken to need nothing).
        emotion: the Emotion choice, to say where the brackets come from.

    Raises:
        MissingRequirement: the aligner cannot be loaded; says why and how to turn redaction off.
    """
    load = getattr(tts, "load_aligner", None)
    if load is None:
        return
    try:
        load()
    except Exception as error:  # boundary: any failure to load the aligner is reported, not raised
        log.warning("The [bracket] aligner could not be loaded", exc_info=True)
        source = (
            f"the Emotion '{emotion}' adds a hidden [bracketed] prefix"
            if emotion and emotion != "None"
            else "the prompt has [bracketed] words"
        )
        raise MissingRequirement(
            f"This run needs the wav2vec2 aligner, because {source} that is cut from the audio, "
            f"and it could not be loaded: {error}\n"
            f"Nothing was generated. Either untick '{REDACTION_SWITCH}' in the Experimental section "
            "(the bracketed words are then spoken), or make the aligner available (see the README, "
            "'Model files')."
        ) from error


def unreadable_without_ffmpeg(files: Sequence[Path]) -> list[Path]:
    """The files whose header libsndfile cannot read (only ffmpeg can decode them)."""
    found = []
    for file in files:
        try:
            sf.info(str(file))
        except (RuntimeError, OSError, sf.LibsndfileError):
            found.append(file)
    return found


def check_ffmpeg(root: Path, files: Sequence[Path], *, label: str) -> str | None:
    """When some of `files` need ffmpeg and it is missing: raise if none would be usable, else a note.

    Args:
        root: the app folder (ffmpeg is looked for in its bin/ first).
        files: the audio the run will read.
        label: what the files are, for the message ("voice 'amy'").

    Returns:
        A note naming the files that will be skipped, or None when nothing is missing.

    Raises:
        MissingRequirement: every file needs ffmpeg and there is none.
    """
    needy = unreadable_without_ffmpeg(files)
    if not needy:
        return None
    try:
        find_ffmpeg(root)
        return None
    except FfmpegMissing as missing:
        names = ", ".join(file.name for file in needy)
        if len(needy) == len(files):
            raise MissingRequirement(
                f"The audio of {label} ({names}) can only be read with ffmpeg. {missing}"
            ) from missing
        return f"{names} of {label} can only be read with ffmpeg, which was not found, so skipped. {missing}"


def _mb(size: int) -> str:
    return f"{size / 1024 / 1024:,.0f} MB"
