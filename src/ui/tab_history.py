"""The History tab: every output of a voice with the settings it was made with (newest first), a
player for the picked file, and Copy Settings back into the Generate tab."""

from __future__ import annotations

from typing import Any

import gradio as gr

from src.context import AppContext
from src.history import (
    HEADERS,
    history_table,
    history_voices,
    result_metadata,
    settings_to_copy,
)
from src.results import resolve_result
from src.ui.copy_settings import copy_targets, copy_updates
from src.ui.errors import ui_handler

PRIVATE: dict[str, Any] = {"api_visibility": "private"}
# Pixel widths per column; the table scrolls sideways rather than wrapping headers letter by letter.
COLUMN_WIDTHS = {
    "Name": 210,
    "Text": 260,
    "Datetime": 170,
    "Model": 180,
    "Model Hash": 110,
    "Seed": 110,
}
DEFAULT_WIDTH = 95


def build(
    ctx: AppContext, *, generate: dict[str, Any] | None = None, tabs: gr.Tabs | None = None
) -> dict[str, Any]:
    """Lay out the History tab inside the current gr.Tab and wire its events.

    Args:
        ctx: the app context.
        generate: the Generate tab's components; with `tabs`, Copy Settings fills them and
            switches to that tab (without them the button is hidden).
        tabs: the app's gr.Tabs.

    Returns:
        Components: `voice`, `refresh`, `table`, `file`, `audio`, `copy_settings`, `notes`.
    """
    voices = history_voices(ctx.paths)
    voice = voices[0] if voices else None
    table = history_table(ctx.paths, voice)
    c: dict[str, Any] = {}
    c["table"] = gr.Dataframe(
        value=table.rows,
        headers=list(HEADERS),
        label="Results",
        interactive=False,
        wrap=True,
        max_height=420,
        column_widths=[f"{COLUMN_WIDTHS.get(h, DEFAULT_WIDTH)}px" for h in HEADERS],
        elem_id="history-table",
    )
    with gr.Row(equal_height=False):
        with gr.Column():
            c["voice"] = gr.Dropdown(
                choices=voices, value=voice, label="Voice", elem_id="history-voice",
                info="Voices with outputs under results/.",
            )  # fmt: skip
            c["refresh"] = gr.Button("Refresh", size="sm", elem_id="history-refresh")
        with gr.Column():
            c["file"] = gr.Dropdown(
                choices=table.names, value=None, label="Results", elem_id="history-file",
                info="Pick a file (or click its row) to play it.",
            )  # fmt: skip
        with gr.Column():
            c["audio"] = gr.Audio(
                label="Playback", type="filepath", interactive=False, elem_id="history-audio"
            )
            c["copy_settings"] = gr.Button(
                "Copy Settings", visible=generate is not None, elem_id="history-copy"
            )
    c["notes"] = gr.Markdown(elem_id="history-notes")
    _wire(ctx, c)
    if generate is not None and tabs is not None:
        c["copy_settings"].click(
            lambda voice, name: copy_settings(ctx, voice, name),
            inputs=[c["voice"], c["file"]],
            outputs=copy_targets(generate, tabs),
            **PRIVATE,
        )
    return c


def _wire(ctx: AppContext, c: dict[str, Any]) -> None:
    listing = [c["table"], c["file"], c["audio"]]
    c["voice"].change(
        lambda voice: show_voice(ctx, voice), inputs=c["voice"], outputs=listing, **PRIVATE
    )
    c["refresh"].click(
        lambda voice: refresh(ctx, voice),
        inputs=c["voice"],
        outputs=[c["voice"], *listing],
        **PRIVATE,
    )
    c["file"].change(
        lambda voice, name: play(ctx, voice, name),
        inputs=[c["voice"], c["file"]],
        outputs=c["audio"],
        **PRIVATE,
    )
    c["table"].select(pick_row, outputs=c["file"], **PRIVATE)


@ui_handler
def show_voice(ctx: AppContext, voice: str | None) -> tuple:
    """A voice was picked: its table, its files (none picked), an empty player."""
    table = history_table(ctx.paths, voice)
    return table.rows, gr.update(choices=table.names, value=None), None


@ui_handler
def refresh(ctx: AppContext, voice: str | None) -> tuple:
    """Re-read results/: the voice list (keeping the voice when it still has outputs) and its table."""
    voices = history_voices(ctx.paths)
    keep = voice if voice in voices else (voices[0] if voices else None)
    table = history_table(ctx.paths, keep)
    return (
        gr.update(choices=voices, value=keep),
        table.rows,
        gr.update(choices=table.names),
        gr.update(),
    )


@ui_handler
def play(ctx: AppContext, voice: str | None, name: str | None) -> str | None:
    """The picked file, for the player."""
    if not voice or not name:
        return None
    return str(resolve_result(ctx.paths, voice, name))


def pick_row(evt: gr.SelectData) -> Any:
    """Clicking a table row picks its file (the Name column)."""
    row = evt.row_value or []
    return row[0] if row else gr.update()


@ui_handler
def copy_settings(ctx: AppContext, voice: str | None, name: str | None) -> list[Any]:
    """Copy Settings: the Generate tab's controls from the picked file's metadata, then switch."""
    if not voice or not name:
        raise gr.Error("Pick a file in Results first.")
    values = settings_to_copy(result_metadata(ctx.paths, voice, name))
    return copy_updates(ctx, values)
