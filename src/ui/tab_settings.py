"""The Settings tab, generated from the AppSettings declarations in mrq's two-column layout. Each
change is checked, applied to this run and saved to config/exec.json at once; controls that only
apply after a restart (or a TTS reload) are marked. Also: Refresh Model List, Check for Updates and
(Re)Load TTS."""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import gradio as gr

from src.context import AppContext
from src.errors import SettingsError
from src.models_catalog import (
    BASE_MODEL_VALUE,
    check_model_choice,
    list_autoregressive_models,
)
from src.settings import (
    IMMEDIATE,
    RESTART,
    TTS_RELOAD,
    AppSettings,
    FieldSpec,
    field_specs,
)
from src.settings_store import change_setting, command_line_overrides
from src.ui import tab_settings_doctor
from src.ui.common import component_for
from src.ui.errors import ui_handler
from src.updates import BEHIND, UpdateChecker
from tortoise import list_devices

PRIVATE: dict[str, Any] = {"api_visibility": "private"}
MARKS = {RESTART: " (restart)", TTS_RELOAD: " (reload TTS)"}
# The declarations say "restart" for the device, but (Re)Load TTS applies it without one
# (AppContext.reload_tts builds the loader from the current settings).
TAKES_EFFECT = {"device_override": TTS_RELOAD}
AUTO_DEVICE = ("Automatic (best available)", "")
INTRO = (
    "Changes are saved to `config/exec.json` as you make them. Settings marked **(restart)** apply "
    "after restarting the app; **(reload TTS)** apply at the next **(Re)Load TTS**."
)


def takes_effect(spec: FieldSpec) -> str:
    return TAKES_EFFECT.get(spec.name, spec.takes_effect)


def build(ctx: AppContext, tab: Any = None) -> dict[str, Any]:
    """Lay out the Settings tab inside the current gr.Tab (`tab`, whose opening refreshes the model
    list) and wire its events.

    Returns:
        One component per AppSettings field (keyed by field name), plus `refresh_models`,
        `check_updates`, `reload_tts`, `status`, `updates` and `overrides`.
    """
    specs = field_specs(AppSettings)
    c: dict[str, Any] = {"tab": tab} if tab is not None else {}
    gr.Markdown(INTRO)
    c["banner"] = gr.Markdown(banner_text(ctx), visible=bool(ctx.startup_warnings), elem_id="settings-banner")
    c["overrides"] = gr.Markdown(overrides_note(ctx), elem_id="settings-overrides")
    c["status"] = gr.Markdown(ctx.engine.status(), elem_id="settings-status")
    with gr.Row(equal_height=False):
        for column in ("left", "right"):
            with gr.Column():
                for spec in (s for s in specs if s.column == column):
                    c[spec.name] = _control(ctx, spec)
                if column == "right":
                    with gr.Row():
                        c["refresh_models"] = gr.Button("Refresh Model List", size="sm")
                        c["check_updates"] = gr.Button("Check for Updates", size="sm")
                        c["reload_tts"] = gr.Button(
                            "(Re)Load TTS", size="sm", elem_id="settings-reload"
                        )
                    c["updates"] = gr.Markdown(elem_id="settings-updates")
    _wire(ctx, c, specs, UpdateChecker(ctx.paths.root))
    c.update(tab_settings_doctor.build(ctx))  # the installation check, the tab's last section
    return c


def banner_text(ctx: AppContext) -> str:
    """The problems met reading the config files at start-up (a corrupt `config/exec.json` names the file
    and the `.bak` copy it was moved to), shown at the top of the tab until the app restarts."""
    return "\n".join(f"> ⚠️ **{warning}**" for warning in ctx.startup_warnings)


def overrides_note(ctx: AppContext) -> str:
    """Which settings command-line flags set for this run (they are not saved by other changes)."""
    specs = {s.name: s for s in field_specs(AppSettings)}
    names = command_line_overrides(ctx.paths.settings_file, ctx.settings)
    if not names:
        return ""
    listed = ", ".join(f"{specs[n].label} (`{specs[n].cli}`)" for n in names)
    return (
        f"Set on the command line for this run: {listed}. They are not written to "
        "`config/exec.json` unless you change them here."
    )


def _control(ctx: AppContext, spec: FieldSpec) -> Any:
    label = spec.label + MARKS.get(takes_effect(spec), "")
    value = getattr(ctx.settings, spec.name)
    common = {"label": label, "info": spec.help, "elem_id": f"settings-{spec.name}"}
    if spec.name == "autoregressive_model":
        return gr.Dropdown(choices=model_choices(ctx), value=value or BASE_MODEL_VALUE, **common)
    if spec.name == "whisper_model":
        return gr.Dropdown(choices=list(spec.hints.get("suggestions", ())), value=value,
                           allow_custom_value=True, **common)  # fmt: skip
    if spec.name == "device_override":
        devices = [AUTO_DEVICE] + [
            (f"{name} ({device})", device) for device, name in list_devices()
        ]
        return gr.Dropdown(choices=devices, value=value or "", allow_custom_value=True, **common)
    if spec.widget == "number":
        # No minimum/maximum on the widget: Gradio would refuse out-of-range input with a bare
        # "Error" badge; save_setting refuses it with the range and puts the old value back.
        common["info"] = f"{spec.help} ({_range_text(spec)})"
        return gr.Number(
            value=value, precision=0 if isinstance(spec.default, int) else None, **common
        )
    return component_for(spec, "" if value is None else value, cls=AppSettings, **common)


def _range_text(spec: FieldSpec) -> str:
    return f"{spec.minimum:g} to {spec.maximum:g}"


def model_choices(ctx: AppContext) -> list[tuple[str, str]]:
    current = ctx.settings.autoregressive_model
    return [(m.label, m.value) for m in list_autoregressive_models(ctx.paths, current)]


def _wire(
    ctx: AppContext, c: dict[str, Any], specs: list[FieldSpec], checker: UpdateChecker
) -> None:
    lock = threading.Lock()  # one change at a time: each applies to the settings the last one left
    for spec in specs:
        control = c[spec.name]
        save = _saver(ctx, spec.name, lock)
        outputs = [control, c["status"]]
        # `input`, not `change`: a value the page load puts into a control must not be saved back (a
        # late echo of it would undo a change the user made meanwhile)
        if spec.widget == "slider":  # a drag ends in release; a typed value confirmed with Enter in input
            control.release(save, inputs=control, outputs=outputs, **PRIVATE)
            control.input(save, inputs=control, outputs=outputs, trigger_mode="always_last", **PRIVATE)
        elif spec.widget in ("checkbox", "dropdown", "radio") or spec.name == "device_override":
            control.input(save, inputs=control, outputs=outputs, **PRIVATE)
        else:  # text and numbers: save when the box is left or Enter is pressed, not per keystroke
            control.blur(save, inputs=control, outputs=outputs, **PRIVATE)
            control.submit(save, inputs=control, outputs=outputs, **PRIVATE)
    c["refresh_models"].click(
        lambda: refresh_models(ctx), outputs=c["autoregressive_model"], **PRIVATE
    )
    if c.get("tab") is not None:  # new checkpoints appear whenever the tab is opened
        c["tab"].select(lambda: refresh_models(ctx), outputs=c["autoregressive_model"], **PRIVATE)
    c["reload_tts"].click(lambda: reload_tts(ctx), outputs=c["status"], **PRIVATE)
    c["check_updates"].click(
        lambda: check_updates(checker, force=True), outputs=c["updates"], **PRIVATE
    )
    # triggers=None: run when the page loads (Blocks.load of the enclosing app): every control shows
    # the settings in effect now (the page was built at start-up), and the model list is fresh.
    controls = [c[spec.name] for spec in specs]
    gr.on(None, lambda: page_load(ctx, checker), outputs=[c["updates"], c["status"], *controls],
          **PRIVATE)  # fmt: skip


def _saver(ctx: AppContext, name: str, lock: threading.Lock):
    def save(value: Any) -> tuple:
        return save_setting(ctx, name, value, lock)

    save.__name__ = f"save_{name}"
    return save


@ui_handler
def save_setting(ctx: AppContext, name: str, value: Any, lock: Any = None) -> tuple:
    """Check, apply and save one setting. A refused value puts the control back and says why.
    `lock` serialises concurrent changes (each reads the settings the previous one left).

    Returns:
        (update for the control, status text or no change).
    """
    spec = next(s for s in field_specs(AppSettings) if s.name == name)
    with lock or contextlib.nullcontext():
        try:
            if name == "autoregressive_model":
                value = check_model_choice(ctx.paths, value)
            change = change_setting(ctx.paths.settings_file, ctx.settings, name, value, ctx.paths.root)
        except SettingsError as error:
            gr.Warning(str(error))
            old = getattr(ctx.settings, name)
            return gr.update(value="" if old is None else old), f"Not saved: {error}"
        if not change.changed:
            return gr.update(), gr.update()
        ctx.update_settings(change.settings)
    message = change.message
    if takes_effect(spec) in (RESTART, TTS_RELOAD):
        gr.Info(message)  # the user has to act: say so where it is seen from anywhere on the page
    if takes_effect(spec) == IMMEDIATE and ctx.engine.is_loaded:
        ctx.reload_tts()
        message += f" {ctx.engine.status()}"
    return gr.update(), message


@ui_handler
def refresh_models(ctx: AppContext) -> dict:
    """Re-scan models/finetunes/ and training/ for AR checkpoints, keeping the current choice."""
    return gr.update(
        choices=model_choices(ctx), value=ctx.settings.autoregressive_model or BASE_MODEL_VALUE
    )


@ui_handler
def reload_tts(ctx: AppContext) -> str:
    """(Re)Load TTS: unload and load TorToiSe with the current model, device and Low VRAM."""
    ctx.reload_tts()
    status = ctx.engine.status()
    gr.Info(status)
    return status


@ui_handler
def check_updates(checker: UpdateChecker, *, force: bool = False) -> str:
    status = checker.check(force=force)
    if status.state == BEHIND:
        gr.Info(status.message)
    return status.message


def page_load(ctx: AppContext, checker: UpdateChecker) -> tuple:
    """On page load: the update check when "Check For Updates" is on, the TTS status, and every
    control's value from the settings in effect (a fresh model list for Autoregressive Model)."""
    updates = check_updates(checker) if ctx.settings.check_for_updates else gr.update()
    return updates, ctx.engine.status(), *current_values(ctx)


def current_values(ctx: AppContext) -> list[Any]:
    """One update per setting, in declaration order, showing the value in effect."""
    values = []
    for spec in field_specs(AppSettings):
        value = getattr(ctx.settings, spec.name)
        if spec.name == "autoregressive_model":
            values.append(gr.update(choices=model_choices(ctx), value=value or BASE_MODEL_VALUE))
        else:
            values.append(gr.update(value="" if value is None else value))
    return values
