"""build_ui(ctx): the one gr.Blocks of the app, with the five tabs in mrq's order and the wiring
between them (page-load restore of the Generate values, Copy Settings from History and Utilities
into Generate, the Generate voice list after an import)."""

from __future__ import annotations

from typing import Any

import gradio as gr

from src.context import AppContext
from src.ui import tab_generate, tab_history, tab_settings, tab_utilities

TITLE = "AI Voice Cloning"
TABS = ("Generate", "History", "Utilities", "Training", "Settings")
PLACEHOLDER_TEXT = "The {tab} tab is not available yet in this version."


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
            with gr.Tab("History", id="history") as history_tab:
                components["history"] = tab_history.build(ctx, generate=generate, tabs=tabs)
            with gr.Tab("Utilities", id="utilities"):
                components["utilities"] = tab_utilities.build(ctx, generate=generate, tabs=tabs)
            with gr.Tab("Training", id="training"):
                gr.Markdown(PLACEHOLDER_TEXT.format(tab="Training"))
            with gr.Tab("Settings", id="settings"):
                components["settings"] = tab_settings.build(ctx)
        history = components["history"]
        history_tab.select(  # new outputs since the page loaded show up when History is opened
            lambda voice: tab_history.refresh(ctx, voice),
            inputs=history["voice"],
            outputs=[history["voice"], history["table"], history["file"], history["audio"]],
            api_visibility="private",
        )
        demo.load(
            lambda: tab_generate.restored_values(ctx),
            outputs=[generate[name] for name in tab_generate.RESTORED_FIELDS],
            api_visibility="private",
        )
        for warning in ctx.startup_warnings:
            demo.load(lambda text=warning: gr.Warning(text), api_visibility="private")
    demo.app_components = components
    return demo
