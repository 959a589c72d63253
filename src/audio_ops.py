"""Pure post-processing of generated audio: join clips with pauses, output volume, output resample,
16-bit conversion without wrap-around, silence trimming, and which outputs count as non-final.

Waveforms are float tensors [samples] or [channels, samples] with full scale 1.0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from src.errors import InvalidInput
from tortoise import resample

MIN_OUTPUT_SAMPLE_RATE = 8000
MAX_OUTPUT_SAMPLE_RATE = 192000
MAX_VOLUME = 10.0  # beyond this a "volume" is a typo, not a gain
PCM16_MAX = 32767
PCM16_MIN = -32768


def join_clips(clips: Sequence[torch.Tensor], sample_rate: int, pause_s: float = 0.0) -> torch.Tensor:
    """Concatenate clips in order along time, with `pause_s` seconds of silence between them.

    Args:
        clips: one or more tensors [samples] or [channels, samples], all with the same leading shape.
        sample_rate: their rate in Hz (to turn the pause into samples).
        pause_s: silence between two clips, in seconds (0 = none).

    Returns:
        One tensor with the clips' leading shape.

    Raises:
        InvalidInput: no clips, a negative pause, or clips whose channel counts differ.
    """
    if not clips:
        raise InvalidInput("There are no clips to join.")
    if pause_s < 0 or not math.isfinite(pause_s):
        raise InvalidInput(f"The pause between clips must be 0 s or more, not {pause_s}.")
    lead = clips[0].shape[:-1]
    if any(clip.shape[:-1] != lead for clip in clips):
        raise InvalidInput("Cannot join clips with different numbers of channels.")
    gap = clips[0].new_zeros(*lead, round(pause_s * sample_rate))
    parts: list[torch.Tensor] = []
    for index, clip in enumerate(clips):
        if index and gap.shape[-1]:
            parts.append(gap)
        parts.append(clip.to(clips[0].dtype))
    return torch.cat(parts, dim=-1)


def apply_volume(wav: torch.Tensor, volume: float) -> torch.Tensor:
    """Multiply by `volume` and clip to [-1, 1], so loud peaks saturate instead of wrapping around.

    Args:
        wav: float waveform.
        volume: gain factor, 0 to 10 (1 = unchanged; the input is returned as is).

    Raises:
        InvalidInput: a negative, non-finite or absurdly large volume.
    """
    if not math.isfinite(volume) or not 0.0 <= volume <= MAX_VOLUME:
        raise InvalidInput(f"Output Volume must be between 0 and {MAX_VOLUME:g}; got {volume}.")
    if volume == 1.0:
        return wav
    return (wav * volume).clamp(-1.0, 1.0)


def to_pcm16(wav: torch.Tensor | np.ndarray) -> np.ndarray:
    """Float samples -> int16, clipping first so that 1.2 becomes 32767, never a negative number.

    Returns:
        int16 array of the input's shape; NaN becomes 0.
    """
    samples = np.nan_to_num(np.asarray(torch.as_tensor(wav).detach().cpu().double()), nan=0.0)
    levels = np.round(np.clip(samples, -1.0, 1.0) * 32768.0)
    return np.clip(levels, PCM16_MIN, PCM16_MAX).astype(np.int16)


def resample_output(wav: torch.Tensor, sample_rate: int, output_sample_rate: int | None) -> torch.Tensor:
    """Resample to the "Output Sample Rate" setting; an equal rate (or None/0) returns `wav` unchanged.

    (mrq's UI crashed when the setting equalled TorToiSe's 24 kHz; here that is the no-op case.)

    Raises:
        InvalidInput: a rate outside 8000-192000 Hz.
    """
    if not output_sample_rate or output_sample_rate == sample_rate:
        return wav
    if not MIN_OUTPUT_SAMPLE_RATE <= output_sample_rate <= MAX_OUTPUT_SAMPLE_RATE:
        raise InvalidInput(
            f"Output Sample Rate must be between {MIN_OUTPUT_SAMPLE_RATE} and {MAX_OUTPUT_SAMPLE_RATE} Hz;"
            f" got {output_sample_rate}."
        )
    return resample(wav.float() if not wav.is_floating_point() else wav, sample_rate, int(output_sample_rate))


def postprocess_output(
    wav: torch.Tensor, sample_rate: int, output_sample_rate: int | None, volume: float
) -> tuple[torch.Tensor, int]:
    """Resample to the output rate, then apply the volume (the order mrq's UI used).

    Returns:
        (waveform, its sample rate in Hz).
    """
    rate = int(output_sample_rate) if output_sample_rate else sample_rate
    return apply_volume(resample_output(wav, sample_rate, output_sample_rate), volume), rate


def trim_silence(
    wav: torch.Tensor, sample_rate: int, *, threshold_db: float = -50.0, keep_s: float = 0.05
) -> torch.Tensor:
    """Cut leading and trailing silence (peaks below `threshold_db` dBFS), keeping `keep_s` of margin.

    Returns:
        The trimmed waveform; an all-silent input is returned unchanged.
    """
    level = 10.0 ** (threshold_db / 20.0)
    loud = wav.abs().reshape(-1, wav.shape[-1]).amax(dim=0) > level  # (samples,)
    indices = torch.nonzero(loud).flatten()
    if indices.numel() == 0:
        return wav
    margin = round(keep_s * sample_rate)
    start = max(int(indices[0]) - margin, 0)
    end = min(int(indices[-1]) + 1 + margin, wav.shape[-1])
    return wav[..., start:end]


def non_final_outputs(
    outputs: Sequence[Path | str], finals: Sequence[Path | str], *, delete_non_final: bool
) -> list[Path]:
    """The outputs to delete under the "Delete Non-Final Output" setting.

    Args:
        outputs: every file a run wrote, in order.
        finals: the files the user gets (combined clips, or the clips themselves for one line).
        delete_non_final: the setting; when off nothing is deleted.

    Returns:
        The outputs that are not final, in order (empty when the setting is off).
    """
    if not delete_non_final:
        return []
    keep = {Path(p) for p in finals}
    return [Path(p) for p in outputs if Path(p) not in keep]


def join_with_pauses(
    clips: Sequence[torch.Tensor],
    sample_rate: int,
    pauses_after_s: Sequence[float],
    pause_before_s: float = 0.0,
) -> torch.Tensor:
    """Concatenate clips in order with a silence of its own after each (the `[pause]` markup).

    Args:
        clips: one or more tensors [samples] or [channels, samples], all with the same leading shape.
        sample_rate: their rate in Hz.
        pauses_after_s: per clip, the seconds of silence after it (0 = none; the last one is kept too).
        pause_before_s: seconds of silence before the first clip.

    Returns:
        One tensor with the clips' leading shape; each pause is round(seconds * sample_rate) zeros.

    Raises:
        InvalidInput: no clips, a pause per clip missing, a negative pause, or different channel counts.
    """
    if not clips:
        raise InvalidInput("There are no clips to join.")
    if len(pauses_after_s) != len(clips):
        raise InvalidInput(f"{len(clips)} clips need {len(clips)} pauses, not {len(pauses_after_s)}.")
    pauses = [pause_before_s, *pauses_after_s]
    bad = [pause for pause in pauses if not math.isfinite(pause) or pause < 0]
    if bad:
        raise InvalidInput(f"A pause must be 0 s or more, not {bad[0]}.")
    lead = clips[0].shape[:-1]
    if any(clip.shape[:-1] != lead for clip in clips):
        raise InvalidInput("Cannot join clips with different numbers of channels.")

    def silence(seconds: float) -> list[torch.Tensor]:
        return [clips[0].new_zeros(*lead, round(seconds * sample_rate))] if seconds > 0 else []

    parts = silence(pause_before_s)
    for clip, pause in zip(clips, pauses_after_s, strict=True):
        parts += [clip.to(clips[0].dtype), *silence(pause)]
    return torch.cat(parts, dim=-1)
