"""Copy Settings (History and Utilities tabs): fill the Generate tab's controls with a result's
recorded settings and switch to the Generate tab."""

from __future__ import annotations

from typing import Any

import gradio as gr

from src.context import AppContext
from src.prompting import CUSTOM_EMOTION
from src.settings import GenerateDefaults
from src.ui.tab_generate import RESTORED_FIELDS

GENERATE_TAB_ID = "generate"


def copy_targets(generate: dict[str, Any], tabs: gr.Tabs) -> list[Any]:
    """The outputs of a Copy Settings event: the Generate controls in RESTORED_FIELDS order, then
    the Tabs (to switch to Generate)."""
    return [generate[name] for name in RESTORED_FIELDS] + [tabs]


def copy_updates(ctx: AppContext, values: GenerateDefaults) -> list[Any]:
    """Updates for `copy_targets`: each Generate control set to `values`, then the tab switch.

    A voice that is no longer in voices/ is still filled in (with a warning), so that the user
    sees which voice the result was made with.
    """
    voices = ctx.voices.list_voices()
    updates: list[Any] = []
    for name in RESTORED_FIELDS:
        value: Any = getattr(values, name)
        if name == "voice":
            if value and value not in voices:
                gr.Warning(
                    f"The voice '{value}' is not in voices/ any more; pick another voice (or "
                    "import it in Utilities) before generating."
                )
            value = gr.update(choices=voices, value=value)
        elif name == "custom_emotion":
            value = gr.update(value=value, visible=values.emotion == CUSTOM_EMOTION)
        updates.append(value)
    return updates + [gr.Tabs(selected=GENERATE_TAB_ID)]
