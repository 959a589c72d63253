"""The Training tab: Prepare Dataset (transcribe and slice a voice, review every clip), Generate
Configuration (the TrainingConfig form with Validate, Save and Import) and Run Training (start, stop and
re-attach to a trainer subprocess; status line, console, live plots and checkpoint samples). Each
sub-tab lives in its own module; this one assembles them."""

from __future__ import annotations

from typing import Any

import gradio as gr

from src.context import AppContext
from src.ui import tab_training_config, tab_training_dataset, tab_training_run
from src.ui.errors import ui_handler
from src.ui.tab_training_config import dataset_names, default_config
from src.ui.tab_training_dataset import keep_choice, training_voices


def build(ctx: AppContext) -> dict[str, Any]:
    """Lay out the Training tab (three sub-tabs) inside the current gr.Tab and wire its events.

    Returns:
        Components keyed by name: Prepare Dataset `prep_*`, Generate Configuration `cfg_*` plus one
        per TrainingConfig field (`voice` is the Dataset dropdown), Run Training `run_*`.
    """
    c: dict[str, Any] = {}
    with gr.Tabs():
        with gr.Tab("Prepare Dataset", id="train-prepare") as c["prep_tab"]:
            tab_training_dataset.layout(ctx, c)
        with gr.Tab("Generate Configuration", id="train-config") as c["cfg_tab"]:
            tab_training_config.layout(ctx, c)
        with gr.Tab("Run Training", id="train-run") as c["run_tab"]:
            tab_training_run.layout(ctx, c)
    prepared = tab_training_dataset.wire(ctx, c)
    tab_training_config.wire(ctx, c)
    tab_training_run.wire(ctx, c)
    # the line counts follow the review (a clip deleted or a dataset prepared since)
    c["cfg_tab"].select(
        ui_handler(lambda voice: tab_training_config.dataset_info_text(ctx, voice)),
        inputs=c["voice"], outputs=c["cfg_dataset_info"], api_visibility="private",
    )  # fmt: skip
    prepared.success(  # the new dataset is the one to configure
        lambda voice: tab_training_config.refresh_lists(ctx, voice),
        inputs=c["prep_voice"],
        outputs=[c["voice"], c["source_model"]],
        api_visibility="private",
    )
    return c


OPEN_INPUTS = ("prep_voice", "voice", *tab_training_run.WATCH_KEYS)


@ui_handler
def on_open(ctx: AppContext, prep_voice: str | None, dataset: str | None, *watch: Any) -> list[Any]:
    """When the page loads or the Training tab opens: fresh voice, dataset and configuration lists,
    the Whisper backend and model from Settings, and a live run re-attached (its view and the timer)
    without a click.

    Args:
        prep_voice, dataset: the current Dataset Source and Dataset values.
        *watch: the Run Training values named by `tab_training_run.WATCH_KEYS`.
    """
    voices = training_voices(ctx)
    datasets = dataset_names(ctx)
    return [
        gr.update(choices=voices, value=keep_choice(voices, prep_voice)),
        gr.update(choices=datasets, value=keep_choice(datasets, dataset)),
        gr.update(value=ctx.settings.whisper_backend),
        gr.update(value=ctx.settings.whisper_model),
        *tab_training_run.attach(ctx, *watch),
    ]


@ui_handler
def on_load(ctx: AppContext, prep_voice: str | None, dataset: str | None, *watch: Any) -> list[Any]:
    """When the page loads: `on_open`, the review of the Dataset Source's prepared dataset, and the
    configuration form's Half Precision and BitsAndBytes from Settings."""
    opened = on_open(ctx, prep_voice, dataset, *watch)
    voice = opened[0]["value"]
    defaults = default_config(ctx)
    return [*opened, *tab_training_dataset.load_review(ctx, voice),
            gr.update(value=defaults.use_half_precision), gr.update(value=defaults.use_bitsandbytes)]


def on_open_io(c: dict[str, Any], *, with_review: bool = False) -> tuple[list[Any], list[Any]]:
    """(inputs, outputs) of `on_open` (or of `on_load`, `with_review`) among `build`'s components."""
    outputs = [c["prep_voice"], c["voice"], c["prep_backend"], c["prep_model"], c["run_voice"],
               *tab_training_run.view_outputs(c)]  # fmt: skip
    if with_review:
        outputs += [c[key] for key in tab_training_dataset.REVIEW_OUTPUTS]
        outputs += [c["use_half_precision"], c["use_bitsandbytes"]]
    return [c[key] for key in OPEN_INPUTS], outputs
