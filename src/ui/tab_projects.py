"""The Projects tab: long texts as projects of segments. Create a project (with the Generate tab's settings),
watch it render segment by segment (a timer refreshes the view, so progress survives a reload), regenerate,
audition and pick takes, edit/insert/delete segments, set pauses, filter flagged segments, see the queue."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

import gradio as gr

from src.context import AppContext
from src.errors import InvalidInput
from src.lexicon import effective_lexicon
from src.projects import Edit, Project, parse_ref, project_ref
from src.projects.voice_match import DRIFT_FLAG, consistency_checks
from src.qa import QaSettings
from src.settings import GenerateDefaults
from src.ui.errors import ui_handler
from src.ui.token_view import render_preview

ROW_HEADERS = [
    "#", "Voice", "Text", "Status", "WER %", "Voice match", "Flags", "Speed", "Duration (s)", "Pause (s)",
    "Takes", "Chosen",
]  # fmt: skip
QUEUE_HEADERS = ["Job", "What", "State", "Done", "Reason"]
GENERATE_FIELDS = tuple(f.name for f in dataclasses.fields(GenerateDefaults))
REFRESH_S = 2.0


def row_table(project: Project, flagged_only: bool = False) -> list[list[Any]]:
    """The segment table: one line per row (only rows flagged by QA or for voice drift when `flagged_only`).

    "Voice match" is the chosen take's CVVP score against its voice, with its robust z-score among the
    rows of that voice once there are enough of them to judge.
    """
    checks = consistency_checks(project)
    lines = []
    for number, row in enumerate(project.rows, start=1):
        qa = row.qa or {}
        check = checks.get(row.id)
        flags = ", ".join([*qa.get("flags", ()), *([DRIFT_FLAG] if check and check.flagged else [])])
        if flagged_only and not flags:
            continue
        wer = f"{100 * qa['wer']:.0f}" if "wer" in qa else ""
        match = "" if check is None else f"{check.score:.3f}"
        if check is not None and check.z is not None:
            match += f" (z {check.z:+.1f})"
        duration = f"{row.duration_s:.2f}" if row.duration_s is not None else ""
        detail = row.error or " ".join(row.notes)
        status = f"{row.status}: {detail}" if detail else row.status
        chosen = "" if row.chosen is None else row.chosen + 1
        lines.append([
            number, row.voice or project.voice, row.text, status, wer, match, flags, row.speed, duration,
            row.pause_s, len(row.candidates), chosen,
        ])  # fmt: skip
    return lines


def summary(project: Project, notes: tuple[str, ...] | list[str] = ()) -> str:
    """One status line: how many segments are done, rendering, failed, flagged."""
    counts: dict[str, int] = {}
    for row in project.rows:
        counts[row.status] = counts.get(row.status, 0) + 1
    flagged = sum(1 for row in project.rows if (row.qa or {}).get("flags"))
    drift = sum(1 for check in consistency_checks(project).values() if check.flagged)
    parts = [
        f"**{project.name}** ({project.voice}): {counts.get('done', 0)}/{len(project.rows)} segments done"
    ]
    parts += [f"{counts[s]} {s}" for s in ("rendering", "queued", "failed", "pending") if counts.get(s)]
    if flagged:
        parts.append(f"{flagged} flagged by QA")
    if drift:
        parts.append(f"{drift} drifting from the voice")
    text = ", ".join(parts) + "."
    return text + "".join(f"\n\n> {note}" for note in notes)


def _session(session: dict | None) -> dict:
    return dict(session) if session else {"tab": uuid.uuid4().hex[:12], "seen": {}}


def build(ctx: AppContext, generate: dict[str, Any]) -> dict[str, Any]:
    """Lay out the Projects tab and wire it. `generate` is the Generate tab's components (its settings
    become a new project's settings)."""
    # per-tab memory (tab id, revisions seen) in a hidden component: a gr.State would hold a heartbeat
    # connection open for the whole visit
    c: dict[str, Any] = {"session": gr.JSON(None, visible=False, elem_id="proj-session")}
    with gr.Row():
        c["project"] = gr.Dropdown(
            ctx.projects.list_projects(),
            value=None,
            label="Project",
            elem_id="proj-project",
            allow_custom_value=False,
            scale=3,
        )
        c["refresh"] = gr.Button("Refresh", elem_id="proj-refresh", scale=0)
        c["flagged_only"] = gr.Checkbox(False, label="Flagged only", elem_id="proj-flagged")
    with gr.Accordion("New project", open=True):
        with gr.Row():
            c["name"] = gr.Textbox(label="Name", elem_id="proj-name", placeholder="chapter-1")
            c["voice"] = gr.Dropdown(ctx.voices.list_voices(), label="Voice", elem_id="proj-voice")
            c["pause"] = gr.Number(0.3, label="Pause after each segment (s)", elem_id="proj-pause", minimum=0)
        c["text"] = gr.Textbox(
            label="Text (one segment per sentence; long sentences are split)", lines=6, elem_id="proj-text",
            info="Markup: [pause 0.8s] inserts silence, {speed 0.9}...{/speed} changes the pace of a span.",
        )  # fmt: skip
        with gr.Row():
            c["script"] = gr.Checkbox(
                False, label="Script: 'Voice: text' lines", elem_id="proj-script",
                info="Each line names its speaker; lines without one continue the last; the Voice above "
                "speaks lines before the first label.",
            )  # fmt: skip
            c["qa"] = gr.Checkbox(False, label="Whisper QA", elem_id="proj-qa")
            c["consistency"] = gr.Checkbox(
                False, label="Voice consistency (CVVP)", elem_id="proj-consistency",
                info="Scores each take against its voice's clips and flags segments that drift.",
            )  # fmt: skip
            c["retries"] = gr.Number(
                0,
                label="Auto-retry flagged segments (times)",
                precision=0,
                minimum=0,
                maximum=10,
                elem_id="proj-retries",
            )
            c["create"] = gr.Button("Create and Render", variant="primary", elem_id="proj-create")
    c["status"] = gr.Markdown(elem_id="proj-status")
    c["combined"] = gr.Audio(
        label="combined.wav", type="filepath", interactive=False, elem_id="proj-combined"
    )
    c["rows"] = gr.Dataframe(headers=ROW_HEADERS, interactive=False, wrap=True, elem_id="proj-rows")
    with gr.Row(equal_height=False):
        with gr.Column():
            c["row"] = gr.Number(1, label="Segment #", precision=0, minimum=1, elem_id="proj-row")
            c["row_text"] = gr.Textbox(label="Segment text", lines=2, elem_id="proj-row-text")
            c["row_pause"] = gr.Number(0.3, label="Pause after (s)", minimum=0, elem_id="proj-row-pause")
            with gr.Row():
                c["preview"] = gr.Button("Preview Tokens", elem_id="proj-preview", scale=0)
                c["preview_summary"] = gr.Markdown(elem_id="proj-preview-summary")
            c["preview_text"] = gr.HTML(elem_id="proj-preview-text")
            with gr.Row():
                c["save_text"] = gr.Button("Save Text", elem_id="proj-save-text")
                c["insert"] = gr.Button("Insert After", elem_id="proj-insert")
                c["delete"] = gr.Button("Delete", elem_id="proj-delete", variant="stop")
                c["set_pause"] = gr.Button("Set Pause", elem_id="proj-set-pause")
        with gr.Column():
            with gr.Row():
                c["new_seed"] = gr.Checkbox(True, label="New seed", elem_id="proj-new-seed")
                c["regenerate"] = gr.Button("Regenerate", elem_id="proj-regenerate")
            c["take"] = gr.Dropdown([], label="Takes", elem_id="proj-take")
            c["take_audio"] = gr.Audio(
                label="Take", type="filepath", interactive=False, elem_id="proj-take-audio"
            )
            c["pick"] = gr.Button("Use This Take", elem_id="proj-pick")
    with gr.Row():
        c["render"] = gr.Button("Render Missing", elem_id="proj-render")
        c["regen_flagged"] = gr.Button("Regenerate Flagged", elem_id="proj-regen-flagged")
        c["restitch"] = gr.Button("Re-stitch", elem_id="proj-restitch")
        c["cancel"] = gr.Button("Cancel Jobs", elem_id="proj-cancel")
    c["queue"] = gr.Dataframe(headers=QUEUE_HEADERS, interactive=False, label="Queue", elem_id="proj-queue")
    c["timer"] = gr.Timer(REFRESH_S, active=False)  # ticks only while the project has jobs to watch
    _wire(ctx, c, generate)
    return c


def _view(
    ctx: AppContext,
    ref: str | None,
    flagged_only: bool,
    session: dict | None,
    notes: tuple[str, ...] = (),
    force: bool = False,
) -> tuple:
    """(status, rows, combined, queue, session, timer) for the project; unchanged parts are skipped."""
    session = _session(session)
    if not ref:
        return "Create a project or pick one.", [], None, [], session, gr.Timer(active=False)
    voice, name = parse_ref(ref)
    change = ctx.projects.open(voice, name)
    project = change.project
    seen = session["seen"].get(ref, {})
    told = list(notes) + list(change.notes)
    last = project.last_edit or {}
    if seen and project.edit_revision > seen.get("edit", 0) and last.get("tab") not in (None, session["tab"]):
        told.append("Another tab changed this project; this view shows the latest version.")
    unchanged = not force and seen.get("revision") == project.revision and not told
    session["seen"][ref] = {"edit": project.edit_revision, "revision": project.revision}
    jobs = ctx.job_queue.jobs(20)  # every job, single generations included
    queue = [[j.id, j.label, j.state, f"{j.done}/{j.total}", j.reason] for j in jobs]
    timer = gr.Timer(active=any(j.state in ("waiting", "running") and j.target == ref for j in jobs))
    if unchanged:  # leave the table and the player alone (a reload would stop playback)
        return gr.update(), gr.update(), gr.update(), queue, session, timer
    combined = ctx.projects.folder(voice, name) / "combined.wav"
    audio = str(combined) if combined.is_file() else None
    told += [note for note in ctx.runtime_notes if note not in told]
    return summary(project, told), row_table(project, flagged_only), audio, queue, session, timer


def on_load(ctx: AppContext) -> dict[str, Any]:
    """At page load (or reload): reopen the newest project that is still rendering, so progress shows."""
    busy = [
        j.target for j in ctx.job_queue.jobs(50) if j.kind == "project" and j.state in ("waiting", "running")
    ]
    return gr.update(choices=ctx.projects.list_projects(), value=busy[0]) if busy else gr.update()


def preview_segment(ctx: AppContext, ref: str | None, text: str) -> tuple[str, str, str]:
    """What the model reads for a segment's text (as typed in the editor), with the project's lexicon
    over the global one: (cleaned text HTML, summary with the token count, token ids)."""
    voice, name = parse_ref(ref)
    if not (text or "").strip():
        raise InvalidInput("Pick a segment (or type its text) to preview.")
    lexicon = effective_lexicon(ctx.paths.config_dir, ctx.projects.folder(voice, name))
    return render_preview(ctx.tokenizers.get(), text, lexicon)


def _row_id(ctx: AppContext, ref: str, number: Any) -> tuple[str, str, str, Project]:
    voice, name = parse_ref(ref)
    project = ctx.projects.open(voice, name).project
    try:
        index = int(number) - 1
    except (TypeError, ValueError):
        raise InvalidInput("Type a segment number.") from None
    if not 0 <= index < len(project.rows):
        raise InvalidInput(f"There is no segment {number}; the project has {len(project.rows)}.")
    return voice, name, project.rows[index].id, project


def _takes(ctx: AppContext, ref: str, number: Any) -> tuple:
    """(segment text, pause, takes dropdown update, take audio) for the selected segment."""
    voice, name, row_id, project = _row_id(ctx, ref, number)
    row = project.row(row_id)
    folder = ctx.projects.folder(voice, name)
    choices = []
    for index, take in enumerate(row.candidates):
        qa = take.qa or {}
        label = f"Take {index + 1} (seed {take.seed}" + (
            f", WER {100 * qa['wer']:.0f}%" if "wer" in qa else ""
        )
        label += ", chosen)" if index == row.chosen else ")"
        choices.append((label, index))
    value = row.chosen if row.chosen is not None else (len(choices) - 1 if choices else None)
    audio = str(folder / row.candidates[value].file) if value is not None else None
    return row.text, row.pause_s, gr.update(choices=choices, value=value), audio


def _wire(ctx: AppContext, c: dict[str, Any], generate: dict[str, Any]) -> None:
    view_out = [c["status"], c["rows"], c["combined"], c["queue"], c["session"], c["timer"]]
    base = [c["project"], c["flagged_only"], c["session"]]

    def edit_of(session: dict | None, ref: str) -> Edit:
        session = _session(session)
        return Edit(session["tab"], session["seen"].get(ref, {}).get("edit"))

    @ui_handler
    def show(ref, flagged, session):
        return _view(ctx, ref, flagged, session, force=True)

    @ui_handler
    def tick(ref, flagged, session):
        return _view(ctx, ref, flagged, session)

    for event in (c["project"].change, c["flagged_only"].change, c["refresh"].click):
        event(show, base, view_out, api_visibility="private", show_progress="hidden")
    c["timer"].tick(tick, base, view_out, api_visibility="private", show_progress="hidden")
    c["refresh"].click(
        lambda: gr.update(choices=ctx.projects.list_projects()), None, c["project"], api_visibility="private"
    )

    @ui_handler
    def create(name, voice, text, pause, script, qa, consistency, retries, flagged, session, *values):
        settings = GenerateDefaults(**dict(zip(GENERATE_FIELDS, values, strict=True)))
        qa_settings = QaSettings(
            enabled=bool(qa), max_retries=int(retries or 0), consistency=bool(consistency)
        )
        project = ctx.projects.create(
            name, voice, text, settings, qa=qa_settings, pause_s=pause, script=bool(script)
        )
        ref = project_ref(project.voice, project.name)
        ctx.job_runner.enqueue_project(ref)
        gr.Info(f"Project '{project.name}' created with {len(project.rows)} segments; rendering.")
        view = _view(ctx, ref, flagged, session, force=True)
        return (gr.update(choices=ctx.projects.list_projects(), value=ref), *view)

    create_in = [
        c[k]
        for k in ("name", "voice", "text", "pause", "script", "qa", "consistency", "retries", "flagged_only",
                  "session")
    ]  # fmt: skip
    c["create"].click(
        create,
        create_in + [generate[k] for k in GENERATE_FIELDS],
        [c["project"], *view_out],
        api_visibility="private",
    )

    @ui_handler
    def select(ref, number):
        return _takes(ctx, ref, number)

    take_out = [c["row_text"], c["row_pause"], c["take"], c["take_audio"]]
    c["row"].change(select, [c["project"], c["row"]], take_out, api_visibility="private")
    c["project"].change(select, [c["project"], c["row"]], take_out, api_visibility="private")

    def on_select(event: gr.SelectData):
        return event.index[0] + 1 if isinstance(event.index, list | tuple) else c["row"].value

    c["rows"].select(on_select, None, c["row"], api_visibility="private")

    @ui_handler
    def audition(ref, number, take):
        voice, name, row_id, project = _row_id(ctx, ref, number)
        row = project.row(row_id)
        if take is None or not 0 <= int(take) < len(row.candidates):
            return None
        return str(ctx.projects.folder(voice, name) / row.candidates[int(take)].file)

    c["take"].input(audition, [c["project"], c["row"], c["take"]], c["take_audio"], api_visibility="private")

    @ui_handler
    def preview(ref, text):
        html, summary, _ = preview_segment(ctx, ref, text)
        return html, summary

    c["preview"].click(preview, [c["project"], c["row_text"]], [c["preview_text"], c["preview_summary"]],
                       api_visibility="private")  # fmt: skip
    _wire_edits(ctx, c, view_out, take_out, edit_of)


def _wire_edits(ctx: AppContext, c: dict[str, Any], view_out: list, take_out: list, edit_of) -> None:
    inputs = [
        c["project"],
        c["row"],
        c["row_text"],
        c["row_pause"],
        c["take"],
        c["new_seed"],
        c["flagged_only"],
        c["session"],
    ]

    def action(kind: str):
        @ui_handler
        def handler(ref, number, text, pause, take, new_seed, flagged, session):
            voice, name, row_id, _ = _row_id(ctx, ref, number)
            edit = edit_of(session, ref)
            notes: tuple[str, ...] = ()
            if kind == "save_text":
                notes = ctx.projects.edit_text(voice, name, row_id, text, edit).notes
                ctx.job_runner.enqueue_project(ref, [row_id])
            elif kind == "insert":
                change = ctx.projects.insert_row(voice, name, row_id, text, edit)
                notes = change.notes
                ctx.job_runner.enqueue_project(ref, [change.project.rows[int(number)].id])
            elif kind == "delete":
                notes = ctx.projects.delete_row(voice, name, row_id, edit).notes
            elif kind == "set_pause":
                notes = ctx.projects.set_pause(voice, name, row_id, pause, edit).notes
            elif kind == "regenerate":
                if ctx.job_runner.enqueue_project(ref, [row_id], new_seed=bool(new_seed)) is None:
                    raise InvalidInput(f"Segment {number} is already waiting to render.")
                gr.Info(f"Segment {number} is queued.")
            elif kind == "pick":
                if take is None:
                    raise InvalidInput("Pick a take in the Takes list first.")
                notes = ctx.projects.pick(voice, name, row_id, int(take), edit).notes
            for note in notes:
                gr.Warning(note)
            view = _view(ctx, ref, flagged, session, notes, force=True)
            try:
                takes = _takes(ctx, ref, number)
            except InvalidInput:  # the last segment was deleted
                takes = ("", 0.3, gr.update(choices=[], value=None), None)
            return (*view, *takes)

        handler.__name__ = kind
        return handler

    for kind in ("save_text", "insert", "delete", "set_pause", "regenerate", "pick"):
        c[kind].click(action(kind), inputs, [*view_out, *take_out], api_visibility="private")

    @ui_handler
    def render(ref, flagged, session):
        job = ctx.job_runner.enqueue_project(ref or "")
        gr.Info("Every segment has a take already." if job is None else f"Queued as job {job}.")
        return _view(ctx, ref, flagged, session, force=True)

    @ui_handler
    def regenerate_flagged(ref, flagged, session):
        voice, name = parse_ref(ref)
        rows = ctx.projects.flagged(voice, name)
        if not rows:
            gr.Info("No segment is flagged by QA or for voice drift.")
        elif ctx.job_runner.enqueue_project(ref, rows, new_seed=True) is None:
            gr.Info("The flagged segments are already waiting to render.")
        else:
            gr.Info(f"{len(rows)} flagged segment(s) queued with new seeds.")
        return _view(ctx, ref, flagged, session, force=True)

    @ui_handler
    def restitch(ref, flagged, session):
        voice, name = parse_ref(ref)
        result = ctx.projects.restitch(voice, name)
        gr.Info(f"combined.wav holds {result.rows} segment(s).")
        return _view(ctx, ref, flagged, session, force=True)

    @ui_handler
    def cancel(ref, flagged, session):
        parse_ref(ref)
        jobs = [j for j in ctx.job_queue.jobs(50, target=ref) if j.state in ("waiting", "running")]
        for job in jobs:
            ctx.job_runner.cancel(job.id)
        gr.Info(f"Cancelled {len(jobs)} job(s)." if jobs else "Nothing is waiting or running.")
        return _view(ctx, ref, flagged, session, force=True)

    base = [c["project"], c["flagged_only"], c["session"]]
    c["render"].click(render, base, view_out, api_visibility="private")
    c["restitch"].click(restitch, base, view_out, api_visibility="private")
    c["regen_flagged"].click(regenerate_flagged, base, view_out, api_visibility="private")
    c["cancel"].click(cancel, base, view_out, api_visibility="private")
