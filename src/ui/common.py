"""Widgets shared by the tabs: components built from a settings field's declaration, the voice list,
and audio conversion for Gradio players."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Sequence
from typing import Any

import gradio as gr
import numpy as np
import torch

from src.settings import FieldSpec, field_specs


def specs_by_name(cls: type) -> dict[str, FieldSpec]:
    """`field_specs(cls)` keyed by field name."""
    return {spec.name: spec for spec in field_specs(cls)}


def component_for(
    spec: FieldSpec, value: Any = None, *, cls: type | None = None, **overrides: Any
) -> Any:
    """A Gradio component for a declared field: its label, help, range, choices and placeholder.

    Args:
        spec: the field's declaration (see `src.settings.field_specs`).
        value: the initial value (default: the field's default).
        cls: the dataclass, to tell int fields from float ones for Number widgets.
        **overrides: extra keyword arguments for the component (elem_id, visible, ...).
    """
    value = spec.default if value is None else value
    common: dict[str, Any] = {"label": spec.label, "value": value}
    if spec.help:
        common["info"] = spec.help
    common.update(overrides)
    widget = spec.widget
    if widget == "slider":
        return gr.Slider(minimum=spec.minimum, maximum=spec.maximum, step=spec.step or 1, **common)
    if widget == "radio":
        return gr.Radio(choices=list(spec.choices or ()), **common)
    if widget == "dropdown":
        return gr.Dropdown(choices=list(spec.choices or ()), **common)
    if widget == "checkbox":
        return gr.Checkbox(**common)
    if widget == "number":
        is_int = cls is not None and _is_int_field(cls, spec.name)
        return gr.Number(
            minimum=spec.minimum, maximum=spec.maximum, precision=0 if is_int else None, **common
        )
    lines = int(spec.hints.get("lines", 1))
    common.setdefault("placeholder", spec.placeholder)
    common.setdefault("type", "password" if widget == "password" else "text")
    return gr.Textbox(lines=lines, max_lines=max(lines, 20) if lines > 1 else 1, **common)


def _is_int_field(cls: type, name: str) -> bool:
    hint = typing.get_type_hints(cls)[name]
    options = typing.get_args(hint) or (hint,)
    return any(option is int for option in options)


def pick_voice(choices: list[str], wanted: str | None) -> str | None:
    """`wanted` if still listed, else the first voice (folders come before random/microphone)."""
    if wanted and wanted in choices:
        return wanted
    return choices[0] if choices else None


def voice_list_update(choices: list[str], current: str | None) -> dict[str, Any]:
    """A dropdown update with a fresh voice list, keeping the current voice when it still exists."""
    return gr.update(choices=choices, value=pick_voice(choices, current))


def audio_for_player(wav: torch.Tensor | None, sample_rate: int) -> tuple[int, np.ndarray] | None:
    """(rate, int16 samples) for a gr.Audio value, from a float tensor [samples] or [1, samples]."""
    if wav is None or wav.numel() == 0:
        return None
    samples = wav.detach().reshape(-1).clamp(-1.0, 1.0).cpu().numpy()
    return sample_rate, (samples * 32767.0).astype(np.int16)


def named_handler(
    names: Sequence[str], fn: Callable[..., Any], *, with_progress: bool = False
) -> Callable[..., Any]:
    """A Gradio handler taking one positional parameter per name (in order), calling `fn(values)`.

    Gradio reads the parameter names for the API (`client.predict(text=..., voice=...)`), so a
    handler for many inputs gets real names instead of a long positional list spelled out again.

    Args:
        names: the input components' keys, in the order of the event's `inputs`.
        fn: called as `fn(values: dict[str, Any])`, plus `progress` when `with_progress`.
        with_progress: add a trailing `progress=gr.Progress()` parameter (Gradio fills it in).
    """

    def handler(*args: Any, **kwargs: Any) -> Any:
        values = dict(zip(names, args, strict=False))
        values.update({k: v for k, v in kwargs.items() if k in names})
        if with_progress:
            progress = kwargs.get("progress", args[len(names)] if len(args) > len(names) else None)
            return fn(values, progress)
        return fn(values)

    params = [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD) for name in names]
    if with_progress:
        params.append(
            inspect.Parameter(
                "progress", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=gr.Progress()
            )
        )
    handler.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    handler.__name__ = getattr(fn, "__name__", "handler")
    return handler
