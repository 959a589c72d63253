"""Voice-consistency scores: how well generated speech matches a voice's reference clips, with CVVP.

CVVP (cvvp.pth) compares speech *codes* with clip mels. Codes come straight from a generation
(`TTSResult.codes`) or, for a waveform on disk, from the DVAE that made the AR's training targets (the same
code space). A CVVP built with `mel_codes=None` reads the speech's mel instead.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import torch
from torch import nn

from tortoise.audio import VOICE_SAMPLE_RATE, resample
from tortoise.dvae_codes import codes_for_wavs
from tortoise.errors import InvalidInputError
from tortoise.latents import CVVP_MAX_CLIPS, MIN_CLIP_SAMPLES, ConditioningLatents
from tortoise.mel import compute_ar_mel, format_conditioning

CROP_SEED = 0  # clips longer than 6 s are cropped at a seeded position, so a voice always scores the same


def voice_clip_mels(
    clips: Sequence[torch.Tensor], mel_norms: torch.Tensor, max_clips: int = CVVP_MAX_CLIPS
) -> torch.Tensor:
    """CVVP's conditioning input for a voice: one normalised 6 s AR mel per clip.

    Args:
        clips: reference clips (1, samples) at 22.05 kHz.
        mel_norms: (80,) AR mel divisors.
        max_clips: the first clips used (as the latents keep at most 16 for CVVP).

    Returns:
        (clips, 80, 517) float32.

    Raises:
        InvalidInputError: no clips, or a clip shorter than 0.5 s.
    """
    if not clips:
        raise InvalidInputError("The voice has no clips to compare with; add clips to its folder.")
    if any(c.shape[-1] < MIN_CLIP_SAMPLES for c in clips):
        raise InvalidInputError("A reference clip is shorter than 0.5 s; remove it or use longer clips.")
    rng = random.Random(CROP_SEED)
    mels = [format_conditioning(c.reshape(1, -1).float(), mel_norms.float(), rng) for c in clips[:max_clips]]
    return torch.cat(mels, dim=0)


def latents_clip_mels(latents: ConditioningLatents) -> torch.Tensor | None:
    """The (clips, 80, 517) mels stored in non-slim latents, or None for slim ones."""
    if latents.ar_mels is None:
        return None
    return latents.ar_mels.reshape(-1, *latents.ar_mels.shape[-2:]).float()


def reads_codes(cvvp: nn.Module) -> bool:
    """True for CVVP models whose speech branch reads AR/DVAE codes (cvvp.pth); False for mel-reading ones."""
    return not isinstance(cvvp.speech_emb, nn.Conv1d)


@torch.inference_mode()
def speech_similarity(
    cvvp: nn.Module, speech: Sequence[torch.Tensor], clip_mels: torch.Tensor
) -> torch.Tensor:
    """CVVP score of each piece of speech against a voice's clips (higher = more like the voice).

    Args:
        cvvp: a CVVP model in eval mode.
        speech: per segment what the CVVP's speech branch reads: codes (length,) or (1, length) for
            cvvp.pth (e.g. `TTSResult.codes` rows or `waveform_codes`), or a mel (1, 80, frames) for a
            CVVP built with `mel_codes=None`. Lengths may differ.
        clip_mels: (clips, 80, frames) from `voice_clip_mels` or `latents_clip_mels`.

    Returns:
        (segments,) float32: each segment's score averaged over the clips, as CVVP ranking averages.

    Raises:
        InvalidInputError: no segments, or an empty one.
    """
    if not speech:
        raise InvalidInputError("There are no segments to score.")
    device = next(cvvp.parameters()).device
    voice = cvvp.encode_conditioning(clip_mels.to(device))  # (clips, D), unit length
    scores = []
    for segment in speech:
        if reads_codes(cvvp):
            row = segment.reshape(1, -1).long().to(device)
        else:
            row = segment.reshape(1, *segment.shape[-2:]).float().to(device)
        if row.shape[-1] == 0:
            raise InvalidInputError("A segment has no speech (empty audio); render it again.")
        scores.append(cvvp.score_over_clips(voice, cvvp.encode_speech(row)))
    return torch.cat(scores).float().cpu()


def waveform_codes(
    dvae: nn.Module, wav: torch.Tensor, sample_rate: int, mel_norms: torch.Tensor
) -> torch.Tensor:
    """DVAE speech codes (1, length) of a waveform (1, samples) at any rate (resampled to 22.05 kHz)."""
    return codes_for_wavs(dvae, _at_voice_rate(wav, sample_rate), mel_norms.float())


def waveform_similarity(
    cvvp: nn.Module,
    wavs: Sequence[torch.Tensor],
    sample_rate: int,
    clip_mels: torch.Tensor,
    mel_norms: torch.Tensor,
    dvae: nn.Module | None = None,
) -> torch.Tensor:
    """`speech_similarity` for rendered waveforms, e.g. a project's segment files.

    A code-reading CVVP (cvvp.pth) gets each waveform's DVAE codes, so `dvae` is required; a mel-reading
    CVVP gets its normalised AR mel.

    Args:
        wavs: per segment (1, samples) or (samples,) float audio at `sample_rate`.

    Returns:
        (segments,) float32 scores.

    Raises:
        InvalidInputError: a code-reading CVVP without a DVAE, no segments, or an empty one.
    """
    if reads_codes(cvvp):
        if dvae is None:
            raise InvalidInputError("Scoring audio with cvvp.pth needs the DVAE (dvae.pth) to encode it.")
        speech = [waveform_codes(dvae, w, sample_rate, mel_norms) for w in wavs]
    else:
        speech = [compute_ar_mel(_at_voice_rate(w, sample_rate), mel_norms.float()) for w in wavs]
    return speech_similarity(cvvp, speech, clip_mels)


def _at_voice_rate(wav: torch.Tensor, sample_rate: int) -> torch.Tensor:
    wave = wav.reshape(1, -1).float()
    if sample_rate != VOICE_SAMPLE_RATE:
        wave = resample(wave, sample_rate, VOICE_SAMPLE_RATE)
    return wave.clamp(-1.0, 1.0)
