"""A long-form project's state: rows (one per segment) with their candidates, saved atomically as
`results/<voice>/projects/<name>/project.json`, and read back robustly (a hand-edited folder with missing
WAVs or a corrupt state file is repaired or rebuilt from the segments' embedded metadata, never a crash).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from src.config_file import coerce_fields, write_json_atomic
from src.errors import InvalidInput
from src.markup import MAX_SPEED, MIN_SPEED
from src.metadata import read_metadata

log = logging.getLogger(__name__)

PROJECT_VERSION = 1
STATE_FILE = "project.json"
SEGMENTS_DIR = "segments"
COMBINED_FILE = "combined.wav"
DEFAULT_PAUSE_S = 0.3
MAX_PAUSE_S = 30.0
# Row states. A row is "done" when it has a chosen candidate.
PENDING, QUEUED, RENDERING, DONE, FAILED = "pending", "queued", "rendering", "done", "failed"
ROW_STATES = (PENDING, QUEUED, RENDERING, DONE, FAILED)
_NAME_RE = re.compile(r"^[\w][\w .,'()+-]{0,79}$")
# Keys written into each segment WAV's metadata `extra`, so a lost project.json can be rebuilt.
META_PROJECT, META_ROW, META_INDEX, META_PAUSE, META_TASK = (
    "project",
    "project_row_id",
    "project_row_index",
    "project_pause_s",
    "project_task",
)


def new_row_id() -> str:
    return uuid.uuid4().hex[:8]


def now_iso() -> str:
    return datetime.now().isoformat(timespec="seconds")


def validate_project_name(name: str | None) -> str:
    """The name stripped, or InvalidInput when it cannot be a folder name."""
    cleaned = (name or "").strip()
    if not cleaned:
        raise InvalidInput("Please give the project a name.")
    if not _NAME_RE.match(cleaned) or cleaned in (".", "..") or cleaned.endswith("."):
        raise InvalidInput(
            f"'{cleaned}' cannot be a project name: use letters, digits, spaces and - _ . , ' ( ) + "
            "(at most 80 characters, not ending in a dot)."
        )
    return cleaned


@dataclass
class Candidate:
    """One rendered take of a row.

    Attributes:
        file: path relative to the project folder (`segments/<row>_<n>.wav`).
        seed: the seed it was made with.
        duration_s: its length in seconds.
        qa: the QA report (`src.qa.QaReport.to_dict()`), or None when QA was off.
        created: ISO time it was rendered.
        scores: further per-candidate scores by name (e.g. voice consistency), higher-level code's own.
        extra: unknown keys, kept on re-save.
    """

    file: str
    seed: int
    duration_s: float = 0.0
    qa: dict[str, Any] | None = None
    created: str = ""
    scores: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Row:
    """One segment of the text.

    Attributes:
        id: stable id (file names and edits refer to it, never to the position).
        text: what to say.
        voice: this row's voice, or None for the project's voice.
        seed: the seed of the next render (0 = a new random one each time).
        settings: per-row overrides of Generate values (field name -> value).
        candidates: the takes so far, oldest first.
        chosen: index into candidates of the take used in combined.wav, or None.
        status: one of ROW_STATES.
        error: why the last render failed ("" when it did not).
        pause_s: silence after this segment in combined.wav, in seconds.
        speed: time-stretch of its takes after the vocoder (0.5-2.0, from `{speed}` markup; 1.0 = none).
        notes: what its last render had to say (e.g. the [brackets] could not be cut, the voice match
            was not checked), shown beside its status since background renders have no pop-ups.
        scores: extra per-row scores, free-form.
        extra: unknown keys, kept on re-save.
    """

    id: str
    text: str
    voice: str | None = None
    seed: int = 0
    settings: dict[str, Any] = field(default_factory=dict)
    candidates: list[Candidate] = field(default_factory=list)
    chosen: int | None = None
    status: str = PENDING
    error: str = ""
    pause_s: float = DEFAULT_PAUSE_S
    speed: float = field(default=1.0, metadata={"minimum": MIN_SPEED, "maximum": MAX_SPEED})
    notes: list[str] = field(default_factory=list)
    scores: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def chosen_candidate(self) -> Candidate | None:
        if self.chosen is None or not 0 <= self.chosen < len(self.candidates):
            return None
        return self.candidates[self.chosen]

    @property
    def qa(self) -> dict[str, Any] | None:
        chosen = self.chosen_candidate
        return chosen.qa if chosen else None

    @property
    def duration_s(self) -> float | None:
        chosen = self.chosen_candidate
        return chosen.duration_s if chosen else None


@dataclass
class Project:
    """A whole project.

    Attributes:
        name / voice: its folder `results/<voice>/projects/<name>/` and the default voice of its rows.
        settings: Generate values (GenerateDefaults fields) shared by every row.
        rows: the segments, in order.
        qa: QA settings (`src.qa.QaSettings` fields).
        revision: bumped on every save (rendering included).
        edit_revision: bumped on user edits only; tabs compare it to notice another tab's edit.
        edits: the latest user edits, oldest first: {"tab": session id, "row": row id or None, "revision"}.
        combined: the layout of combined.wav: {"sample_rate", "spans": [{"row", "file", "samples",
            "pause"}]}, so a re-stitch rewrites only what changed.
        created / updated: ISO times.
    """

    name: str
    voice: str
    settings: dict[str, Any] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)
    qa: dict[str, Any] = field(default_factory=dict)
    revision: int = 0
    edit_revision: int = 0
    edits: list[dict[str, Any]] = field(default_factory=list)
    combined: dict[str, Any] = field(default_factory=dict)
    created: str = ""
    updated: str = ""
    schema_version: int = PROJECT_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def last_edit(self) -> dict[str, Any]:
        return self.edits[-1] if self.edits else {}

    def row(self, row_id: str) -> Row:
        """The row with this id. Raises InvalidInput when it no longer exists."""
        for row in self.rows:
            if row.id == row_id:
                return row
        raise InvalidInput("That segment no longer exists (it was deleted, maybe in another tab); reload.")

    def index_of(self, row_id: str) -> int:
        return self.rows.index(self.row(row_id))

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        extra = data.pop("extra")
        for row_data, row in zip(data["rows"], self.rows, strict=True):
            # derived, written for people reading the file; ignored on load
            row_data["qa"] = row.qa
            row_data["duration_s"] = row.duration_s
        return {**data, **{k: v for k, v in extra.items() if k not in data}}


def _from_fields(cls: type, data: Any, where: str, notes: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(field values, unknown keys) of one JSON object; nested lists are parsed by the caller."""
    if not isinstance(data, dict):
        raise ValueError(f"{where} is not an object")
    plain = {k: v for k, v in data.items() if k not in ("rows", "candidates", "extra")}
    values, problems, unknown = coerce_fields(cls, plain)
    notes.extend(f"{where}: {problem}" for problem in problems)
    if isinstance(data.get("extra"), dict):
        unknown = {**data["extra"], **unknown}
    return values, unknown


def _rows_from(raw_rows: Any, notes: list[str]) -> list[Row]:
    rows: list[Row] = []
    seen: set[str] = set()
    for position, raw_row in enumerate(raw_rows if isinstance(raw_rows, list) else []):
        where = f"segment {position + 1}"
        try:
            row_values, row_unknown = _from_fields(Row, raw_row, where, notes)
        except ValueError as error:
            notes.append(f"{error}; it was dropped")
            continue
        for derived in ("qa", "duration_s"):
            row_unknown.pop(derived, None)
        if "text" not in row_values:
            notes.append(f"{where} had no text and was dropped")
            continue
        if "id" not in row_values or row_values["id"] in seen:
            row_values["id"] = new_row_id()
        seen.add(row_values["id"])
        candidates = []
        for raw in raw_row.get("candidates") or []:
            try:
                cand_values, cand_unknown = _from_fields(Candidate, raw, f"{where} take", notes)
                candidates.append(Candidate(**cand_values, extra=cand_unknown))
            except (ValueError, TypeError) as error:
                notes.append(f"{where}: a take was unreadable ({error}) and was dropped")
        rows.append(Row(**row_values, candidates=candidates, extra=row_unknown))
    return rows


def project_from_dict(data: Any, notes: list[str]) -> Project:
    """Parse project.json's object; wrong-typed values fall back to defaults (noted), unknown keys are
    kept. Raises ValueError when the object is not a project at all."""
    values, unknown = _from_fields(Project, data, "project", notes)
    if "name" not in values or "voice" not in values:
        raise ValueError("the state has no name or voice")
    return Project(**values, rows=_rows_from(data.get("rows"), notes), extra=unknown)


def save_project(folder: Path, project: Project) -> None:
    """Write project.json atomically (readers see the old or the new file, never half of one)."""
    project.updated = now_iso()
    write_json_atomic(folder / STATE_FILE, project.to_dict())


def load_project(folder: Path, *, name: str, voice: str) -> tuple[Project, list[str]]:
    """Read a project folder, repairing what was edited by hand.

    - Takes whose WAV is missing are dropped; a row that lost its chosen take goes back to pending.
    - A corrupt or missing project.json is kept as `project.json.corrupt` and the project is rebuilt from
      the segment WAVs' embedded metadata (their text, seed, row id and position).

    Returns:
        The project and notes for the user about what was repaired (empty when nothing was).

    Raises:
        InvalidInput: neither a readable state nor any segment file exists (nothing to open).
    """
    notes: list[str] = []
    path = folder / STATE_FILE
    project = None
    if path.is_file():
        try:
            project = project_from_dict(json.loads(path.read_text(encoding="utf-8")), notes)
        except (OSError, UnicodeDecodeError, ValueError, TypeError) as error:
            backup = path.with_name(STATE_FILE + ".corrupt")
            path.replace(backup)
            notes.append(
                f"The project file was unreadable ({error}); it was kept as {backup.name} and the "
                "project was rebuilt from its segment files."
            )
    else:
        notes.append("The project file was missing; the project was rebuilt from its segment files.")
    if project is None:
        project = rebuild_from_segments(folder, name=name, voice=voice)
        if not project.rows:
            raise InvalidInput(
                f"The project folder {folder} has neither a readable {STATE_FILE} nor segment "
                "files, so there is nothing to open. Delete the folder or create it again."
            )
    project.name, project.voice = name, voice
    notes.extend(drop_missing_takes(folder, project))
    for row in project.rows:
        if row.status not in ROW_STATES:
            row.status = PENDING
    return project, notes


def drop_missing_takes(folder: Path, project: Project) -> list[str]:
    """Forget takes whose WAV is gone; returns a note per affected row."""
    notes = []
    for number, row in enumerate(project.rows, start=1):
        chosen = row.chosen_candidate
        kept = [c for c in row.candidates if (folder / c.file).is_file()]
        if len(kept) == len(row.candidates):
            if row.chosen is not None and chosen is None:
                row.chosen = None
            continue
        notes.append(
            f"Segment {number}: {len(row.candidates) - len(kept)} take(s) were missing on disk "
            "and were removed from the list."
        )
        row.candidates = kept
        row.chosen = kept.index(chosen) if chosen in kept else None
    for row in project.rows:
        if row.chosen is None and row.status == DONE:
            row.status = PENDING
        elif row.chosen is not None and row.status != DONE and row.status != RENDERING:
            row.status = DONE
    return notes


def rebuild_from_segments(folder: Path, *, name: str, voice: str) -> Project:
    """A project made from the metadata embedded in `segments/*.wav` (text, seed, row id, position)."""
    rows: dict[str, tuple[float, Row]] = {}
    settings: dict[str, Any] = {}
    for wav in sorted((folder / SEGMENTS_DIR).glob("*.wav")) if (folder / SEGMENTS_DIR).is_dir() else []:
        try:
            meta = read_metadata(wav)
        except Exception:  # boundary: a hand-damaged file must not stop the rebuild
            log.exception("Skipping %s while rebuilding the project", wav)
            continue
        if meta is None or not meta.text:
            continue
        row_id = str(meta.extra.get(META_ROW) or wav.stem.split("_")[0])
        position = float(meta.extra.get(META_INDEX, len(rows)))
        if row_id not in rows:
            pause = meta.extra.get(META_PAUSE, DEFAULT_PAUSE_S)
            row = Row(
                id=row_id,
                text=meta.text,
                pause_s=float(pause) if isinstance(pause, int | float) else DEFAULT_PAUSE_S,
            )
            rows[row_id] = (position, row)
            settings = settings or dataclasses.asdict(meta.to_generate_defaults())
        row = rows[row_id][1]
        row.candidates.append(
            Candidate(
                wav.relative_to(folder).as_posix(),
                int(meta.seed or 0),
                _duration(wav),
                created=meta.datetime or "",
            )
        )
        row.chosen, row.status = 0, DONE
    ordered = [row for _, row in sorted(rows.values(), key=lambda item: item[0])]
    settings.pop("text", None)
    return Project(name=name, voice=voice, settings=dict(settings), rows=ordered, created=now_iso())


def _duration(wav: Path) -> float:
    import soundfile as sf

    try:
        info = sf.info(str(wav))
    except (sf.SoundFileError, RuntimeError, OSError):
        return 0.0
    return info.frames / info.samplerate


def edit_conflicts(project: Project, tab: str, base: int, row_id: str | None) -> list[str]:
    """What to tell tab `tab`, whose view has edit revision `base`, about other tabs' edits since."""
    others = [e for e in project.edits if e.get("revision", 0) > base and e.get("tab") != tab]
    if not others and base >= project.edit_revision:
        return []
    if row_id is not None and any(e.get("row") == row_id for e in others):
        return ["This segment was changed in another tab since you loaded it; your version replaced theirs."]
    return [
        "This project was changed in another tab since you loaded it; your change was applied to the "
        "latest version."
    ]


def check_pause(pause_s: Any) -> float:
    try:
        pause = float(pause_s)
    except (TypeError, ValueError):
        raise InvalidInput(f"Pause must be a number of seconds from 0 to {MAX_PAUSE_S:g}.") from None
    if not 0.0 <= pause <= MAX_PAUSE_S:
        raise InvalidInput(f"Pause must be from 0 to {MAX_PAUSE_S:g} seconds; got {pause_s}.")
    return round(pause, 3)
