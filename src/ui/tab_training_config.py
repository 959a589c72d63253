"""Training > Generate Configuration: every TrainingConfig field (widgets from its metadata), Validate
(each adjustment in words), Save (train.yaml and train.json) and Reuse/Import (refill from a saved run,
offering its newest state to resume)."""

from __future__ import annotations

import dataclasses
import json
import typing
from typing import Any

import gradio as gr

from src.context import AppContext
from src.errors import DatasetEmpty, InvalidInput
from src.models_catalog import list_autoregressive_models
from src.settings import FieldSpec
from src.training.finetune import (
    TrainingConfig,
    load_training_config,
    parse_lr_schedule,
    read_dataset_info,
    validate_config,
    write_training_files,
)
from src.training.runner import configured_voices
from src.ui.common import component_for, named_handler, specs_by_name
from src.ui.errors import ui_handler
from src.ui.tab_training_dataset import PRIVATE, keep_choice, wire_quietly

CONFIG_COLUMNS = (
    ("epochs", "learning_rate", "lr_scheme", "lr_schedule", "lr_restarts", "text_loss_weight",
     "mel_loss_weight"),
    ("batch_size", "gradient_accumulation_size", "print_rate", "save_rate", "validation_rate",
     "use_validation", "keep_states", "gpus", "workers"),
    ("rules", "use_half_precision", "use_bitsandbytes", "tortoise_compat", "source_model",
     "resume_state"),
)  # fmt: skip
CONFIG_FIELDS = ("voice", *(name for column in CONFIG_COLUMNS for name in column))
SLIDERS = ("learning_rate", "keep_states")  # as in mrq's form; other numbers are number boxes


def layout(ctx: AppContext, c: dict[str, Any]) -> None:
    """Lay out the sub-tab; components go into `c` by field name (`voice` is the Dataset) and `cfg_*`."""
    datasets = dataset_names(ctx)
    initial = default_config(ctx)
    specs = specs_by_name(TrainingConfig)
    with gr.Row():
        c["voice"] = gr.Dropdown(
            choices=datasets, value=datasets[0] if datasets else None, label="Dataset",
            info="training/<voice>/ folders with a train.txt (from Prepare Dataset).",
            elem_id="train-cfg-voice", scale=3,
        )  # fmt: skip
        with gr.Column(scale=1):
            c["cfg_refresh"] = gr.Button("Refresh Dataset List", size="sm")
            c["cfg_import"] = gr.Button(
                "Reuse/Import Dataset", size="sm", elem_id="train-cfg-import"
            )
    c["cfg_dataset_info"] = gr.Markdown(dataset_info_text(ctx, c["voice"].value))
    with gr.Row(equal_height=False):
        for column in CONFIG_COLUMNS:
            with gr.Column():
                for name in column:
                    c[name] = _config_widget(ctx, specs[name], getattr(initial, name))
    with gr.Row():
        c["cfg_validate"] = gr.Button(
            "Validate Training Configuration", elem_id="train-cfg-validate"
        )
        c["cfg_save"] = gr.Button(
            "Save Training Configuration", variant="primary", elem_id="train-cfg-save"
        )
    c["cfg_result"] = gr.JSON(visible=False)  # see wire_quietly
    c["cfg_console"] = gr.Textbox(
        label="Console Output",
        lines=6,
        max_lines=16,
        interactive=False,
        elem_id="train-cfg-console",
    )


def _config_widget(ctx: AppContext, spec: FieldSpec, value: Any) -> Any:
    """A form widget from the TrainingConfig field's metadata (label, help, range, choices)."""
    hint = typing.get_type_hints(TrainingConfig)[spec.name]
    elem_id = f"train-cfg-{spec.name}"
    if spec.name == "source_model":
        choices = [(m.label, m.value) for m in list_autoregressive_models(ctx.paths)]
        return gr.Dropdown(choices=choices, value=value, label=spec.label, info=spec.help,
                           allow_custom_value=True, elem_id=elem_id)  # fmt: skip
    if hint is bool:
        widget = "checkbox"
    elif spec.choices:
        widget = "radio"
    elif spec.name in SLIDERS:
        widget = "slider"
    elif hint in (int, float):
        widget = "number"
    else:
        widget = "textbox"
    if spec.name == "lr_schedule":
        value = json.dumps(list(value))
    spec = dataclasses.replace(spec, widget=widget)
    return component_for(spec, value, cls=TrainingConfig, elem_id=elem_id)


def dataset_names(ctx: AppContext) -> list[str]:
    """training/ folders with a train.txt, by name."""
    folder = ctx.paths.training_dir
    if not folder.is_dir():
        return []
    names = (p.name for p in folder.iterdir() if (p / "train.txt").is_file())
    return sorted(names, key=lambda n: (n.lower(), n))


def default_config(ctx: AppContext) -> TrainingConfig:
    """The form's defaults, with Half Precision and BitsAndBytes from Settings."""
    return TrainingConfig(
        use_half_precision=ctx.settings.training_default_halfp,
        use_bitsandbytes=ctx.settings.training_default_bnb,
    )


def config_from_form(values: dict[str, Any]) -> TrainingConfig:
    """A TrainingConfig from the form values (keyed by field name).

    Raises:
        InvalidInput: an empty number box or a schedule that is not a list of epochs.
    """
    specs = specs_by_name(TrainingConfig)
    hints = typing.get_type_hints(TrainingConfig)
    kwargs: dict[str, Any] = {}
    for name in CONFIG_FIELDS:
        value, hint = values.get(name), hints[name]
        if name == "lr_schedule":
            kwargs[name] = parse_lr_schedule(value or "")
        elif hint in (int, float):
            if value is None or value == "":
                raise InvalidInput(f"{specs[name].label} is empty; type a number.")
            kwargs[name] = int(round(float(value))) if hint is int else float(value)
        elif hint is bool:
            kwargs[name] = bool(value)
        else:
            kwargs[name] = str(value or "").strip()
    return TrainingConfig(**kwargs)


def form_values(config: TrainingConfig) -> list[Any]:
    """The form's values for `config`, in CONFIG_FIELDS order."""
    values = []
    for name in CONFIG_FIELDS:
        value = getattr(config, name)
        values.append(json.dumps(list(value)) if name == "lr_schedule" else value)
    return values


def dataset_info_text(ctx: AppContext, voice: str | None) -> str:
    """Line counts of a dataset, shown above the form."""
    if not voice:
        return "No dataset yet: prepare one in **Prepare Dataset**."
    try:
        info = read_dataset_info(ctx.paths.training_dir_for(voice))
    except DatasetEmpty as empty:  # shown in place of the counts; Validate and Save refuse it too
        return f"⚠️ {empty}"
    return (
        f"Dataset **{voice}**: {info.train_size} training lines, {info.validation_size} validation "
        "lines. Validate adjusts the batch size and rates to it."
    )


@ui_handler
def validate_clicked(ctx: AppContext, values: dict[str, Any]) -> list[Any]:
    """Validate Training Configuration -> form values (adjusted) + console messages."""
    config = config_from_form(values)
    if not config.voice:
        raise InvalidInput("Choose a Dataset first (prepare one in Prepare Dataset).")
    info = read_dataset_info(ctx.paths.training_dir_for(config.voice))
    config, messages = validate_config(
        config, info.train_size, validation_size=info.validation_size, root=ctx.paths.root
    )
    return [*form_values(config), "\n".join(messages)]


@ui_handler
def save_clicked(ctx: AppContext, values: dict[str, Any]) -> list[Any]:
    """Save Training Configuration -> form values (as saved) + messages + Run Training's list."""
    config = config_from_form(values)
    saved = write_training_files(ctx.paths, config)
    gr.Info(f"Training configuration for '{saved.config.voice}' saved.")
    configs = configured_voices(ctx.paths)
    return [
        *form_values(saved.config),
        "\n".join(saved.messages),
        gr.update(choices=configs, value=saved.config.voice),
    ]


@ui_handler
def import_clicked(ctx: AppContext, voice: str | None) -> list[Any]:
    """Reuse/Import Dataset -> the saved form of `voice` (newest state offered to resume)."""
    if not voice:
        raise InvalidInput("Choose a Dataset first.")
    config, messages = load_training_config(ctx.paths.training_dir_for(voice))
    return [*form_values(config), "\n".join(messages)]


@ui_handler
def refresh_lists(ctx: AppContext, current: str | None) -> tuple:
    """Refresh Dataset List: the datasets, and the models a run can start from (new checkpoints)."""
    datasets = dataset_names(ctx)
    models = [(m.label, m.value) for m in list_autoregressive_models(ctx.paths)]
    return gr.update(choices=datasets, value=keep_choice(datasets, current)), gr.update(
        choices=models
    )


def wire(ctx: AppContext, c: dict[str, Any]) -> None:
    """Wire the sub-tab's events; Save also refreshes Run Training's `run_voice` list."""
    form = [c[name] for name in CONFIG_FIELDS]
    wire_quietly(
        c["cfg_validate"].click,
        named_handler(CONFIG_FIELDS, lambda v: validate_clicked(ctx, v)),
        form,
        [*form, c["cfg_console"]],
        c["cfg_result"],
        api_name="validate_training_config",
    )
    wire_quietly(
        c["cfg_save"].click,
        named_handler(CONFIG_FIELDS, lambda v: save_clicked(ctx, v)),
        form,
        [*form, c["cfg_console"], c["run_voice"]],
        c["cfg_result"],
        api_name="save_training_config",
    )
    wire_quietly(
        c["cfg_import"].click,
        lambda voice: import_clicked(ctx, voice),
        [c["voice"]],
        [*form, c["cfg_console"]],
        c["cfg_result"],
        **PRIVATE,
    )
    for event in (c["cfg_refresh"].click, c["cfg_tab"].select):
        event(
            lambda current: refresh_lists(ctx, current),
            inputs=c["voice"],
            outputs=[c["voice"], c["source_model"]],
            **PRIVATE,
        )
    c["voice"].change(
        ui_handler(lambda voice: dataset_info_text(ctx, voice)),
        inputs=c["voice"],
        outputs=c["cfg_dataset_info"],
        **PRIVATE,
    )
