"""Voice-consistency guard: score a project's segments against their voice with CVVP and flag the ones
that drift away from it (a low robust z-score among the segments of the same voice).

`flag_outliers` is pure; `ConsistencyGuard` loads CVVP (and the DVAE that turns audio into codes) lazily.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from src.errors import InvalidInput
from tortoise import TortoiseError, reads_codes, voice_clip_mels, waveform_similarity

DEFAULT_Z_THRESHOLD = 3.5  # Iglewicz and Hoaglin's usual cut-off for the modified z-score
MIN_SEGMENTS = 4  # a voice needs this many segments before any of them is judged
MAD_TO_SIGMA = 0.6745  # the modified z-score's factor: MAD of a normal distribution is 0.6745 sigma
DEFAULT_MIN_SPREAD = 0.01  # CVVP score units; floors the MAD so equal scores do not give huge z values


@dataclass(frozen=True)
class SegmentCheck:
    """The guard's verdict on one segment.

    Attributes:
        index: the segment's position in the input.
        score: its CVVP similarity to the voice (higher = closer).
        z: its modified z-score among the segments of its voice (None when the voice has fewer than
            MIN_SEGMENTS segments).
        flagged: z <= -threshold: it sounds less like the voice than the others do.
    """

    index: int
    score: float
    z: float | None
    flagged: bool


def flag_outliers(
    scores: Sequence[float],
    groups: Sequence[Hashable] | None = None,
    *,
    z_threshold: float = DEFAULT_Z_THRESHOLD,
    min_segments: int = MIN_SEGMENTS,
    min_spread: float = DEFAULT_MIN_SPREAD,
) -> list[SegmentCheck]:
    """Flag segments whose score is far below the others of the same voice.

    The z-score is the robust "modified z-score": 0.6745 * (score - median) / MAD, where MAD is the
    median absolute deviation of the voice's scores. A plain mean/standard-deviation z-score cannot flag
    anything in a small project (one bad segment inflates the spread it is measured with: with 5
    segments no z can pass 1.8), while the median and MAD ignore the outlier. Only low scores are
    flagged: a segment that sounds more like the voice than the rest is not a problem.

    Args:
        scores: one CVVP score per segment.
        groups: per segment its voice (segments of different voices are never compared); None = one group.
        z_threshold: flag at z <= -z_threshold (default 3.5).
        min_segments: groups smaller than this get z=None and no flags.
        min_spread: floor of the MAD, so near-identical scores do not turn tiny differences into huge z.

    Raises:
        InvalidInput: groups of another length than scores, a non-finite score, or a threshold <= 0.
    """
    if groups is not None and len(groups) != len(scores):
        raise InvalidInput(f"Got {len(scores)} scores but {len(groups)} voices; give one voice per segment.")
    if not z_threshold > 0:
        raise InvalidInput(f"The z-score threshold must be above 0, got {z_threshold}.")
    values = [float(s) for s in scores]
    if not all(math.isfinite(v) for v in values):
        raise InvalidInput("A consistency score is not a number; score the segments again.")
    keys = list(groups) if groups is not None else [None] * len(values)
    members: dict[Hashable, list[int]] = {}
    for index, key in enumerate(keys):
        members.setdefault(key, []).append(index)
    checks: dict[int, SegmentCheck] = {}
    for indices in members.values():
        group = [values[i] for i in indices]
        median = statistics.median(group)
        mad = max(statistics.median(abs(v - median) for v in group), min_spread)
        for index in indices:
            if len(indices) < min_segments:
                checks[index] = SegmentCheck(index, values[index], None, False)
                continue
            z = MAD_TO_SIGMA * (values[index] - median) / mad
            checks[index] = SegmentCheck(index, values[index], z, z <= -z_threshold)
    return [checks[index] for index in range(len(values))]


class ConsistencyGuard:
    """Scores segment audio against a voice's clips with CVVP; models load on first use.

    Args:
        load_cvvp: returns the CVVP model (cvvp.pth).
        load_dvae: returns the DVAE (dvae.pth), needed by a code-reading CVVP to encode audio.
        mel_norms: (80,) AR mel divisors.
        device: where the models run.
    """

    def __init__(
        self,
        load_cvvp: Callable[[], nn.Module],
        load_dvae: Callable[[], nn.Module] | None,
        mel_norms: torch.Tensor,
        device: str | torch.device = "cpu",
    ) -> None:
        self._load_cvvp, self._load_dvae = load_cvvp, load_dvae
        self.mel_norms = mel_norms
        self.device = torch.device(device)
        self._cvvp: nn.Module | None = None
        self._dvae: nn.Module | None = None

    def _models(self) -> tuple[nn.Module, nn.Module | None]:
        if self._cvvp is None:
            self._cvvp = self._load_cvvp().eval().requires_grad_(False).to(self.device)
        if self._dvae is None and reads_codes(self._cvvp) and self._load_dvae is not None:
            self._dvae = self._load_dvae().eval().requires_grad_(False).to(self.device)
        return self._cvvp, self._dvae

    def score(
        self, voice_clips: Sequence[torch.Tensor], wavs: Sequence[torch.Tensor], sample_rate: int
    ) -> list[float]:
        """CVVP similarity of each segment waveform to the voice.

        Args:
            voice_clips: the voice's reference clips (1, samples) at 22.05 kHz (`VoiceLibrary.load_clips`).
            wavs: segment audio (1, samples) at `sample_rate`.

        Raises:
            InvalidInput: no clips or segments, or audio the models cannot score.
        """
        if not wavs:
            raise InvalidInput("There are no segments to check.")
        cvvp, dvae = self._models()
        try:
            clip_mels = voice_clip_mels(voice_clips, self.mel_norms)
            scores = waveform_similarity(cvvp, wavs, sample_rate, clip_mels, self.mel_norms, dvae)
        except TortoiseError as error:
            raise InvalidInput(f"The voice-consistency check failed: {error}") from error
        return [float(s) for s in scores]


def guard_from_models_dir(models_dir: str | Path, *, offline: bool | None = None) -> ConsistencyGuard:
    """A guard over the official cvvp.pth and dvae.pth in `models/tortoise/` (downloaded on first use)."""
    from tortoise import ModelStore, load_mel_norms
    from tortoise import models as registry

    store = ModelStore(models_dir, offline=offline)
    return ConsistencyGuard(
        lambda: registry.load("cvvp", store.get("cvvp.pth")),
        lambda: registry.load("dvae", store.get("dvae.pth")),
        load_mel_norms(store.get("mel_norms.pth")),
    )
