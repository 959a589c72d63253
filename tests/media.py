"""Small media files for converter tests, made with ffmpeg or soundfile (no fixtures on disk)."""

import shutil
import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf

HAS_FFMPEG = shutil.which("ffmpeg") is not None


def make_mp3_stereo_44k(path: Path, duration_s: float = 0.5) -> Path:
    """Write a 44.1 kHz stereo MP3 (two different tones) with the system ffmpeg."""
    subprocess.run(
        [
            "ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
            "-f", "lavfi", "-i", f"sine=frequency=440:duration={duration_s}:sample_rate=44100",
            "-f", "lavfi", "-i", f"sine=frequency=660:duration={duration_s}:sample_rate=44100",
            "-filter_complex", "[0:a][1:a]amerge=inputs=2[a]", "-map", "[a]",
            "-ac", "2", "-ar", "44100", "-c:a", "libmp3lame", "-b:a", "64k", str(path),
        ],
        check=True,
    )  # fmt: skip
    return path


def make_wav_8bit(path: Path, sample_rate: int = 16000, duration_s: float = 0.5) -> Path:
    """Write an unsigned 8-bit mono WAV at ``sample_rate`` with soundfile."""
    t = np.arange(int(sample_rate * duration_s)) / sample_rate
    sf.write(path, 0.5 * np.sin(2 * np.pi * 300 * t), sample_rate, subtype="PCM_U8")
    return path


def assert_voice_wav(path: Path, sample_rate: int = 22050, channels: int = 1) -> None:
    """Check that ``path`` is a 16-bit PCM WAV with the given rate and channel count, with sound."""
    info = sf.info(path)
    assert (info.format, info.subtype) == ("WAV", "PCM_16"), (info.format, info.subtype)
    assert info.samplerate == sample_rate
    assert info.channels == channels
    data, _ = sf.read(path)
    assert len(data) > sample_rate // 4 and np.abs(data).max() > 0.05
