"""Fast mode in the Generate tab: a Run button and a streaming player shown when Mode is Fast. The run
streams each line's audio as it is made (gr.Audio(streaming=True)) and ends with the saved files, as the
standard Run does. Also the `generate_fast` API endpoint."""

from __future__ import annotations

import inspect
import io
from collections.abc import Iterator, Sequence
from typing import Any

import gradio as gr
import numpy as np
import soundfile as sf

from src.context import AppContext
from src.fast_generate import FAST_MODE, FastUpdate
from src.generate import GenerateRequest, GenerateResult
from src.ui.errors import ui_handler


def add_run_button(c: dict[str, Any], mode: str) -> None:
    """The Fast-mode Run button, beside the standard one (only one of them is visible)."""
    c["run_fast"] = gr.Button("Run", variant="primary", elem_id="gen-run-fast", visible=mode == FAST_MODE)


def add_stream_player(c: dict[str, Any], mode: str) -> None:
    """The player that plays a fast run while it is being made."""
    c["stream_output"] = gr.Audio(
        label="Live Output (Fast mode)", streaming=True, autoplay=True, interactive=False,
        visible=mode == FAST_MODE, elem_id="gen-stream_output",
    )


def wav_bytes(audio: np.ndarray, sample_rate: int) -> bytes:
    """A chunk as a 16-bit WAV file in memory (Gradio streams bytes without peak-normalising them)."""
    buffer = io.BytesIO()
    sf.write(buffer, np.clip(audio, -1.0, 1.0), sample_rate, subtype="PCM_16", format="WAV")
    return buffer.getvalue()


def mode_visibility(mode: str) -> tuple[dict, dict, dict]:
    """(standard Run, fast Run, live player) visibility for a Mode value."""
    fast = mode == FAST_MODE
    return gr.update(visible=not fast), gr.update(visible=fast), gr.update(visible=fast)


def wire(ctx: AppContext, c: dict[str, Any], fields: Sequence[str], rows, notes) -> None:
    """Wire the Mode switch and the Fast Run. `rows`/`notes` format a GenerateResult like the standard Run."""
    c["generation_mode"].change(
        mode_visibility, inputs=c["generation_mode"], outputs=[c["run"], c["run_fast"], c["stream_output"]],
        api_visibility="private",
    )

    @ui_handler
    def start(values: dict[str, Any]) -> Iterator[FastUpdate]:
        request = GenerateRequest(**{**values, "generation_mode": FAST_MODE})
        return ctx.fast_generator.stream(request)

    @ui_handler
    def advance(updates: Iterator[FastUpdate]) -> FastUpdate | None:
        return next(updates, None)  # each step passes the error boundary

    def finished(result: GenerateResult) -> tuple:
        files = [str(path) for path in result.files]
        return gr.update(), (files[0] if files else None), rows(result, ctx.paths.root), notes(result)

    def run_fast(*args: Any) -> Iterator[tuple]:
        updates = start(dict(zip(fields, args, strict=False)))
        while (update := advance(updates)) is not None:
            if update.result is not None:
                yield finished(update.result)
            elif update.audio is not None:
                yield wav_bytes(update.audio, update.sample_rate), gr.update(), gr.update(), update.status
            else:
                yield gr.update(), gr.update(), gr.update(), update.status

    run_fast.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD) for name in fields]
    )
    c["run_fast"].click(
        run_fast, inputs=[c[name] for name in fields],
        outputs=[c["stream_output"], c["output"], c["results"], c["notes"]],
        api_name="generate_fast", show_progress="hidden",
    )

