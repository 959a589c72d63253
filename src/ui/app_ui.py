"""build_ui(ctx): the one gr.Blocks of the app, with the five tabs in mrq's order and the wiring
between them (page-load restore of the Generate values, Copy Settings from History and Utilities
into Generate, the Generate voice list after an import)."""

from __future__ import annotations

from typing import Any

import gradio as gr

from src.context import AppContext
from src.ui import (
    tab_generate,
    tab_history,
    tab_lexicon,
    tab_projects,
    tab_settings,
    tab_training,
    tab_utilities,
)

TITLE = "AI Voice Cloning"
# Set by the page-load events once the last Generate values are restored: tests and scripts wait on this
# element (`#app-ready [data-ready]`) instead of guessing with timeouts or network silence.
READY_MARKER = '<span data-ready="1" hidden></span>'
TABS = ("Generate", "Projects", "History", "Utilities", "Lexicon & Preview", "Training", "Settings")


def build_ui(ctx: AppContext) -> gr.Blocks:
    """Build the whole UI. Nothing is loaded here: the TTS model loads on first use.

    Returns:
        The Blocks, not launched; `demo.app_components` (tab -> components) is kept for tests.
    """
    components: dict[str, dict[str, Any]] = {}
    with gr.Blocks(title=TITLE, analytics_enabled=False) as demo:
        with gr.Tabs() as tabs:
            with gr.Tab("Generate", id="generate"):
                components["generate"] = tab_generate.build(ctx)
            generate = components["generate"]
            with gr.Tab("Projects", id="projects"):
                components["projects"] = tab_projects.build(ctx, generate)
            with gr.Tab("History", id="history") as history_tab:
                components["history"] = tab_history.build(ctx, generate=generate, tabs=tabs)
            with gr.Tab("Utilities", id="utilities"):
                components["utilities"] = tab_utilities.build(ctx, generate=generate, tabs=tabs)
            with gr.Tab("Lexicon & Preview", id="lexicon"):
                components["lexicon"] = tab_lexicon.build(ctx)
            with gr.Tab("Training", id="training") as training_tab:
                components["training"] = tab_training.build(ctx)
            with gr.Tab("Settings", id="settings") as settings_tab:
                components["settings"] = tab_settings.build(ctx, tab=settings_tab)
        ready = gr.HTML("", elem_id="app-ready", padding=False)
        history = components["history"]
        history_tab.select(  # new outputs since the page loaded show up when History is opened
            lambda voice: tab_history.refresh(ctx, voice),
            inputs=history["voice"],
            outputs=[history["voice"], history["table"], history["file"], history["audio"]],
            api_visibility="private",
        )
        # fresh voice/dataset lists, and a training run still going re-attached (page reload, restart)
        training = components["training"]
        training_tab.select(
            lambda *values: tab_training.on_open(ctx, *values),
            *tab_training.on_open_io(training),
            api_visibility="private",
        )
        demo.load(
            lambda *values: tab_training.on_load(ctx, *values),
            *tab_training.on_open_io(training, with_review=True),
            api_visibility="private",
        )
        demo.load(
            lambda: tab_generate.restored_values(ctx),
            outputs=[generate[name] for name in tab_generate.RESTORED_FIELDS],
            api_visibility="private",
        ).then(lambda: READY_MARKER, outputs=ready, api_visibility="private")
        lexicon = components["lexicon"]
        demo.load(lambda: tab_lexicon.load_table(ctx), outputs=[lexicon["table"], lexicon["status"]],
                  api_visibility="private")  # fmt: skip
        demo.load(lambda: tab_projects.on_load(ctx), outputs=components["projects"]["project"],
                  api_visibility="private")  # a render still going shows again after a reload
        for warning in ctx.startup_warnings:
            demo.load(lambda text=warning: gr.Warning(text), api_visibility="private")
    demo.app_components = components
    return demo
