"""Stitching a project's chosen takes into `combined.wav`, rewriting only the span that changed.

The layout of the last combined file (row, file, length, pause per span) lives in the project state. A
re-stitch compares it with the new layout, copies the unchanged head and tail samples from the old file
(bit for bit) and reads only the changed rows' WAVs. The combined file holds the longest run of finished
rows from the start, so it grows in order while a project renders.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from src.audio_ops import resample_output
from src.metadata import GenerationMetadata
from src.projects.state import COMBINED_FILE, META_PROJECT, Project, now_iso
from src.results import save_clip
from src.settings import GenerateDefaults

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Span:
    """One row's place in combined.wav: its take's file, its length and the silence after it (samples)."""

    row: str
    file: str
    samples: int
    pause: int


@dataclass(frozen=True)
class StitchResult:
    """What a stitch did.

    Attributes:
        path: combined.wav, or None when no row is finished yet (any old file is removed).
        rows: how many rows (from the first) it holds.
        changed: (start, end) samples of the new file that were rewritten; (0, 0) when nothing changed.
        sample_rate: its rate in Hz.
    """

    path: Path | None
    rows: int
    changed: tuple[int, int]
    sample_rate: int


def _finished_prefix(project: Project) -> list[tuple[int, str]]:
    """(index, take file) of the rows from the first up to the first row without a chosen take."""
    out = []
    for index, row in enumerate(project.rows):
        chosen = row.chosen_candidate
        if chosen is None:
            break
        out.append((index, chosen.file))
    return out


def _read(folder: Path, file: str, sample_rate: int) -> np.ndarray:
    """A take as float64 mono samples at `sample_rate` (resampled when its own rate differs)."""
    data, rate = sf.read(str(folder / file), dtype="float64", always_2d=True)
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if rate != sample_rate:
        mono = resample_output(torch.from_numpy(mono), rate, sample_rate).double().numpy()
    return mono


def _old_layout(folder: Path, project: Project, sample_rate: int) -> list[Span] | None:
    """The spans of the combined.wav on disk, or None when the file is missing or does not match them."""
    layout = project.combined or {}
    path = folder / COMBINED_FILE
    if layout.get("sample_rate") != sample_rate or not path.is_file():
        return None
    try:
        spans = [Span(**span) for span in layout.get("spans", [])]
        info = sf.info(str(path))
    except (TypeError, sf.SoundFileError, RuntimeError, OSError) as error:
        log.warning("Rebuilding %s in full: %s", path, error)
        return None
    if info.samplerate != sample_rate or info.frames != sum(s.samples + s.pause for s in spans):
        return None
    return spans


def stitch(
    folder: Path, project: Project, metadata: GenerationMetadata, *, embed: bool = True
) -> StitchResult:
    """Bring combined.wav up to date with the project's chosen takes and pauses; updates
    `project.combined` (the caller saves the state).

    Args:
        folder: the project folder.
        project: its state.
        metadata: what to embed into combined.wav (the whole text, the settings).
        embed: the "Embed Output Metadata" setting.
    """
    finished = _finished_prefix(project)
    path = folder / COMBINED_FILE
    if not finished:
        path.unlink(missing_ok=True)
        project.combined = {}
        return StitchResult(None, 0, (0, 0), 0)
    sample_rate = int(sf.info(str(folder / finished[0][1])).samplerate)
    old = _old_layout(folder, project, sample_rate) or []
    old_by_row = {(s.row, s.file): s.samples for s in old}
    last_row = len(project.rows) - 1
    new: list[Span] = []
    fresh: dict[int, np.ndarray] = {}
    for position, (index, file) in enumerate(finished):
        row = project.rows[index]
        samples = old_by_row.get((row.id, file))
        if samples is None:
            fresh[position] = _read(folder, file, sample_rate)
            samples = len(fresh[position])
        pause = 0 if index == last_row else round(max(row.pause_s, 0.0) * sample_rate)
        new.append(Span(row.id, file, samples, pause))
    head = 0
    while head < min(len(old), len(new)) and old[head] == new[head]:
        head += 1
    if head == len(old) == len(new):
        project.combined = {"sample_rate": sample_rate, "spans": [asdict(s) for s in new]}
        return StitchResult(path, len(new), (0, 0), sample_rate)
    tail = 0
    while tail < min(len(old), len(new)) - head and old[-1 - tail] == new[-1 - tail]:
        tail += 1
    start = sum(s.samples + s.pause for s in new[:head])
    old_end = sum(s.samples + s.pause for s in old[: len(old) - tail])
    parts = []
    if head or tail:
        previous, _ = sf.read(str(path), dtype="float64", always_2d=True)
        previous = previous[:, 0]
        parts.append(previous[:start])
    for position in range(head, len(new) - tail):
        span = new[position]
        audio = fresh.get(position)
        if audio is None:
            audio = _read(folder, span.file, sample_rate)
        if len(audio) != span.samples:  # the file changed under the same name: take it as it is now
            audio = (
                audio[: span.samples]
                if len(audio) > span.samples
                else np.pad(audio, (0, span.samples - len(audio)))
            )
        parts.extend([audio, np.zeros(span.pause)])
    end = start + sum(s.samples + s.pause for s in new[head : len(new) - tail])
    if tail:
        parts.append(previous[old_end:])
    joined = torch.from_numpy(np.concatenate(parts)).reshape(1, -1)
    save_clip(path, joined, sample_rate, metadata, embed=embed)
    project.combined = {"sample_rate": sample_rate, "spans": [asdict(s) for s in new]}
    log.info("Stitched %s: rewrote samples %d-%d of %d", path, start, end, joined.shape[-1])
    return StitchResult(path, len(new), (start, end), sample_rate)


def span_bounds(project: Project) -> dict[str, tuple[int, int]]:
    """Row id -> (start, end) sample of its take inside combined.wav, from the saved layout."""
    bounds, offset = {}, 0
    for span in (project.combined or {}).get("spans", []):
        bounds[span["row"]] = (offset, offset + span["samples"])
        offset += span["samples"] + span["pause"]
    return bounds


def combined_metadata(project: Project) -> GenerationMetadata:
    """The embedded record of combined.wav: the project's Generate values and its whole text."""
    names = {f.name for f in dataclasses.fields(GenerateDefaults)}
    values = GenerateDefaults(**{k: v for k, v in project.settings.items() if k in names})
    return GenerationMetadata.from_generate_defaults(
        dataclasses.replace(values, voice=project.voice),
        text=" ".join(row.text for row in project.rows),
        delimiter="\\n",
        datetime=now_iso(),
        extra={META_PROJECT: project.name},
    )
