"""The Settings tab's last section: the installation check (src/doctor.py) as a table, run when the page
loads and again on Check Again."""

from __future__ import annotations

from typing import Any

import gradio as gr

from src.context import AppContext
from src.doctor import run_doctor
from src.ui.errors import ui_handler

PRIVATE: dict[str, Any] = {"api_visibility": "private"}


def build(ctx: AppContext) -> dict[str, Any]:
    """Lay out the section inside the current Settings tab and wire it.

    Returns:
        `doctor` (the report) and `doctor_check` (the button).
    """
    c: dict[str, Any] = {}
    with gr.Accordion("Installation Check", open=True, elem_id="settings-doctor-section"):
        gr.Markdown(
            "What this installation can do: the torch build and GPU, ffmpeg, every model file, the data "
            "folders and the disk. The same check runs at start-up (see the log) and in "
            "`./setup-<backend>.sh --check`."
        )
        c["doctor"] = gr.Markdown(elem_id="settings-doctor")
        c["doctor_check"] = gr.Button("Check Again", size="sm", elem_id="settings-doctor-check")
    c["doctor_check"].click(lambda: doctor_markdown(ctx), outputs=c["doctor"], **PRIVATE)
    gr.on(None, lambda: doctor_markdown(ctx), outputs=c["doctor"], **PRIVATE)  # on page load
    return c


@ui_handler
def doctor_markdown(ctx: AppContext) -> str:
    return run_doctor(ctx.paths, ctx.settings).to_markdown()
