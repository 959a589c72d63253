"""Waveform I/O and resampling: load, resample, pad and save audio, plus the named sample rates.

Files are read as float tensors, resampled with the windowed-sinc filter TorToiSe's audio went
through (torchaudio's default), and written as 16-bit WAV files.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import tempfile
import uuid
import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torch.nn.functional as F

from tortoise.errors import AudioLoadError

# Sample rates, in Hz.
VOICE_SAMPLE_RATE = 22050  # voice clips as loaded; AR conditioning mel and CVVP work at this rate
OUTPUT_SAMPLE_RATE = 24000  # diffusion mel, vocoder and every waveform TorToiSe returns
WAV2VEC2_SAMPLE_RATE = 16000  # wav2vec2 alignment used for [bracket] redaction

# Resampler (torchaudio.functional.resample defaults, method "sinc_interp_hann").
RESAMPLE_LOWPASS_FILTER_WIDTH = 6  # zero crossings of the sinc kept on each side of a tap
RESAMPLE_ROLLOFF = 0.99  # cutoff as a fraction of the lower Nyquist frequency

# Loading.
SUSPICIOUS_PEAK = 2.0  # a clip peaking above this (full scale = 1) was probably decoded with the wrong scale
FFMPEG_TIMEOUT_S = 600  # give up on an ffmpeg decode after this many seconds

# Writing: float full scale maps to this many int16 steps, so a 16-bit file read back with soundfile
# (which divides by 2**15) gives the quantised values exactly.
PCM16_SCALE = 32768.0


def read_audio(path: str | os.PathLike, *, ffmpeg_path: str | None = None) -> tuple[torch.Tensor, int]:
    """Decode an audio file at its own sample rate, keeping every channel.

    soundfile (libsndfile) reads WAV (8/16/24/32-bit integer, 32/64-bit float), FLAC, OGG/Vorbis,
    Opus and MP3. Anything it rejects is handed to ffmpeg when ffmpeg can be found.

    Args:
        path: the audio file.
        ffmpeg_path: the ffmpeg executable for formats libsndfile cannot read; default: `ffmpeg` on PATH.

    Returns:
        (wav, sample_rate): float32 tensor [channels, samples], integer formats scaled to [-1, 1)
        and float formats unchanged; the file's sample rate in Hz.

    Raises:
        AudioLoadError: the file is missing, empty, not audio, corrupt, holds no samples or
            non-finite samples, or needs ffmpeg and ffmpeg is missing or fails. The message names the file.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise AudioLoadError(f"Audio file not found: {path}")
    if not os.path.isfile(path):
        raise AudioLoadError(f"Not a file: {path}")
    if os.path.getsize(path) == 0:
        raise AudioLoadError(f"Audio file is empty (0 bytes): {path}")

    try:
        data, sample_rate = sf.read(path, dtype="float32", always_2d=True)  # (samples, channels)
    except (sf.SoundFileError, RuntimeError) as sf_error:
        data, sample_rate = _decode_with_ffmpeg(path, ffmpeg_path, sf_error)

    if data.shape[0] == 0 or data.shape[1] == 0:
        raise AudioLoadError(f"Audio file contains no samples: {path}")
    if not np.isfinite(data).all():
        raise AudioLoadError(f"Audio file contains NaN or infinite samples: {path}")
    return torch.from_numpy(np.ascontiguousarray(data.T)), int(sample_rate)


def load_audio(
    path: str | os.PathLike,
    sample_rate: int,
    *,
    use_channel_mean: bool = False,
    ffmpeg_path: str | None = None,
) -> torch.Tensor:
    """Load an audio file as a mono clip at `sample_rate`, like the official `utils.audio.load_audio`.

    Steps, in the official order: decode; reduce to mono; resample with `resample`; warn when the
    peak exceeds 2 or no sample is negative (signs of a wrongly scaled or unsigned decode, or
    silence); clip to [-1, 1].

    Multi-channel files keep only their first channel by default. That is what the official code
    does for WAV files, and it keeps conditioning latents identical to the official ones. Pass
    `use_channel_mean=True` to average the channels instead (the official MP3 path, through
    librosa, averaged). Unlike the official MP3 path, every format is resampled with the same
    windowed-sinc filter.

    Args:
        path: the audio file (WAV, FLAC, OGG, MP3, or anything ffmpeg decodes).
        sample_rate: the rate to return, in Hz (`VOICE_SAMPLE_RATE` for voice clips).
        use_channel_mean: average all channels instead of keeping the first one.
        ffmpeg_path: the ffmpeg executable for formats libsndfile cannot read; default: `ffmpeg` on PATH.

    Returns:
        float32 tensor [1, samples] in [-1, 1] at `sample_rate`.

    Raises:
        AudioLoadError: the file cannot be read as audio; the message names the file.
    """
    wav, file_rate = read_audio(path, ffmpeg_path=ffmpeg_path)
    mono = wav.mean(dim=0) if use_channel_mean else wav[0]
    if file_rate != sample_rate:
        mono = resample(mono, file_rate, sample_rate)

    peak, floor = mono.max().item(), mono.min().item()
    if peak > SUSPICIOUS_PEAK or floor >= 0:
        # Same check as the official loader, which printed it; the clip is still used.
        warnings.warn(
            f"Audio in {os.fspath(path)} looks wrongly scaled, unsigned or silent: "
            f"max={peak:.4g}, min={floor:.4g}. It is clipped to [-1, 1].",
            stacklevel=2,
        )
    return mono.clamp(-1.0, 1.0).unsqueeze(0)


def _decode_with_ffmpeg(path: str, ffmpeg_path: str | None, sf_error: Exception) -> tuple[np.ndarray, int]:
    """Decode `path` with ffmpeg into a temporary float WAV and read that back.

    Returns:
        (data, sample_rate): float32 array [samples, channels] and the rate in Hz.
    """
    ffmpeg = ffmpeg_path or shutil.which("ffmpeg")
    if ffmpeg is None:
        raise AudioLoadError(
            f"Could not read audio file {path}: {_sf_reason(sf_error)}. If it is audio in a format "
            "libsndfile does not support, install ffmpeg (or put it on PATH) and try again."
        )
    with tempfile.TemporaryDirectory(prefix="tortoise-decode-") as tmp_dir:
        decoded = os.path.join(tmp_dir, "decoded.wav")
        # "file:" stops ffmpeg from treating a colon in the name as a protocol; -vn drops cover art.
        source = "file:" + os.path.abspath(path)
        command = [ffmpeg, "-nostdin", "-v", "error", "-y", "-i", source]
        command += ["-vn", "-acodec", "pcm_f32le", "-f", "wav", decoded]
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=FFMPEG_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired) as error:
            raise AudioLoadError(f"Could not run ffmpeg ({ffmpeg}) to decode {path}: {error}") from error
        if result.returncode != 0 or not os.path.isfile(decoded):
            lines = result.stderr.strip().splitlines()
            reason = lines[-1].removeprefix(source + ": ") if lines else f"exit status {result.returncode}"
            raise AudioLoadError(
                f"Could not read audio file {path}: not audio, or corrupt "
                f"(libsndfile: {_sf_reason(sf_error)}; ffmpeg: {reason})."
            )
        try:
            data, sample_rate = sf.read(decoded, dtype="float32", always_2d=True)
        except (sf.SoundFileError, RuntimeError) as error:
            raise AudioLoadError(f"Could not read audio file {path}: {_sf_reason(error)}") from error
    return data, sample_rate


def _sf_reason(error: Exception) -> str:
    """Return libsndfile's own reason, without the "Error opening <path>:" prefix soundfile adds."""
    text = str(error)
    return text.rsplit(": ", 1)[-1].rstrip(".") if ": " in text else text


def resample(
    wav: torch.Tensor,
    orig_sr: int,
    new_sr: int,
    *,
    lowpass_filter_width: int = RESAMPLE_LOWPASS_FILTER_WIDTH,
    rolloff: float = RESAMPLE_ROLLOFF,
) -> torch.Tensor:
    """Resample along the last axis with a Hann-windowed sinc filter.

    Same algorithm and output as `torchaudio.functional.resample` with its defaults
    (`resampling_method="sinc_interp_hann"`): both rates are divided by their gcd, the
    band-limited interpolation is evaluated as one strided conv1d with one output channel per phase,
    and the output has ceil(samples * new_sr / orig_sr) samples. The filter is computed once
    per rate pair in float64 and cast to the input's dtype (torchaudio builds it in the input's
    dtype; the two differ by float32 rounding, about 1e-7).

    Args:
        wav: float tensor [..., samples] on any device.
        orig_sr: the input rate in Hz (a positive integer).
        new_sr: the output rate in Hz (a positive integer).
        lowpass_filter_width: zero crossings kept on each side of the sinc; larger is sharper and slower.
        rolloff: cutoff as a fraction of the lower of the two Nyquist frequencies, below 1 to limit aliasing.

    Returns:
        tensor [..., ceil(samples * new_sr / orig_sr)] with the input's dtype and device
        (the input itself when the rates are equal).

    Raises:
        ValueError: a rate is not a positive integer, or the filter width is not positive.
        TypeError: `wav` is not a floating-point tensor.
    """
    if int(orig_sr) != orig_sr or int(new_sr) != new_sr or orig_sr <= 0 or new_sr <= 0:
        raise ValueError(f"Sample rates must be positive integers, got {orig_sr} and {new_sr}")
    if lowpass_filter_width <= 0:
        raise ValueError(f"lowpass_filter_width must be positive, got {lowpass_filter_width}")
    if not wav.is_floating_point():
        raise TypeError(f"resample needs a floating-point waveform, got {wav.dtype}")
    if orig_sr == new_sr:
        return wav

    gcd = math.gcd(int(orig_sr), int(new_sr))
    down, up = int(orig_sr) // gcd, int(new_sr) // gcd
    kernel, width = _sinc_resample_kernel(down, up, lowpass_filter_width, float(rolloff))
    kernel = kernel.to(device=wav.device, dtype=wav.dtype)  # (up, 1, 2 * width + down)

    shape = wav.shape
    flat = wav.reshape(-1, 1, shape[-1])  # (batch, 1, samples)
    # `width` samples of context before the first output, `width + down` after the last input, so
    # the final conv window (stride `down`) still covers every input sample.
    padded = F.pad(flat, (width, width + down))
    phases = F.conv1d(padded, kernel, stride=down)  # (batch, up, blocks): output j*up + k is phase k
    out = phases.transpose(1, 2).reshape(flat.shape[0], -1)
    target_length = math.ceil(up * shape[-1] / down)
    return out[:, :target_length].reshape(*shape[:-1], -1)


@lru_cache(maxsize=32)
def _sinc_resample_kernel(
    down: int, up: int, lowpass_filter_width: int, rolloff: float
) -> tuple[torch.Tensor, int]:
    """Filter taps for resampling by up/down (coprime), one row per output phase.

    Output sample k (0 <= k < up) of each block sits at input time k * down / up. Its taps weigh
    input offsets -width ... width + down - 1 with sinc(base * dt) * hann(dt) * base / down, where
    dt is the distance in input samples divided by `down`, `base` the cutoff in units of the reduced
    rates, and the Hann window spans +-lowpass_filter_width zero crossings.

    Returns:
        (kernel, width): float64 CPU tensor [up, 1, 2 * width + down] and the one-sided context in samples.
    """
    base = min(down, up) * rolloff
    width = math.ceil(lowpass_filter_width * down / base)
    offsets = torch.arange(-width, width + down, dtype=torch.float64) / down  # input times, (taps,)
    starts = -torch.arange(up, dtype=torch.float64) / up  # minus each phase's output time, (up,)
    # Distance in zero crossings of the cutoff sinc, limited to the window's support.
    crossings = (starts[:, None] + offsets[None, :]) * base
    crossings = crossings.clamp(-lowpass_filter_width, lowpass_filter_width)  # (up, taps)
    window = torch.cos(crossings * (math.pi / (2 * lowpass_filter_width))) ** 2
    kernel = torch.sinc(crossings) * window * (base / down)
    return kernel.unsqueeze(1), width


def pad_or_truncate(wav: torch.Tensor, length: int) -> torch.Tensor:
    """Zero-pad at the end, or keep the first `length` samples, like the official `pad_or_truncate`.

    Args:
        wav: tensor [..., samples].
        length: the number of samples to return.

    Returns:
        tensor [..., length].
    """
    if wav.shape[-1] >= length:
        return wav[..., :length]
    return F.pad(wav, (0, length - wav.shape[-1]))


def save_wav(path: str | os.PathLike, wav: torch.Tensor | np.ndarray, sample_rate: int) -> None:
    """Write a waveform as a 16-bit PCM WAV file, atomically.

    The data goes to a temporary file next to `path` that then replaces `path`, so readers never
    see a half-written file. Missing parent folders are created. Samples are clipped to [-1, 1]
    and rounded to the nearest of 65536 levels (full scale 2**15).

    Args:
        path: the destination `.wav` file; an existing file is replaced.
        wav: float samples [samples], [1, samples] or [channels, samples], any device.
        sample_rate: the rate to record in the header, in Hz.

    Raises:
        ValueError: `wav` has more than 2 dimensions or no samples.
    """
    samples = torch.as_tensor(wav).detach().to("cpu", torch.float64)
    if samples.dim() == 1:
        samples = samples.unsqueeze(0)
    if samples.dim() != 2 or samples.shape[-1] == 0:
        raise ValueError(f"save_wav needs [samples] or [channels, samples], got shape {tuple(samples.shape)}")
    levels = (samples.clamp(-1.0, 1.0) * PCM16_SCALE).round().clamp(-32768, 32767)
    pcm = levels.to(torch.int16).T.contiguous().numpy()  # (samples, channels)

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    # A hidden name in the same folder, so os.replace stays a rename on one file system; written
    # with normal permissions (unlike mkstemp's 0600).
    temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        sf.write(temporary, pcm, int(sample_rate), subtype="PCM_16", format="WAV")
        os.replace(temporary, target)
    finally:
        if temporary.exists():
            temporary.unlink()
