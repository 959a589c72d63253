"""build_ui(ctx): the one gr.Blocks of the app, with the five tabs in mrq's order and the wiring
between them (page-load restore of the Generate values)."""

from __future__ import annotations

from typing import Any

import gradio as gr

from src.context import AppContext
from src.ui import tab_generate

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
        with gr.Tabs():
            with gr.Tab("Generate", id="generate"):
                components["generate"] = tab_generate.build(ctx)
            for tab in TABS[1:]:
                with gr.Tab(tab, id=tab.lower()):
                    gr.Markdown(PLACEHOLDER_TEXT.format(tab=tab))
        generate = components["generate"]
        demo.load(
            lambda: tab_generate.restored_values(ctx),
            outputs=[generate[name] for name in tab_generate.RESTORED_FIELDS],
            api_visibility="private",
        )
        for warning in ctx.startup_warnings:
            demo.load(lambda text=warning: gr.Warning(text), api_visibility="private")
    demo.app_components = components
    return demo
