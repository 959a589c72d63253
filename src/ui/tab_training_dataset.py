"""Training > Prepare Dataset: transcribe and slice a voice into training/<voice>/ with a progress bar,
then review every clip (player, editable transcript, duration, flags), with the counts and warnings
that must be seen before training."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
import soundfile as sf

from src.context import AppContext
from src.errors import InvalidInput, TrainingError
from src.paths import SPECIAL_VOICES
from src.settings import WHISPER_BACKENDS, WHISPER_MODELS
from src.training.dataset import (
    ClipFlag,
    DatasetClip,
    DatasetOptions,
    dataset_split_warnings,
    delete_clip,
    edit_clip_text,
    load_dataset,
)
from src.training.dataset_job import prepare_voice_dataset
from src.ui.common import named_handler
from src.ui.errors import ui_handler

PRIVATE: dict[str, Any] = {"api_visibility": "private"}
REVIEW_HEADERS = ["Clip", "Split", "Duration (s)", "Transcript", "Flags"]
# DatasetOptions fields as the Prepare Dataset form shows them: (label, help, minimum, step).
DATASET_OPTION_WIDGETS = {
    "validation_text_length": ("Validation Text Length Threshold",
                               "Clips with shorter text go to validation.txt; 0 turns this off.", 0, 1),
    "validation_audio_length_s": ("Validation Audio Length Threshold (s)",
                                  "Clips shorter than this go to validation.txt; 0 turns this off.", 0, 0.1),
    "slice_start_offset_s": ("Slice Start Offset (s)", "Added to each segment's start when slicing.",
                             None, 0.05),
    "slice_end_offset_s": ("Slice End Offset (s)", "Added to each segment's end when slicing.", None, 0.05),
    "always_slice": ("Always Slice", "Cut every file into its segments, even ones short enough to use "
                     "whole.", None, None),
}  # fmt: skip
DATASET_OPTION_FIELDS = tuple(f.name for f in dataclasses.fields(DatasetOptions))
# What `load_review` fills, in order.
REVIEW_OUTPUTS = (
    "prep_summary",
    "prep_warnings",
    "prep_table",
    "prep_clip",
    "prep_audio",
    "prep_text",
)


def layout(ctx: AppContext, c: dict[str, Any]) -> None:
    """Lay out the sub-tab; components go into `c` as `prep_*`."""
    voices = training_voices(ctx)
    defaults = DatasetOptions()
    with gr.Row(equal_height=False):
        with gr.Column():
            c["prep_voice"] = gr.Dropdown(
                choices=voices, value=voices[0] if voices else None, label="Dataset Source",
                info="The voice folder (voices/<name>/) whose recordings become the dataset.",
                elem_id="train-prep-voice",
            )  # fmt: skip
            c["prep_refresh"] = gr.Button("Refresh Voice List", size="sm")
            c["prep_language"] = gr.Textbox(
                label="Language", placeholder="English", elem_id="train-prep-language",
                info="A name or code for Whisper; empty means English, 'auto' detects it.",
            )  # fmt: skip
            with gr.Row():
                c["prep_backend"] = gr.Dropdown(
                    choices=list(WHISPER_BACKENDS), value=ctx.settings.whisper_backend,
                    label="Whisper Backend", info="Default from Settings.",
                )  # fmt: skip
                c["prep_model"] = gr.Dropdown(
                    choices=list(WHISPER_MODELS), value=ctx.settings.whisper_model,
                    allow_custom_value=True, label="Whisper Model",
                    info="Default from Settings; a local model path also works.",
                )  # fmt: skip
            with gr.Accordion("Slicing and Validation Split", open=False):
                for name in DATASET_OPTION_FIELDS:
                    c[f"prep_{name}"] = _option_widget(name, getattr(defaults, name))
            c["prep_run"] = gr.Button("Prepare", variant="primary", elem_id="train-prep-run")
        with gr.Column():
            c["prep_console"] = gr.Textbox(
                label="Console Output", lines=8, max_lines=8, interactive=False,
                elem_id="train-prep-console",
            )  # fmt: skip
            c["prep_summary"] = gr.Markdown(elem_id="train-prep-summary")
            c["prep_warnings"] = gr.Markdown(elem_id="train-prep-warnings")
    c["prep_table"] = gr.Dataframe(
        headers=REVIEW_HEADERS, label="Review (click a row to play and edit it)", interactive=False,
        wrap=True, max_height=360, column_widths=["22%", "9%", "9%", "45%", "15%"],
        elem_id="train-prep-table",
    )  # fmt: skip
    # the clicked clip (a hidden box, not gr.State: any State makes Gradio hold a heartbeat stream open)
    c["prep_clip"] = gr.Textbox(visible=False, elem_id="train-prep-clip")
    c["prep_result"] = gr.JSON(visible=False)  # see wire_quietly
    with gr.Row(equal_height=False):
        c["prep_audio"] = gr.Audio(
            label="Selected Clip", interactive=False, elem_id="train-prep-audio"
        )
        with gr.Column():
            c["prep_text"] = gr.Textbox(label="Transcript", lines=2, elem_id="train-prep-text")
            with gr.Row():
                c["prep_save_text"] = gr.Button(
                    "Save Transcript", size="sm", elem_id="train-prep-save"
                )
                c["prep_delete"] = gr.Button(
                    "Delete Clip", size="sm", variant="stop", elem_id="train-prep-delete"
                )


def _option_widget(name: str, value: Any) -> Any:
    label, help_text, minimum, step = DATASET_OPTION_WIDGETS[name]
    if isinstance(value, bool):
        return gr.Checkbox(value=value, label=label, info=help_text, elem_id=f"train-prep-{name}")
    return gr.Number(value=value, label=label, info=help_text, minimum=minimum, step=step,
                     precision=0 if isinstance(value, int) else None,
                     elem_id=f"train-prep-{name}")  # fmt: skip


def wire_quietly(
    trigger: Any, fn: Any, inputs: list[Any], outputs: list[Any], carrier: Any, **kwargs: Any
) -> Any:
    """Wire `trigger` to `fn` with its result parked in a hidden gr.JSON `carrier`, then copied to
    `outputs`: a refused input is then one pop-up, not an "Error" badge on every output (Gradio
    marks all outputs of a failed event). `fn` returns JSON-able values (gr.update dicts included).

    Returns:
        The second (copying) event.
    """
    return trigger(
        lambda *args: {"values": list(fn(*args))}, inputs=inputs, outputs=carrier, **kwargs
    ).success(lambda payload: payload["values"], inputs=carrier, outputs=outputs, **PRIVATE)


def training_voices(ctx: AppContext) -> list[str]:
    """Voice folders that can become a dataset (not random or microphone)."""
    return [v for v in ctx.voices.list_voices() if v not in SPECIAL_VOICES]


def keep_choice(choices: list[str], current: str | None) -> str | None:
    """`current` if still listed, else the first choice."""
    if current in choices:
        return current
    return choices[0] if choices else None


def review_rows(clips: list[DatasetClip]) -> list[list[Any]]:
    """One row per clip: path, split, duration, transcript, flags (with unknown characters)."""
    rows = []
    for clip in clips:
        flags = ", ".join(str(f) for f in clip.flags)
        if clip.unknown_characters:
            flags += f" ({clip.unknown_characters})"
        rows.append([clip.path, clip.split, round(clip.duration_s, 2), clip.text, flags])
    return rows


def summary_text(clips: list[DatasetClip]) -> str:
    """The counts that must be seen before training: lines per list and minutes of audio."""
    train = sum(c.split == "train" for c in clips)
    validation = sum(c.split == "validation" for c in clips)
    dropped = sum(c.split == "dropped" for c in clips)
    minutes = sum(c.duration_s for c in clips if c.split != "dropped") / 60
    text = (
        f"**{train}** training lines (train.txt) · **{validation}** validation lines "
        f"(validation.txt) · **{minutes:.1f}** min of audio in total"
    )
    return text + (f" · {dropped} slices left out (see Flags)" if dropped else "")


def warnings_text(warnings: list[str]) -> str:
    return "\n".join(f"- ⚠️ {w}" for w in warnings)


def _options(values: dict[str, Any]) -> DatasetOptions:
    kwargs = {}
    for name in DATASET_OPTION_FIELDS:
        value = values[name]
        if value is None:
            raise InvalidInput(f"{DATASET_OPTION_WIDGETS[name][0]} is empty; type a number.")
        kwargs[name] = value
    kwargs["validation_text_length"] = int(kwargs["validation_text_length"])
    return DatasetOptions(**kwargs)


@ui_handler
def prepare_clicked(ctx: AppContext, values: dict[str, Any], progress: Any = None) -> tuple:
    """Prepare: transcribe and slice the voice into training/<voice>/, then show the review.

    Returns:
        (console, summary, warnings, review rows, selected clip, player, transcript).
    """
    voice = values["voice"]
    if not voice:
        raise InvalidInput("Choose a voice under Dataset Source first.")
    refuse_while_training(ctx, voice)
    options = _options(values)
    transcriber = ctx.create_transcriber(values["backend"], values["model"])
    # `is not None`: a gr.Progress is falsy (it has a length), so `if progress` would drop the bar
    report = (lambda fraction, text: progress(fraction, desc=text)) if progress is not None else None
    prepared = prepare_voice_dataset(
        ctx.paths, ctx.engine, ctx.voices.voice_dir(voice), transcriber, values["language"] or "",
        options, report, tokenizer=ctx.tokenizers.find(),
    )  # fmt: skip
    summary, notes = prepared.summary, prepared.notes
    for warning in summary.warnings:
        gr.Warning(warning)
    console = "\n".join([summary.message, *notes])
    rows = review_rows(summary.clips)
    return console, summary_text(summary.clips), warnings_text(summary.warnings), rows, "", None, ""


@ui_handler
def load_review(ctx: AppContext, voice: str | None, values: dict[str, Any] | None = None) -> tuple:
    """The review of an already prepared dataset (or a hint to prepare one).

    Returns:
        (summary, warnings, review rows, selected clip, player, transcript).
    """
    folder = ctx.paths.training_dir_for(voice) if voice else None
    if folder is None or not (folder / "train.txt").is_file():
        hint = f"No dataset for '{voice}' yet; press Prepare." if voice else ""
        return hint, "", [], "", None, ""
    clips = load_dataset(folder, ctx.tokenizers.find())
    options = _options(values) if values else DatasetOptions()
    train = sum(c.split == "train" for c in clips)
    validation = sum(c.split == "validation" for c in clips)
    warnings = dataset_split_warnings(train, validation, options)
    missing = [c.path for c in clips if ClipFlag.MISSING_AUDIO in c.flags]
    if missing:
        warnings.append(f"{len(missing)} listed clips have no audio file (first: {missing[0]}); "
                        "delete them or prepare the dataset again.")  # fmt: skip
    return summary_text(clips), warnings_text(warnings), review_rows(clips), "", None, ""


@ui_handler
def select_clip(ctx: AppContext, voice: str, row: list[Any] | None) -> tuple:
    """A clicked review row -> (selected clip, its audio, its transcript)."""
    if not voice or not row:
        return "", None, ""
    clip, text = str(row[0]), str(row[3])
    folder = ctx.paths.training_dir_for(voice).resolve()
    path = (folder / clip).resolve()
    return clip, clip_audio(path) if path.is_relative_to(folder) else None, text


def refuse_while_training(ctx: AppContext, voice: str) -> None:
    """Changing a dataset under a running trainer would pull clips away from it."""
    if ctx.train_runner.is_running(voice):
        raise TrainingError(
            f"Training for '{voice}' is running on this dataset; stop it (Run Training) before "
            "changing the dataset."
        )


def clip_audio(path: Path) -> tuple[int, np.ndarray] | None:
    """(rate, int16 samples) of a WAV for a player, None when the file is missing or unreadable."""
    try:
        data, rate = sf.read(str(path), dtype="int16", always_2d=False)
    except (sf.SoundFileError, RuntimeError, OSError):
        return None
    return rate, data


@ui_handler
def save_transcript(ctx: AppContext, voice: str, clip: str, text: str) -> tuple:
    """Save Transcript -> (rows, transcript as stored)."""
    if not voice or not clip:
        raise InvalidInput("Click a clip in the review table first.")
    refuse_while_training(ctx, voice)
    folder = ctx.paths.training_dir_for(voice)
    saved = edit_clip_text(folder, clip, text, ctx.tokenizers.find())
    gr.Info(f"Transcript of {clip} saved.")
    return review_rows(load_dataset(folder, ctx.tokenizers.find())), saved.text


@ui_handler
def delete_selected(ctx: AppContext, voice: str, clip: str) -> tuple:
    """Delete Clip -> (summary, rows, selected clip, player, transcript)."""
    if not voice or not clip:
        raise InvalidInput("Click a clip in the review table first.")
    refuse_while_training(ctx, voice)
    folder = ctx.paths.training_dir_for(voice)
    delete_clip(folder, clip)
    gr.Info(f"{clip} deleted from the dataset.")
    clips = load_dataset(folder, ctx.tokenizers.find())
    return summary_text(clips), review_rows(clips), "", None, ""


def wire(ctx: AppContext, c: dict[str, Any]) -> Any:
    """Wire the sub-tab's events (components from `layout`).

    Returns:
        The Prepare event, for the other sub-tabs to follow with `.success`.
    """
    names = ("voice", "language", "backend", "model", *DATASET_OPTION_FIELDS)
    inputs = [c[f"prep_{n}"] for n in names]
    review = [c[k] for k in ("prep_table", "prep_clip", "prep_audio", "prep_text")]
    prepared = c["prep_run"].click(
        named_handler(names, lambda v, p: prepare_clicked(ctx, v, p), with_progress=True),
        inputs=inputs,
        outputs=[c["prep_console"], c["prep_summary"], c["prep_warnings"], *review],
        api_name="prepare_dataset",
    )
    option_inputs = [c[f"prep_{n}"] for n in DATASET_OPTION_FIELDS]

    def review_of(voice: str, *options: Any) -> tuple:
        return load_review(ctx, voice, dict(zip(DATASET_OPTION_FIELDS, options, strict=True)))

    c["prep_voice"].change(
        review_of,
        inputs=[c["prep_voice"], *option_inputs],
        outputs=[c["prep_summary"], c["prep_warnings"], *review],
        **PRIVATE,
    )
    c["prep_refresh"].click(
        lambda current: gr.update(
            choices=(v := training_voices(ctx)), value=keep_choice(v, current)
        ),
        inputs=c["prep_voice"],
        outputs=c["prep_voice"],
        **PRIVATE,
    )

    def on_select(voice: str, evt: gr.SelectData) -> tuple:
        return select_clip(ctx, voice, evt.row_value)

    c["prep_table"].select(on_select, inputs=c["prep_voice"], outputs=review[1:], **PRIVATE)
    wire_quietly(
        c["prep_save_text"].click,
        lambda voice, clip, text: save_transcript(ctx, voice, clip, text),
        [c["prep_voice"], c["prep_clip"], c["prep_text"]],
        [c["prep_table"], c["prep_text"]],
        c["prep_result"],
        **PRIVATE,
    )
    wire_quietly(
        c["prep_delete"].click,
        lambda voice, clip: delete_selected(ctx, voice, clip),
        [c["prep_voice"], c["prep_clip"]],
        [c["prep_summary"], *review],
        c["prep_result"],
        **PRIVATE,
    )
    return prepared
