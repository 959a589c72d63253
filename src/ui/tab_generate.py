"""The Generate tab: prompt, voice and sampling controls, Run/Stop, outputs. Handlers stay thin:
they build a GenerateRequest from the components (keyed by its field names) and call the
Generator."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr

from src.context import AppContext
from src.generate import GenerateRequest, GenerateResult
from src.paths import SPECIAL_VOICES
from src.prompting import CUSTOM_EMOTION
from src.settings import GenerateDefaults
from src.ui import fast_mode
from src.ui.common import (
    audio_for_player,
    component_for,
    named_handler,
    pick_voice,
    specs_by_name,
    voice_list_update,
)
from src.ui.errors import ui_handler, user_message
from tortoise import PRESETS, GenerationCancelled, normalize_preset_name

MakeFn = Callable[..., Any]  # builds the component for a GenerateDefaults field by name
# The request fields shown as inputs, in the order they are sent (also the API's parameter order).
REQUEST_FIELDS = tuple(f.name for f in dataclasses.fields(GenerateRequest))
# Knobs that "Reset to Defaults" puts back (the prompt and the voice are content, not settings).
RESETTABLE = tuple(
    name
    for name in REQUEST_FIELDS
    if name not in ("text", "delimiter", "voice", "mic_audio", "custom_emotion")
)
# Fields restored from config/generate.json when the page loads.
RESTORED_FIELDS = tuple(f.name for f in dataclasses.fields(GenerateDefaults))
EXPERIMENTAL_FIELDS = (
    "half_precision", "cond_free", "cvvp_weight", "top_p", "diffusion_temperature",
    "length_penalty", "repetition_penalty", "cond_free_k", "enable_redaction",
)  # fmt: skip
PRIVATE: dict[str, Any] = {"api_visibility": "private"}  # UI-only events stay out of the API
RESULT_HEADERS = ["Seed", "Time (s)", "Files"]
PROMPT_HINT = (
    "Text to speak. Words in [brackets] steer the delivery but are not spoken, e.g. "
    "[I am really sad,] Please don't go."
)


def preset_values(preset: str | None) -> tuple[int, int] | None:
    """(Samples, Iterations) of a preset label such as "Ultra Fast", or None for no preset."""
    if not preset:
        return None
    values = PRESETS[normalize_preset_name(preset)]
    return values["num_autoregressive_samples"], values["diffusion_iterations"]


def result_rows(result: GenerateResult, root: Path) -> list[list[Any]]:
    """The Results table: one row with the seed used, the time and the final files."""
    files = ", ".join(_relative(path, root) for path in result.files)
    return [[result.seed, f"{result.time_s:.3f}", files]]


def result_notes(result: GenerateResult) -> str:
    lines = [
        f"Seed used: **{result.seed}** · {len(result.files)} file(s) in `{result.run_dir.name}`"
    ]
    lines += [f"- {note}" for note in result.notes]
    return "\n".join(lines)


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def build(ctx: AppContext) -> dict[str, Any]:
    """Lay out the Generate tab inside the current gr.Tab and wire its events.

    Returns:
        The components keyed by GenerateRequest field names, plus the buttons and outputs
        (`refresh_voices`, `compute_latents`, `run`, `stop`, `reset`, `output`, `candidate`,
        `source_sample`, `results`, `notes`).
    """
    specs = specs_by_name(GenerateDefaults)
    initial = ctx.generate_defaults()
    voices = ctx.voices.list_voices()
    voice = pick_voice(voices, initial.voice)
    if voice != initial.voice:  # first start, or the saved voice is gone: suggest for the one shown
        initial = dataclasses.replace(
            initial, voice_chunks=ctx.voices.suggest_voice_chunks(voice or "")
        )
    c: dict[str, Any] = {}

    def make(name: str, **overrides: Any) -> Any:
        c[name] = component_for(
            specs[name],
            getattr(initial, name),
            cls=GenerateDefaults,
            elem_id=f"gen-{name}",
            **overrides,
        )
        return c[name]

    with gr.Row():
        make("text", info=PROMPT_HINT, placeholder="Your prompt here.")
    with gr.Row(equal_height=False):
        with gr.Column():
            _voice_column(c, make, voices, voice, initial)
        with gr.Column():
            _sampling_column(c, make)
        with gr.Column():
            _output_column(c)
    _wire(ctx, c)
    return c


def _voice_column(
    c: dict[str, Any], make: MakeFn, voices: list[str], voice: str | None, initial: GenerateDefaults
) -> None:
    """Column A: how the text is split and spoken, and which voice speaks it."""
    make("delimiter")
    make("emotion")
    make("custom_emotion", visible=initial.emotion == CUSTOM_EMOTION)
    c["voice"] = gr.Dropdown(
        choices=voices,
        value=voice,
        label="Voice",
        allow_custom_value=True,
        info="Folders in voices/; a&b blends two voices.",
        elem_id="gen-voice",
    )
    with gr.Row():
        c["refresh_voices"] = gr.Button("Refresh Voice List", size="sm")
        c["compute_latents"] = gr.Button("(Re)Compute Voice Latents", size="sm")
    c["mic_audio"] = gr.Audio(
        label="Microphone Source", sources=["microphone"], type="filepath", elem_id="gen-mic_audio"
    )
    make(
        "voice_chunks",
        info="Slices of the voice used for its latents; 0 = automatic. "
        "Set to the voice's clip count when you pick a voice.",
    )


def _sampling_column(c: dict[str, Any], make: MakeFn) -> None:
    """Column B: candidates, seed, preset and sampling knobs, then the Experimental accordion."""
    make("generation_mode")
    make("candidates")
    make("seed", info="0 = random; the seed used is shown with the results.")
    make("preset", info="Fills Samples and Iterations.")
    make("num_autoregressive_samples")
    make("diffusion_iterations")
    make("temperature")
    make("breathing_room", info="Pause size: longer runs of silence end the clip.")
    make("diffusion_sampler")
    with gr.Accordion("Experimental", open=False):
        for name in EXPERIMENTAL_FIELDS:
            make(name)
        c["reset"] = gr.Button("Reset to Defaults", size="sm")


def _output_column(c: dict[str, Any]) -> None:
    """Column D: Run/Stop, the output player, the candidate picker, results and the voice sample."""
    with gr.Row():
        mode = c["generation_mode"].value
        c["run"] = gr.Button("Run", variant="primary", elem_id="gen-run", visible=mode != fast_mode.FAST_MODE)
        fast_mode.add_run_button(c, mode)
        c["stop"] = gr.Button("Stop", variant="stop", elem_id="gen-stop")
    fast_mode.add_stream_player(c, mode)
    c["output"] = gr.Audio(label="Output", type="filepath", interactive=False, elem_id="gen-output")
    c["candidate"] = gr.Dropdown(
        label="Candidates", choices=[], visible=False, elem_id="gen-candidate"
    )
    c["results"] = gr.Dataframe(
        headers=RESULT_HEADERS,
        label="Results",
        interactive=False,
        wrap=True,
        column_widths=["20%", "20%", "60%"],
        elem_id="gen-results",
    )
    c["notes"] = gr.Markdown(label="Notes", elem_id="gen-notes")
    c["source_sample"] = gr.Audio(
        label="Source Sample", interactive=False, visible=False, elem_id="gen-source_sample"
    )


def _wire(ctx: AppContext, c: dict[str, Any]) -> None:
    _wire_run(ctx, c)
    _wire_voice(ctx, c)
    _wire_controls(c)
    fast_mode.wire(ctx, c, REQUEST_FIELDS, result_rows, result_notes)


def _wire_run(ctx: AppContext, c: dict[str, Any]) -> None:
    """Run (the `generate` API endpoint) and Stop."""
    inputs = [c[name] for name in REQUEST_FIELDS]
    outputs = [c["output"], c["candidate"], c["source_sample"], c["results"], c["notes"]]

    @ui_handler
    def run(values: dict[str, Any], progress: gr.Progress) -> tuple:
        request = GenerateRequest(**values)
        try:
            with ctx.job_runner.tracked_generation(request):  # listed in the queue; resumed after a crash
                result = ctx.generator.generate(
                    request, lambda fraction, text: progress(fraction, desc=text)
                )
        except GenerationCancelled as stopped:
            gr.Warning(user_message(stopped))
            return None, gr.update(choices=[], visible=False), gr.update(visible=False), [], ""
        files = [str(path) for path in result.files]
        sample = audio_for_player(result.sample, result.sample_rate)
        return (
            files[0],
            gr.update(
                choices=[(Path(f).name, f) for f in files], value=files[0], visible=len(files) > 1
            ),
            gr.update(value=sample, visible=sample is not None),
            result_rows(result, ctx.paths.root),
            result_notes(result),
        )

    c["run"].click(
        named_handler(REQUEST_FIELDS, run, with_progress=True),
        inputs=inputs,
        outputs=outputs,
        api_name="generate",
        show_progress_on=[c["output"]],  # one bar, over the player, not one per output
    )

    @ui_handler
    def stop() -> None:
        if ctx.engine.cancel():
            gr.Info("Stopping after the current step...")
        else:
            gr.Info("Nothing is running.")

    c["stop"].click(stop, queue=False, api_name="stop", api_visibility="undocumented")


def _wire_voice(ctx: AppContext, c: dict[str, Any]) -> None:
    """(Re)Compute Voice Latents, Refresh Voice List, and the chunk suggestion for a picked voice."""

    @ui_handler
    def compute_latents(
        voice: str,
        voice_chunks: float,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 - Gradio fills in the tracker
    ) -> str:
        found = ctx.generator.compute_latents(
            voice, int(voice_chunks or 0), lambda fraction, text: progress(fraction, desc=text)
        )
        gr.Info(f"Latents for '{voice}' computed and saved.")
        return "\n".join(f"- {note}" for note in found.notes)

    c["compute_latents"].click(
        compute_latents,
        inputs=[c["voice"], c["voice_chunks"]],
        outputs=c["notes"],
        api_name="compute_latents",
    )

    @ui_handler
    def refresh_voices(current: str) -> dict:
        return voice_list_update(ctx.voices.list_voices(), current)

    c["refresh_voices"].click(refresh_voices, inputs=c["voice"], outputs=c["voice"], **PRIVATE)

    @ui_handler
    def suggest_voice_chunks(voice: str) -> int:
        return ctx.voices.suggest_voice_chunks(voice)

    c["voice"].change(suggest_voice_chunks, inputs=c["voice"], outputs=c["voice_chunks"], **PRIVATE)


def _wire_controls(c: dict[str, Any]) -> None:
    """Controls that only change other controls: microphone, preset, emotion, candidate, reset."""
    c["mic_audio"].change(
        mic_selects_voice, inputs=[c["mic_audio"], c["voice"]], outputs=c["voice"], **PRIVATE
    )
    c["preset"].change(
        apply_preset,
        inputs=c["preset"],
        outputs=[c["num_autoregressive_samples"], c["diffusion_iterations"]],
        **PRIVATE,
    )
    c["emotion"].change(
        show_custom_emotion, inputs=c["emotion"], outputs=c["custom_emotion"], **PRIVATE
    )
    c["candidate"].change(pick_candidate, inputs=c["candidate"], outputs=c["output"], **PRIVATE)
    c["reset"].click(reset_values, outputs=[c[name] for name in RESETTABLE], **PRIVATE)


@ui_handler
def apply_preset(preset: str | None) -> tuple:
    """Preset -> (Samples, Iterations); no preset leaves both alone."""
    values = preset_values(preset)
    if values is None:
        return gr.update(), gr.update()
    return values


def mic_selects_voice(recording: str | None, voice: str) -> str:
    """A new recording switches the voice to `microphone` (as mrq's UI did)."""
    return SPECIAL_VOICES[1] if recording else voice


def show_custom_emotion(emotion: str) -> dict:
    return gr.update(visible=emotion == CUSTOM_EMOTION)


def pick_candidate(path: str | None) -> str | None:
    return path or None


def reset_values() -> list[Any]:
    """Reset to Defaults: every knob back to its declared default (prompt and voice are kept)."""
    defaults = GenerateRequest()
    return [getattr(defaults, name) for name in RESETTABLE]


def restored_values(ctx: AppContext) -> list[Any]:
    """Values for `RESTORED_FIELDS` from config/generate.json, for the page-load event."""
    saved = ctx.generate_defaults()
    voices = ctx.voices.list_voices()
    values = []
    voice = pick_voice(voices, saved.voice)
    for name in RESTORED_FIELDS:
        value = getattr(saved, name)
        if name == "voice":
            value = gr.update(choices=voices, value=voice)
        elif name == "voice_chunks" and voice != saved.voice:
            value = ctx.voices.suggest_voice_chunks(voice or "")
        elif name == "custom_emotion":
            value = gr.update(value=value, visible=saved.emotion == CUSTOM_EMOTION)
        values.append(value)
    return values
