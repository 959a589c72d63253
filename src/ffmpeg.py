"""Find ffmpeg (bin/ first, then PATH) and run audio conversions with readable errors.

Used by the app and any Python CLI; convert/to_voice_wav.sh|.bat apply the same rules in shell.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

from src.atomic import replacing
from src.errors import AppError

log = logging.getLogger(__name__)

VOICE_SAMPLE_RATE = 22050  # Hz; the rate voice clips are read at (tortoise.audio.VOICE_SAMPLE_RATE)
FFMPEG_STDERR_LINES = 5  # how much of ffmpeg's complaint goes into an error message


class FfmpegError(AppError):
    """ffmpeg ran but could not do the job; the message names the file and quotes ffmpeg."""


class FfmpegMissing(FfmpegError):
    """No ffmpeg in bin/ or on PATH; the message gives both ways to fix it."""


def _binary_name() -> str:
    return "ffmpeg.exe" if os.name == "nt" else "ffmpeg"


def find_ffmpeg(root: str | os.PathLike[str], search_path: str | None = None) -> Path:
    """Locate ffmpeg: ``<root>/bin/`` first, then the directories on PATH.

    Args:
        root: the app's root folder (the one holding bin/).
        search_path: PATH-style list of folders to search after bin/; None means os.environ's PATH.

    Returns:
        The path of the ffmpeg executable.

    Raises:
        FfmpegMissing: when neither place has one; the message names both fixes.
    """
    bin_dir = Path(root) / "bin"
    candidate = bin_dir / _binary_name()
    if candidate.is_file():
        if os.name == "nt" or os.access(candidate, os.X_OK):
            return candidate
        log.warning("%s is not executable (chmod +x it); looking on PATH instead", candidate)
    found = shutil.which("ffmpeg", path=search_path)
    if found:
        return Path(found)
    raise FfmpegMissing(
        "ffmpeg was not found. Either install it system-wide (Debian/Ubuntu: apt install ffmpeg; "
        f"macOS: brew install ffmpeg; Windows: winget install --id Gyan.FFmpeg), or put the "
        f"{_binary_name()} binary into {bin_dir}{os.sep}, which is searched before PATH."
    )


def prepend_bin_to_path(
    root: str | os.PathLike[str], env: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Return a copy of ``env`` (default: os.environ) with ``<root>/bin`` first on PATH.

    Pass the result as ``env=`` to a child process, so that a drop-in ffmpeg in bin/ wins over a
    system-wide one there too. os.environ itself is left unchanged.
    """
    new_env = dict(os.environ if env is None else env)
    bin_dir = str(Path(root).resolve() / "bin")
    parts = [p for p in new_env.get("PATH", "").split(os.pathsep) if p and p != bin_dir]
    new_env["PATH"] = os.pathsep.join([bin_dir, *parts])
    return new_env


def _last_lines(text: str, count: int) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return " | ".join(lines[-count:]) or "no message"


def convert_to_wav(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    sample_rate: int = VOICE_SAMPLE_RATE,
    channels: int = 1,
    *,
    ffmpeg: str | os.PathLike[str] | None = None,
    timeout_s: float | None = None,
) -> Path:
    """Convert any audio or video file ffmpeg reads into a 16-bit PCM WAV.

    The WAV is first written to a temporary file beside ``dst`` and then renamed over it, so
    ``dst`` is either the complete new file or untouched, and ``src`` may be ``dst`` itself.

    Args:
        src: input file (audio, or video whose first audio stream is used).
        dst: output .wav path; missing parent folders are created.
        sample_rate: output rate in Hz, default 22050.
        channels: output channels, 1 (mono, default) or 2.
        ffmpeg: the ffmpeg executable; None finds one with find_ffmpeg() under the app root.
        timeout_s: give up after this many seconds; None waits as long as ffmpeg runs.

    Returns:
        ``dst`` as a Path.

    Raises:
        FfmpegMissing: no ffmpeg could be found.
        FfmpegError: the input is missing, or ffmpeg failed or timed out; the message quotes ffmpeg.
        ValueError: sample_rate or channels is out of range.
    """
    src_path, dst_path = Path(src), Path(dst)
    if not isinstance(sample_rate, int) or not 1000 <= sample_rate <= 384_000:
        raise ValueError(
            f"sample_rate must be an integer number of Hz in 1000-384000, got {sample_rate!r}"
        )
    if channels not in (1, 2):
        raise ValueError(f"channels must be 1 or 2, got {channels!r}")
    if not src_path.is_file():
        raise FfmpegError(f"Cannot convert {src_path}: the file does not exist.")
    if ffmpeg is None:
        # the app root is the folder above src/
        ffmpeg = find_ffmpeg(Path(__file__).resolve().parents[1])

    # -bitexact drops the encoder tag, so the file is a plain 44-byte-header WAV that every
    # reader (soundfile, scipy, librosa) takes without warnings.
    with replacing(dst_path) as tmp_path:
        command = [
            str(ffmpeg), "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
            "-i", str(src_path), "-vn", "-map_metadata", "-1",
            "-ac", str(channels), "-ar", str(sample_rate), "-c:a", "pcm_s16le",
            "-fflags", "+bitexact", "-flags:a", "+bitexact", "-f", "wav", str(tmp_path),
        ]  # fmt: skip
        try:
            result = subprocess.run(command, capture_output=True, timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired as exc:
            raise FfmpegError(f"ffmpeg took longer than {timeout_s} s to convert {src_path.name}.") from exc
        except OSError as exc:
            raise FfmpegError(f"ffmpeg at {ffmpeg} could not be started: {exc}") from exc
        if result.returncode != 0:
            message = _last_lines(result.stderr.decode("utf-8", errors="replace"), FFMPEG_STDERR_LINES)
            raise FfmpegError(
                f"ffmpeg could not convert {src_path.name} (exit code {result.returncode}): {message}"
            )
        if tmp_path.stat().st_size <= 44:  # a bare WAV header: the input had no audio
            raise FfmpegError(f"{src_path.name} contains no audio to convert.")
    log.debug("converted %s -> %s (%d Hz, %d ch)", src_path, dst_path, sample_rate, channels)
    return dst_path
