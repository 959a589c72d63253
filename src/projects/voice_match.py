"""Voice consistency of a project: each take's CVVP likeness to its row's voice (kept with the take), and
the rows whose chosen take drifts away from its voice, judged among the rows of the same voice."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from src.consistency import ConsistencyGuard, SegmentCheck, flag_outliers
from src.errors import InvalidInput
from src.projects.state import Project
from src.qa import QaSettings
from src.voices import VoiceLibrary

CONSISTENCY = "consistency"  # the Candidate.scores key
DRIFT_FLAG = "voice drift"


def voice_clips(library: VoiceLibrary, voice: str) -> list[torch.Tensor]:
    """The reference clips of a voice (every part of an `a&b` blend), at 22.05 kHz.

    Raises:
        InvalidInput: the voice has no clips to compare with (`random`, latents only).
        VoiceNotFound / VoiceUnusable: as `VoiceLibrary.load_clips`.
    """
    if voice in ("random", "microphone"):
        raise InvalidInput(f"The '{voice}' voice has no reference clips to compare the takes with.")
    clips: list[torch.Tensor] = []
    for part in library.blend_parts(voice) or [voice]:
        if not library.clip_files(part):
            raise InvalidInput(
                f"voices/{part}/ has no clips (only cached latents) to compare the takes with."
            )
        clips.extend(library.load_clips(part).clips)
    return clips


def score_takes(
    guard: ConsistencyGuard,
    library: VoiceLibrary,
    voice: str,
    waves: Sequence[np.ndarray],
    sample_rate: int,
) -> list[float]:
    """CVVP score of each take (float32 mono arrays at `sample_rate`) against `voice`; higher = closer."""
    clips = voice_clips(library, voice)
    tensors = [torch.from_numpy(np.ascontiguousarray(w, dtype=np.float32)).reshape(1, -1) for w in waves]
    return guard.score(clips, tensors, sample_rate)


def consistency_checks(project: Project, z_threshold: float | None = None) -> dict[str, SegmentCheck]:
    """The verdict on each row whose chosen take has a score, by row id (rows of one voice compared).
    The threshold defaults to the project's QA setting `consistency_z`."""
    threshold = z_threshold if z_threshold is not None else QaSettings.from_dict(project.qa).consistency_z
    scored = [
        (row, row.chosen_candidate.scores[CONSISTENCY])
        for row in project.rows
        if row.chosen_candidate is not None and CONSISTENCY in row.chosen_candidate.scores
    ]
    if not scored:
        return {}
    checks = flag_outliers(
        [score for _, score in scored],
        [row.voice or project.voice for row, _ in scored],
        z_threshold=threshold,
    )
    return {row.id: check for (row, _), check in zip(scored, checks, strict=True)}


def flagged_rows(project: Project, z_threshold: float | None = None) -> list[str]:
    """Ids of the rows to render again: the chosen take is flagged by QA or drifts from its voice."""
    drift = {row_id for row_id, check in consistency_checks(project, z_threshold).items() if check.flagged}
    return [row.id for row in project.rows if row.id in drift or (row.qa or {}).get("flags")]
