"""History: the table of a voice's outputs (newest first, one column per recorded setting) and the
settings to copy back into the Generate tab from a result's metadata."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from src.errors import MetadataError
from src.metadata import GenerationMetadata, read_metadata
from src.paths import AppPaths
from src.results import HistoryEntry, list_history, list_result_voices, resolve_result
from src.settings import GenerateDefaults
from tortoise import PRESETS, InvalidInputError, normalize_preset_name

UNKNOWN = "?"  # shown for anything a file does not record, as mrq's History did
TEXT_PREVIEW_CHARS = 120


def _value(key: str) -> Callable[[HistoryEntry], Any]:
    return lambda entry: None if entry.metadata is None else getattr(entry.metadata, key)


def _cond_free(entry: HistoryEntry) -> str | None:
    flag = None if entry.metadata is None else entry.metadata.cond_free
    return None if flag is None else ("on" if flag else "off")


def _time_taken(entry: HistoryEntry) -> str | None:
    seconds = None if entry.metadata is None else entry.metadata.time_taken_s
    return None if seconds is None else f"{seconds:.3f}"


def _datetime(entry: HistoryEntry) -> str:
    recorded = None if entry.metadata is None else entry.metadata.datetime
    return recorded or entry.created.isoformat(sep=" ", timespec="seconds")


def _text(entry: HistoryEntry) -> str | None:
    text = None if entry.metadata is None else entry.metadata.text
    if not text:
        return None
    text = " ".join(text.split())
    return text if len(text) <= TEXT_PREVIEW_CHARS else text[: TEXT_PREVIEW_CHARS - 1] + "…"


def _duration(entry: HistoryEntry) -> str | None:
    return None if entry.duration_s is None else f"{entry.duration_s:.2f}"


# (header, how to read it from an entry), in table order.
COLUMNS: tuple[tuple[str, Callable[[HistoryEntry], Any]], ...] = (
    ("Name", lambda entry: entry.name),
    ("Text", _text),
    ("Samples", _value("num_autoregressive_samples")),
    ("Iterations", _value("diffusion_iterations")),
    ("Temp.", _value("temperature")),
    ("Sampler", _value("diffusion_sampler")),
    ("CVVP", _value("cvvp_weight")),
    ("Top P", _value("top_p")),
    ("Diff. Temp.", _value("diffusion_temperature")),
    ("Len Pen", _value("length_penalty")),
    ("Rep Pen", _value("repetition_penalty")),
    ("Cond-Free", _cond_free),
    ("Cond-Free K", _value("cond_free_k")),
    ("Seed", _value("seed")),
    ("Time (s)", _time_taken),
    ("Datetime", _datetime),
    ("Model", _value("model")),
    ("Model Hash", _value("model_hash")),
    ("Length (s)", _duration),
)
HEADERS = tuple(header for header, _ in COLUMNS)


@dataclass(frozen=True)
class HistoryTable:
    """What the History tab shows for one voice.

    Attributes:
        voice: the voice (folder under results/).
        rows: one row of strings per clip, newest first, `?` for what is not recorded.
        names: the clips' names relative to `results/<voice>/`, in row order (the file picker).
    """

    voice: str
    rows: list[list[str]]
    names: list[str]


def history_voices(paths: AppPaths) -> list[str]:
    """Voices with at least one output under results/, sorted."""
    return list_result_voices(paths)


def history_table(paths: AppPaths, voice: str | None) -> HistoryTable:
    """Every output of `voice`, newest first; clips without metadata are listed with what the file
    and its run folder tell (never an error). No voice gives an empty table.

    Raises:
        InvalidVoiceName: the voice is not a plain folder name.
    """
    if not voice:
        return HistoryTable("", [], [])
    entries = list_history(paths, voice)
    rows = [[_cell(read(entry)) for _, read in COLUMNS] for entry in entries]
    return HistoryTable(voice, rows, [entry.name for entry in entries])


def _cell(value: Any) -> str:
    return UNKNOWN if value is None or value == "" else str(value)


def result_metadata(paths: AppPaths, voice: str, name: str) -> GenerationMetadata | None:
    """The metadata of `results/<voice>/<name>` (embedded, else its sidecar), or None.

    Raises:
        ResultNotFound: no such file under `results/<voice>/`.
    """
    return read_metadata(resolve_result(paths, voice, name))


def settings_to_copy(
    metadata: GenerationMetadata | None, base: GenerateDefaults | None = None
) -> GenerateDefaults:
    """The Generate tab's values recorded in `metadata` (Copy Settings); values not recorded (or
    out of the tab's ranges) keep those of `base` (default: the tab's defaults).

    A recorded preset is kept only when Samples and Iterations still match it, because choosing a
    preset in the tab overwrites those two sliders.

    Raises:
        MetadataError: there is no metadata to copy.
    """
    if metadata is None:
        raise MetadataError(
            "This file holds no generation settings (no embedded metadata and no .json beside it), "
            "so there is nothing to copy."
        )
    values = metadata.to_generate_defaults(base)
    if values.preset is not None and _preset_values(values.preset) != (
        values.num_autoregressive_samples,
        values.diffusion_iterations,
    ):
        values = dataclasses.replace(values, preset=None)
    return values


def _preset_values(preset: str) -> tuple[int, int] | None:
    try:
        found = PRESETS[normalize_preset_name(preset)]
    except InvalidInputError:
        return None
    return found["num_autoregressive_samples"], found["diffusion_iterations"]
