"""ProjectService: create, open, edit, render and stitch long-form projects under
`results/<voice>/projects/<name>/`. Every change is a load-change-save under a per-project lock, so the
queue's workers and several browser tabs can work on one project; tabs pass the edit revision they saw and
are told when another tab changed the project meanwhile (the later save wins, row by row).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import re
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from src.audio_ops import postprocess_output
from src.consistency import ConsistencyGuard
from src.errors import AppError, InvalidInput
from src.generate import DEFAULT_MAX_MEL_TOKENS, Generator
from src.lexicon import Lexicon, effective_lexicon, project_lexicon_path
from src.markup import stretch
from src.paths import AppPaths, validate_voice_name
from src.preflight import check_disk_space, estimate_output_bytes
from src.projects import state as st
from src.projects.plan import plan_rows, read_segment_edit
from src.projects.render import Renderer, Takes, WorkerLost, build_request, render_takes, take_metadata
from src.projects.segments import halve
from src.projects.stitch import StitchResult, combined_metadata, stitch
from src.projects.voice_match import CONSISTENCY, flagged_rows, score_takes
from src.prompting import MAX_SEED, resolve_seed
from src.qa import QaReport, QaSettings, SegmentChecker
from src.results import PROJECTS_FOLDER, save_clip
from src.settings import AppSettings, GenerateDefaults
from tortoise import OUTPUT_SAMPLE_RATE, GenerationCancelled, TextTooLongError, TortoiseError

log = logging.getLogger(__name__)

PROJECTS_DIR = PROJECTS_FOLDER  # results/<voice>/projects/<name>/
MAX_SPLIT_DEPTH = 4  # a segment refused as too long is halved at most this many times
EDIT_LOG = 50  # user edits remembered per project, to tell a tab what other tabs changed
_BRACKETED_RE = re.compile(r"\[[^\[\]]*\]")


@dataclass(frozen=True)
class Edit:
    """Who edits: the browser tab's session id and the edit revision it last saw (None = unknown)."""

    tab: str = ""
    base: int | None = None


@dataclass(frozen=True)
class Change:
    """A project after a change, and what to tell the user about it."""

    project: st.Project
    notes: tuple[str, ...] = ()


def project_ref(voice: str, name: str) -> str:
    """`<voice>/<name>`: how the queue and the UI name a project."""
    return f"{voice}/{name}"


def parse_ref(ref: str | None) -> tuple[str, str]:
    voice, slash, name = (ref or "").partition("/")
    if not slash or not voice or not name:
        raise InvalidInput("Pick a project first (or create one).")
    return voice, name


class ProjectService:
    """Projects on disk and the operations of the segment editor.

    Args:
        paths: the installation's folders.
        generator: the generation service (engine, voices, option mapping).
        settings: returns the current AppSettings.
        checker: builds the QA checker on first use (None: QA is unavailable and says so).
        guard: builds the voice-consistency guard on first use (None: the check is unavailable).
    """

    def __init__(
        self,
        paths: AppPaths,
        generator: Generator,
        settings: Callable[[], AppSettings],
        checker: Callable[[], SegmentChecker] | None = None,
        guard: Callable[[], ConsistencyGuard] | None = None,
    ) -> None:
        self.paths = paths
        self.generator = generator
        self.settings = settings
        self._checker_factory = checker
        self._checker: SegmentChecker | None = None
        self._guard_factory = guard
        self._guard: ConsistencyGuard | None = None
        self._locks: dict[Path, threading.RLock] = {}
        self._locks_guard = threading.Lock()

    # ------------------------------------------------------------------ folders and locking

    def folder(self, voice: str, name: str) -> Path:
        voice = validate_voice_name(voice, allow_special=True)
        return self.paths.results_dir / voice / PROJECTS_DIR / st.validate_project_name(name)

    def list_projects(self) -> list[str]:
        """Every project as `<voice>/<name>`, most recently changed first."""
        found = []
        if self.paths.results_dir.is_dir():
            for folder in self.paths.results_dir.glob(f"*/{PROJECTS_DIR}/*"):
                if folder.is_dir() and not folder.name.startswith("."):
                    state = folder / st.STATE_FILE
                    stamp = (state if state.exists() else folder).stat().st_mtime
                    found.append((stamp, project_ref(folder.parent.parent.name, folder.name)))
        return [ref for _, ref in sorted(found, reverse=True)]

    @contextlib.contextmanager
    def _locked(self, voice: str, name: str) -> Iterator[Path]:
        folder = self.folder(voice, name)
        with self._locks_guard:
            lock = self._locks.setdefault(folder, threading.RLock())
        with lock:
            yield folder

    def open(self, voice: str, name: str) -> Change:
        """Load a project, repairing a hand-edited folder (notes say what was repaired).

        Raises:
            InvalidInput: no such project, or nothing left to open.
        """
        with self._locked(voice, name) as folder:
            if not folder.is_dir():
                raise InvalidInput(f"There is no project '{name}' for voice '{voice}'; press Refresh.")
            project, notes = st.load_project(folder, name=name, voice=voice)
            if notes:
                for note in notes:
                    log.warning("%s: %s", folder, note)
                project.combined = {}  # the layout may not match what is on disk any more
                self._stitch(folder, project)
                project.revision += 1
                st.save_project(folder, project)
            return Change(project, tuple(notes))

    def _update(
        self,
        voice: str,
        name: str,
        change: Callable[[st.Project], Any],
        *,
        edit: Edit | None = None,
        row_id: str | None = None,
        restitch: bool = False,
    ) -> Change:
        """Load, apply `change`, save. With `edit`, notes tell the tab about another tab's edits."""
        with self._locked(voice, name) as folder:
            project, notes = st.load_project(folder, name=name, voice=voice)
            if edit is not None and edit.base is not None:
                notes.extend(st.edit_conflicts(project, edit.tab, edit.base, row_id))
            change(project)
            if edit is not None:
                project.edit_revision += 1
                project.edits = [
                    *project.edits[-(EDIT_LOG - 1) :],
                    {"tab": edit.tab, "row": row_id, "revision": project.edit_revision},
                ]
            if restitch or notes:
                self._stitch(folder, project)
            project.revision += 1
            st.save_project(folder, project)
            return Change(project, tuple(notes))

    # ------------------------------------------------------------------ creating and editing

    def create(
        self,
        name: str,
        voice: str,
        text: str,
        values: GenerateDefaults,
        *,
        qa: QaSettings | None = None,
        pause_s: float = st.DEFAULT_PAUSE_S,
        script: bool = False,
    ) -> st.Project:
        """Make a project of `text`, one pending row per segment (see `src.projects.plan.plan_rows`).

        Args:
            script: read `Voice: text` lines; each row gets its speaker's voice (`voice` is the default).

        Raises:
            InvalidInput: empty text, bad markup, bad name, a project of that name exists, no voice.
            ScriptVoicesError: the script names voices that cannot be used (nothing is created).
            LexiconError: the global lexicon has bad entries.
        """
        if not voice or not str(voice).strip():
            raise InvalidInput("Please pick a voice for the project.")
        voice, name = str(voice).strip(), st.validate_project_name(name)
        pause = st.check_pause(pause_s)
        planned = plan_rows(
            text, voice, script=script, library=self.generator.voices, tokenizer=self._tokenizer(),
            lexicon=effective_lexicon(self.paths.config_dir), default_pause_s=pause,
        )  # fmt: skip
        raw = {k: v for k, v in dataclasses.asdict(values).items() if k not in ("text", "voice", "seed")}
        checked = build_request(
            raw, text=planned[0].text, voice=voice, seed=1
        )  # values in range, or a message now
        settings = {
            k: v for k, v in dataclasses.asdict(checked.defaults()).items() if k not in ("text", "voice")
        }
        fixed_seed = resolve_seed(values.seed) if values.seed else 0
        settings["seed"] = fixed_seed
        rows = [
            st.Row(st.new_row_id(), p.text, voice=p.voice, seed=fixed_seed, pause_s=p.pause_s, speed=p.speed)
            for p in planned
        ]
        with self._locked(voice, name) as folder:
            if folder.exists():
                raise InvalidInput(f"A project named '{name}' already exists for {voice}; pick another name.")
            (folder / st.SEGMENTS_DIR).mkdir(parents=True)
            project = st.Project(
                name, voice, settings, rows, qa=dataclasses.asdict(qa or QaSettings()), created=st.now_iso()
            )
            st.save_project(folder, project)
        log.info("Created project %s with %d segments", folder, len(rows))
        return project

    def delete_project(self, voice: str, name: str) -> None:
        with self._locked(voice, name) as folder:
            shutil.rmtree(folder, ignore_errors=True)

    def edit_text(self, voice: str, name: str, row_id: str, text: str, edit: Edit = Edit()) -> Change:
        """Change a row's text. Its takes no longer match, so they are removed and the row is pending.
        A text with several sentences stays one row; an empty text is refused. Markup around the whole
        text sets the row's speed (`{speed 0.9}...{/speed}`) and a `[pause]` at its end its pause."""
        if not (text or "").strip():
            raise InvalidInput("A segment cannot be empty; use Delete to remove it.")
        typed = read_segment_edit(text)

        def change(project: st.Project) -> None:
            row = project.row(row_id)
            speed = row.speed if typed.speed is None else typed.speed
            pause = row.pause_s if typed.pause_s is None else st.check_pause(typed.pause_s)
            if (row.text, row.speed) != (typed.text, speed):
                self._forget_takes(voice, name, row)
                row.text, row.speed, row.status, row.error = typed.text, speed, st.PENDING, ""
            row.pause_s = pause

        return self._update(voice, name, change, edit=edit, row_id=row_id, restitch=True)

    def insert_row(
        self, voice: str, name: str, after_row_id: str | None, text: str, edit: Edit = Edit()
    ) -> Change:
        """Insert a pending row after `after_row_id` (None: at the start)."""
        if not (text or "").strip():
            raise InvalidInput("Type the new segment's text first.")
        typed = read_segment_edit(text)
        speed = 1.0 if typed.speed is None else typed.speed
        pause = st.DEFAULT_PAUSE_S if typed.pause_s is None else st.check_pause(typed.pause_s)

        def change(project: st.Project) -> None:
            index = 0 if after_row_id is None else project.index_of(after_row_id) + 1
            seed = int(project.settings.get("seed") or 0)
            row = st.Row(st.new_row_id(), typed.text, seed=seed, pause_s=pause, speed=speed)
            project.rows.insert(index, row)

        return self._update(voice, name, change, edit=edit, restitch=True)

    def delete_row(self, voice: str, name: str, row_id: str, edit: Edit = Edit()) -> Change:
        def change(project: st.Project) -> None:
            if len(project.rows) == 1:
                raise InvalidInput("A project needs at least one segment; delete the project instead.")
            row = project.row(row_id)
            self._forget_takes(voice, name, row)
            project.rows.remove(row)

        return self._update(voice, name, change, edit=edit, row_id=row_id, restitch=True)

    def set_pause(self, voice: str, name: str, row_id: str, pause_s: float, edit: Edit = Edit()) -> Change:
        pause = st.check_pause(pause_s)
        return self._update(
            voice,
            name,
            lambda p: setattr(p.row(row_id), "pause_s", pause),
            edit=edit,
            row_id=row_id,
            restitch=True,
        )

    def pick(self, voice: str, name: str, row_id: str, index: int, edit: Edit = Edit()) -> Change:
        """Use take `index` (0-based) of a row in combined.wav; re-stitches only that span."""

        def change(project: st.Project) -> None:
            row = project.row(row_id)
            if not 0 <= int(index) < len(row.candidates):
                raise InvalidInput(f"That segment has {len(row.candidates)} take(s); pick one of them.")
            row.chosen, row.status = int(index), st.DONE

        return self._update(voice, name, change, edit=edit, row_id=row_id, restitch=True)

    def set_qa(self, voice: str, name: str, qa: QaSettings, edit: Edit = Edit()) -> Change:
        return self._update(voice, name, lambda p: setattr(p, "qa", dataclasses.asdict(qa)), edit=edit)

    def set_status(self, voice: str, name: str, row_ids: list[str], status: str, error: str = "") -> Change:
        """Mark rows queued/failed/... (used by the job queue); missing rows are ignored."""

        def change(project: st.Project) -> None:
            for row in project.rows:
                if row.id in row_ids and not (status == st.QUEUED and row.status == st.RENDERING):
                    row.status, row.error = status, error
                    if status in (st.PENDING, st.QUEUED) and row.chosen is not None:
                        row.status = st.DONE if status == st.PENDING else status

        return self._update(voice, name, change)

    def restitch(self, voice: str, name: str) -> StitchResult:
        """Bring combined.wav up to date (only the changed span is rewritten)."""
        with self._locked(voice, name) as folder:
            project, _ = st.load_project(folder, name=name, voice=voice)
            result = self._stitch(folder, project)
            project.revision += 1
            st.save_project(folder, project)
            return result

    def flagged(self, voice: str, name: str) -> list[str]:
        """Ids of the rows whose chosen take QA flagged or whose voice drifts from the others'."""
        return flagged_rows(self.open(voice, name).project)

    def lexicon_file(self, voice: str, name: str) -> Path:
        """The project's own lexicon (`<project>/lexicon.json`), laid over the global one when rendering."""
        folder = self.folder(voice, name)
        if not folder.is_dir():
            raise InvalidInput(f"There is no project '{name}' for voice '{voice}'; press Refresh.")
        return project_lexicon_path(folder)

    # ------------------------------------------------------------------ rendering

    def render_row(
        self,
        voice: str,
        name: str,
        row_id: str,
        *,
        new_seed: bool = False,
        overrides: dict[str, Any] | None = None,
        renderer: Renderer | None = None,
        task: str | None = None,
    ) -> Change:
        """Render a row's takes (QA and auto-retry when on), add them to its takes and choose the best.

        A row the model refuses as too long is split into several rows, each rendered. A row deleted or
        edited while it rendered keeps the edit; the stale takes are thrown away.

        Args:
            new_seed: use a fresh random seed instead of the row's seed.
            overrides: Generate values for this row only (kept in the row's settings).
            renderer: how to render (default: the app's engine).
            task: the queue task id, recorded in the takes so a resumed job never renders a row twice.

        Raises:
            InvalidInput: the row is gone; a setting is out of range.
            GenerationCancelled: the job was cancelled.
        """
        pending = [(row_id, 0)]
        last = None
        while pending:
            current, depth = pending.pop(0)
            try:
                last = self._render_one(voice, name, current, new_seed, overrides, renderer, task)
            except TextTooLongError:
                if depth >= MAX_SPLIT_DEPTH:
                    raise
                pieces = self._split_row(voice, name, current)
                pending[:0] = [(piece, depth + 1) for piece in pieces]
        assert last is not None
        return last

    def _render_one(self, voice, name, row_id, new_seed, overrides, renderer, task) -> Change:
        with self._locked(voice, name) as folder:
            project, _ = st.load_project(folder, name=name, voice=voice)
            row = project.row(row_id)
            if task and any(c.extra.get("task") == task for c in row.candidates):
                return Change(project, ("Already rendered by this job.",))
            if overrides:
                row.settings.update(overrides)
            seed = resolve_seed(0) if new_seed or not row.seed else int(row.seed)
            text, row_voice, speed = row.text, row.voice or project.voice, row.speed
            settings = {**project.settings, **row.settings}
            qa = QaSettings.from_dict(project.qa)
            try:
                spoken = self._lexicon(folder).apply(text)  # a bad lexicon fails here, before any work
            except InvalidInput as error:
                row.status, row.error = st.FAILED, error.message
                st.save_project(folder, project)
                raise
            row.status, row.error = st.RENDERING, ""
            project.revision += 1
            st.save_project(folder, project)
        render = renderer or (lambda request: render_takes(self.generator, request))
        try:
            self._check_disk(settings, qa, speed)
            takes = self._takes_with_retries(render, settings, spoken, row_voice, seed, qa, speed)
        except BaseException as error:
            quiet = isinstance(error, TextTooLongError | GenerationCancelled | WorkerLost | KeyboardInterrupt)
            reason = "" if quiet else str(error) or type(error).__name__
            self._after_failure(voice, name, row_id, reason)
            raise
        scores, notes = self._voice_scores(row_voice, takes, qa)
        return self._add_takes(voice, name, row_id, text, takes, task, scores, notes)

    def _check_disk(self, settings: dict[str, Any], qa: QaSettings, speed: float) -> None:
        """Refuse a render whose takes may not fit on the disk (MissingRequirement), before any work."""
        takes = int(settings.get("candidates") or 1) * (1 + (qa.max_retries if qa.enabled else 0))
        rate = self.settings().output_sample_rate or OUTPUT_SAMPLE_RATE
        codes = int(self.generator.engine.default_options.get("max_mel_tokens", DEFAULT_MAX_MEL_TOKENS))
        needed = estimate_output_bytes(1, takes, rate, codes) / min(speed, 1.0)
        check_disk_space(self.paths.results_dir, int(needed), self.generator.disk_usage)

    def _lexicon(self, folder: Path) -> Lexicon:
        """The global lexicon with the project's own entries over it (raises LexiconError on bad ones)."""
        return effective_lexicon(self.paths.config_dir, folder)

    def _takes_with_retries(self, render: Renderer, settings, text, voice, seed, qa: QaSettings, speed=1.0):
        """Render (stretched to the row's speed), check with QA, and while the best take is flagged render
        again with the next seeds. `text` is what the model reads (respelled)."""
        found: list[tuple[Takes, int, np.ndarray, QaReport | None]] = []
        # with redaction on, the [bracketed] words are cut from the takes, so QA must not expect them
        heard = _BRACKETED_RE.sub(" ", text).strip() if settings.get("enable_redaction", True) else text
        for attempt in range(1 + (qa.max_retries if qa.enabled else 0)):
            attempt_seed = seed if attempt == 0 else (seed + attempt * 7919) % MAX_SEED + 1
            takes = render(build_request(settings, text=text, voice=voice, seed=attempt_seed))
            for index, wave in enumerate(takes.waves):
                if speed != 1.0:
                    wave = stretch(torch.from_numpy(np.asarray(wave, dtype=np.float32)), speed).numpy()
                report = self._check(heard, wave, takes.sample_rate, qa) if qa.enabled else None
                found.append((takes, index, wave, report))
            if (
                not qa.enabled
                or min(_score(f[3]) for f in found) == 0
                or not any(f[3] is not None and f[3].flagged for f in found[-len(takes.waves) :])
            ):
                break
        return found

    def _check(self, text: str, wave: np.ndarray, sample_rate: int, qa: QaSettings) -> QaReport:
        if self._checker is None:
            if self._checker_factory is None:
                raise InvalidInput("Whisper QA is not available in this app; turn QA off for the project.")
            self._checker = self._checker_factory()
        return self._checker.check(text, wave, sample_rate, qa)

    def _voice_scores(self, voice: str, found, qa: QaSettings) -> tuple[list[float] | None, list[str]]:
        """Each take's CVVP likeness to `voice` when the check is on; a failure is a note, never a loss."""
        if not qa.consistency:
            return None, []
        try:
            if self._guard is None:
                if self._guard_factory is None:
                    raise InvalidInput("the voice-consistency check is not available in this app")
                self._guard = self._guard_factory()
            waves = [wave for _, _, wave, _ in found]
            return score_takes(self._guard, self.generator.voices, voice, waves, found[0][0].sample_rate), []
        except (AppError, TortoiseError, OSError) as error:
            message = getattr(error, "message", None) or str(error)
            log.warning("Voice consistency not checked: %s", message)
            return None, [f"The voice consistency was not checked: {message}"]

    def _add_takes(self, voice, name, row_id, text, found, task, scores=None, notes=()) -> Change:
        settings = self.settings()
        with self._locked(voice, name) as folder:
            project, _ = st.load_project(folder, name=name, voice=voice)
            try:
                index = project.index_of(row_id)
            except InvalidInput:
                return Change(
                    project, ("The segment was deleted while it rendered; its takes were dropped.",)
                )
            row = project.rows[index]
            if row.text != text:
                row.status = st.PENDING
                project.revision += 1
                st.save_project(folder, project)
                return Change(project, ("The segment was edited while it rendered; render it again.",))
            number = _next_take_number(row)
            added = []
            for offset, (takes, _, wave, report) in enumerate(found):
                file = f"{st.SEGMENTS_DIR}/{row.id}_{number + offset}.wav"
                out, rate = postprocess_output(
                    torch.from_numpy(np.array(wave, dtype=np.float32)).reshape(1, -1),
                    takes.sample_rate,
                    settings.output_sample_rate,
                    settings.output_volume,
                )
                meta = take_metadata(project, row, index, takes, text, task)
                save_clip(folder / file, out, rate, meta, embed=settings.embed_output_metadata)
                extra = {"worker": takes.worker, **({"task": task} if task else {})}
                added.append(
                    st.Candidate(
                        file,
                        takes.seed,
                        round(out.shape[-1] / rate, 3),
                        report.to_dict() if report else None,
                        st.now_iso(),
                        {CONSISTENCY: round(scores[offset], 5)} if scores else {},
                        extra=extra,
                    )
                )
            # the best QA score; among equals the take closest to the voice
            best = min(
                range(len(added)), key=lambda i: (_score(found[i][3]), -(scores[i] if scores else 0.0), i)
            )
            row.candidates.extend(added)
            row.chosen = len(row.candidates) - len(added) + best
            row.status, row.error = st.DONE, ""
            row.notes = list(dict.fromkeys([*(n for t, *_ in found for n in t.notes), *notes]))
            project.revision += 1
            st.save_project(folder, project)  # the takes are recorded before the slower stitch: a crash
            self._stitch(folder, project)  # during it leaves them known, so a resumed job skips the row
            st.save_project(folder, project)
            return Change(project, tuple(row.notes))

    def _after_failure(self, voice: str, name: str, row_id: str, reason: str) -> None:
        with contextlib.suppress(InvalidInput), self._locked(voice, name) as folder:
            project, _ = st.load_project(folder, name=name, voice=voice)
            row = project.row(row_id)
            row.status = st.DONE if row.chosen is not None else (st.FAILED if reason else st.PENDING)
            row.error = reason
            project.revision += 1
            st.save_project(folder, project)

    def _split_row(self, voice: str, name: str, row_id: str) -> list[str]:
        """Replace a row the model refused as too long by its two halves; returns their ids."""
        ids: list[str] = []

        def change(project: st.Project) -> None:
            index = project.index_of(row_id)
            row = project.rows.pop(index)
            for offset, piece in enumerate(halve(row.text)):
                new = dataclasses.replace(
                    row,
                    id=st.new_row_id(),
                    text=piece,
                    candidates=[],
                    chosen=None,
                    status=st.PENDING,
                    settings=dict(row.settings),
                    pause_s=row.pause_s if offset else 0.0,
                )
                project.rows.insert(index + offset, new)
                ids.append(new.id)
            if len(ids) == 2:  # the pause after the original segment stays after its last piece
                project.rows[index].pause_s, project.rows[index + 1].pause_s = 0.0, row.pause_s

        self._update(voice, name, change)
        log.info("Segment %s was too long for one pass and was split in %d", row_id, len(ids))
        return ids

    # ------------------------------------------------------------------ helpers

    def _stitch(self, folder: Path, project: st.Project) -> StitchResult:
        embed = self.settings().embed_output_metadata
        return stitch(folder, project, combined_metadata(project), embed=embed)

    def _forget_takes(self, voice: str, name: str, row: st.Row) -> None:
        folder = self.folder(voice, name)
        for candidate in row.candidates:
            (folder / candidate.file).unlink(missing_ok=True)
            (folder / candidate.file).with_suffix(".json").unlink(missing_ok=True)
        row.candidates, row.chosen = [], None

    def _tokenizer(self) -> Any | None:
        """The loaded model's tokenizer, else tokenizer.json from the models folder, else None."""
        engine = self.generator.engine
        tts = engine.get() if engine.is_loaded else None  # never load the model just to split text
        if tts is not None and hasattr(tts, "tokenizer"):
            return tts.tokenizer
        path = self.paths.tortoise_models_dir / "tokenizer.json"
        if path.is_file():
            from tortoise import VoiceBpeTokenizer

            return VoiceBpeTokenizer(path)
        return None


def _score(report: QaReport | None) -> float:
    return report.score if report is not None else 0.0


def _next_take_number(row: st.Row) -> int:
    """The first take number after those listed; a file left by an interrupted render is overwritten."""
    numbers = [
        int(c.file.rsplit("_", 1)[-1].split(".")[0])
        for c in row.candidates
        if c.file.rsplit("_", 1)[-1].split(".")[0].isdigit()
    ]
    return max(numbers, default=0) + 1
