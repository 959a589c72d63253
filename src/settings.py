"""AppSettings (config/exec.json) and GenerateDefaults (config/generate.json), each declared once.

Every field carries its label, help text and widget hints in `field(metadata=...)`, so the Settings tab,
the command line and the file checks are generated from these declarations. Start-up order: defaults,
then the file, then command-line flags (which override one run and are never written back).
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from src.config_file import (
    ConfigSchema,
    LoadResult,
    check_value,
    load_config,
    save_config,
)
from src.errors import SettingsError
from src.prompting import EMOTIONS, strip_emotion_prefix

SETTINGS_VERSION = 1
GENERATE_VERSION = 1
# When a changed setting takes effect; the Settings tab shows "restart needed" for RESTART.
RESTART, TTS_RELOAD, NEXT_USE, IMMEDIATE = "restart", "tts_reload", "next_use", "immediate"
WHISPER_BACKENDS = ("openai-whisper", "faster-whisper")
WHISPER_MODELS = (
    "tiny", "tiny.en", "base", "base.en", "small", "small.en", "medium", "medium.en",
    "large", "large-v1", "large-v2", "large-v3",
)  # fmt: skip
PRESET_LABELS = ("Ultra Fast", "Fast", "Standard", "High Quality")
SAMPLER_LABELS = ("P", "DDIM", "DPM++2M")
# Standard: candidates, ranking, diffusion. Fast: one sample decoded by HiFi-GAN and streamed as it is made.
GENERATION_MODES = ("Standard", "Fast")
EXPERIMENTAL_FLAGS = ("Half Precision", "Conditioning-Free")  # labels of the Experimental Flags group

S = TypeVar("S")
BLANK_PASSWORD_HELP = (
    "Type a real password, or leave it empty to get a random one printed in the console at start."
)


def _setting(
    default: Any,
    label: str,
    help: str,  # noqa: A002 - the metadata key the UI reads
    widget: str,
    *,
    cli: str | None = None,
    takes_effect: str = NEXT_USE,
    column: str = "left",
    **hints: Any,
) -> Any:
    """A dataclass field with its UI/CLI description (hints: choices, minimum, maximum, step, ...)."""
    meta = {
        "label": label, "help": help, "widget": widget, "cli": cli, "takes_effect": takes_effect,
        "requires_restart": takes_effect == RESTART, "column": column, **hints,
    }  # fmt: skip
    # a password stays out of repr(), so logging a context or settings object never shows it
    return field(default=default, metadata=meta, repr=widget != "password")


@dataclass(frozen=True)
class AppSettings:
    """The Settings tab, in its order (left column, then right). Change with `update_setting`."""

    # A declaration table: one compact block per setting reads better than one argument per line.
    # fmt: off
    listen: str | None = _setting(
        None, "Listen", "Address to serve on, as host:port/path. Empty: 127.0.0.1 on Gradio's port.",
        "textbox", cli="--listen", takes_effect=RESTART, placeholder="127.0.0.1:7860/")
    share: bool = _setting(
        False, "Public Share Gradio", "Also publish the UI on a public gradio.live link.",
        "checkbox", cli="--share", takes_effect=RESTART)
    share_username: str = _setting(
        "", "Share Username", "Login name for the Share Password (empty: admin). Stored in plain text.",
        "textbox", cli="--share-username", takes_effect=RESTART)
    share_password: str = _setting(
        "", "Share Password", "Asks every visitor to log in. Empty: a public UI (--share, or --listen "
        "beyond this machine) gets a random one, printed in the console at start. Stored in plain text "
        "in config/exec.json.", "password", cli="--share-password", takes_effect=RESTART)
    public_without_login: bool = _setting(
        False, "Public Without Login", "Serve a public UI with no login (not recommended): anyone who "
        "finds the address can use your GPU, voices and results.", "checkbox",
        cli="--public-without-login", takes_effect=RESTART)
    check_for_updates: bool = _setting(
        False, "Check For Updates", "Look for a newer version at start-up (result in the log).",
        "checkbox", cli="--check-for-updates", takes_effect=RESTART)
    models_local_only: bool = _setting(
        False, "Only Load Models Locally", "Never download models; use only files already in models/.",
        "checkbox", cli="--models-from-local-only", takes_effect=RESTART)
    low_vram: bool = _setting(
        False, "Low VRAM", "Keep only the model in use on the GPU. Slower, but fits smaller cards.",
        "checkbox", cli="--low-vram", takes_effect=TTS_RELOAD)
    embed_output_metadata: bool = _setting(
        True, "Embed Output Metadata", "Store the settings (and latents) inside each WAV; "
        "off writes a .json file beside it instead.", "checkbox", cli="--embed-output-metadata")
    slim_latents: bool = _setting(
        True, "Slimmer Computed Latents", "Compute and embed only the two latents generation needs "
        "(no CVVP mels), keeping files small.", "checkbox", cli="--latents-lean-and-mean")
    voice_fixer: bool = _setting(
        False, "Use Voice Fixer on Generated Output", "Restore each final clip with VoiceFixer.",
        "checkbox", cli="--voice-fixer")
    voice_fixer_use_cuda: bool = _setting(
        True, "Use CUDA for Voice Fixer", "Run VoiceFixer on the GPU when one is available.",
        "checkbox", cli="--voice-fixer-use-cuda")
    force_cpu_for_conditioning_latents: bool = _setting(
        False, "Force CPU for Conditioning Latents", "Compute voice latents on the CPU (slow, saves VRAM).",
        "checkbox", cli="--force-cpu-for-conditioning-latents")
    do_not_load_tts_on_startup: bool = _setting(
        False, "Do Not Load TTS On Startup", "Start without loading TorToiSe (it loads on first use); "
        "useful before training.", "checkbox", cli="--defer-tts-load", takes_effect=RESTART)
    delete_non_final_output: bool = _setting(
        True, "Delete Non-Final Output", "Delete per-line clips once they are joined into the final clip.",
        "checkbox", cli="--prune-nonfinal-outputs")
    device_override: str | None = _setting(
        None, "Device Override", "Run on this device (cuda:1, cpu, mps...). Empty: pick automatically.",
        "textbox", cli="--device-override", takes_effect=TTS_RELOAD, placeholder="cuda:0")
    latents_max_chunk_size: float = _setting(
        10.0, "Voice Latents Max Chunk Size", "Longest piece of voice audio, in seconds, encoded at once "
        "when computing latents; lower it if latents run out of memory.", "number",
        cli="--latents-max-chunk-size", column="right", minimum=1.0, maximum=600.0)
    sample_batch_size: int = _setting(
        0, "Sample Batch Size", "AR candidates sampled at once; 0 picks a size from free memory.",
        "number", cli="--sample-batch-size", column="right", minimum=0, maximum=512)
    concurrency_count: int = _setting(
        2, "Gradio Concurrency Count", "Requests the server handles at once (generation itself is one "
        "at a time).", "number", cli="--concurrency-count", takes_effect=RESTART, column="right",
        minimum=1, maximum=64)
    output_sample_rate: int = _setting(
        44100, "Output Sample Rate", "Sample rate of saved clips in Hz; TorToiSe makes 24000 Hz.",
        "number", cli="--output-sample-rate", column="right", minimum=8000, maximum=192000)
    output_volume: float = _setting(
        1.0, "Output Volume", "Gain applied to saved clips (1 = unchanged); loud peaks are clipped.",
        "slider", cli="--output-volume", column="right", minimum=0.0, maximum=2.0, step=0.01)
    autoregressive_model: str | None = _setting(
        None, "Autoregressive Model", "AR checkpoint to generate with; empty: the base model.",
        "dropdown", cli="--autoregressive-model", takes_effect=IMMEDIATE, column="right")
    whisper_backend: str = _setting(
        "openai-whisper", "Whisper Backend", "Speech recogniser used to prepare datasets.",
        "dropdown", cli="--whisper-backend", column="right", choices=WHISPER_BACKENDS)
    whisper_model: str = _setting(
        "base", "Whisper Model", "A Whisper size (larger is more accurate and slower), or the path of a "
        "downloaded model: an openai-whisper .pt file or a faster-whisper folder.",
        "dropdown", cli="--whisper-model", column="right", suggestions=WHISPER_MODELS)
    training_default_halfp: bool = _setting(
        False, "Training: Half Precision by default", "Initial value of the Training tab's Half Precision.",
        "checkbox", cli="--training-default-halfp", column="right")
    training_default_bnb: bool = _setting(
        True, "Training: BitsAndBytes by default", "Initial value of the Training tab's BitsAndBytes.",
        "checkbox", cli="--training-default-bnb", column="right")
    ray_address: str = _setting(
        "", "Ray Cluster Address", "Render project segments on a Ray cluster (ray://host:10001, host:6379, "
        "auto or local). Empty: on this machine, one worker per GPU.", "textbox", cli="--ray-address",
        takes_effect=RESTART, column="right", placeholder="ray://head-node:10001")
    ray_workers: int = _setting(
        2, "Ray Workers", "Render workers started on the Ray cluster (one GPU each when it has enough).",
        "number", cli="--ray-workers", takes_effect=RESTART, column="right", minimum=1, maximum=256)
    # fmt: on


def _knob(default: Any, label: str, widget: str, **hints: Any) -> Any:
    return field(default=default, metadata={"label": label, "widget": widget, **hints})


@dataclass(frozen=True)
class GenerateDefaults:
    """The Generate tab's values, restored at start-up and by Copy Settings / Reset to Default.

    `text` is the prompt as typed (never emotion-prefixed) and `seed` the requested seed (0 = random).
    """

    # fmt: off
    text: str = _knob("", "Prompt", "textbox", lines=4)
    delimiter: str = _knob("", "Line Delimiter", "textbox", placeholder="\\n",
                           help="Split the prompt here, one clip per piece; empty splits long text.")
    emotion: str = _knob("None", "Emotion", "radio", choices=EMOTIONS)
    custom_emotion: str = _knob("", "Custom Emotion + Prompt (if selected)", "textbox")
    voice: str = _knob("", "Voice", "dropdown")
    voice_chunks: int = _knob(1, "Voice Chunks", "slider", minimum=0, maximum=128, step=1,
                              help="Slices used to compute latents; 0 = automatic.")
    candidates: int = _knob(1, "Candidates", "slider", minimum=1, maximum=6, step=1)
    seed: int = _knob(0, "Seed", "number", minimum=0, maximum=2**32 - 1, help="0 = random.")
    preset: str | None = _knob(None, "Preset", "radio", choices=PRESET_LABELS)
    num_autoregressive_samples: int = _knob(128, "Samples", "slider", minimum=2, maximum=512, step=1)
    diffusion_iterations: int = _knob(128, "Iterations", "slider", minimum=1, maximum=512, step=1)
    temperature: float = _knob(0.2, "Temperature", "slider", minimum=0.01, maximum=1.0, step=0.01)
    breathing_room: int = _knob(8, "Pause Size", "slider", minimum=1, maximum=32, step=1)
    diffusion_sampler: str = _knob("P", "Diffusion Samplers", "radio", choices=SAMPLER_LABELS)
    half_precision: bool = _knob(False, "Half Precision", "checkbox")
    cond_free: bool = _knob(True, "Conditioning-Free", "checkbox")
    cvvp_weight: float = _knob(0.0, "CVVP Weight", "slider", minimum=0.0, maximum=1.0, step=0.01)
    top_p: float = _knob(0.8, "Top P", "slider", minimum=0.0, maximum=1.0, step=0.01)
    diffusion_temperature: float = _knob(1.0, "Diffusion Temperature", "slider", minimum=0.0,
                                         maximum=1.0, step=0.01)
    length_penalty: float = _knob(1.0, "Length Penalty", "slider", minimum=0.0, maximum=8.0, step=0.01)
    repetition_penalty: float = _knob(2.0, "Repetition Penalty", "slider", minimum=0.0, maximum=8.0,
                                      step=0.01)
    cond_free_k: float = _knob(2.0, "Conditioning-Free K", "slider", minimum=0.0, maximum=4.0, step=0.01)
    enable_redaction: bool = _knob(True, "Cut [Bracketed] Words", "checkbox",
                                   help="Cut [bracketed] words and the emotion prefix from the audio "
                                   "(needs the wav2vec2 aligner); off: they are spoken.")
    generation_mode: str = _knob("Standard", "Mode", "radio", choices=GENERATION_MODES,
                                 help="Fast: one sample, no diffusion, heard while it is made.")
    # fmt: on


@dataclass(frozen=True)
class FieldSpec:
    """One field's description, for building widgets and flags. Hints absent from the field are None."""

    name: str
    default: Any
    label: str
    help: str
    widget: str
    choices: tuple[Any, ...] | None
    minimum: float | None
    maximum: float | None
    step: float | None
    placeholder: str | None
    cli: str | None
    takes_effect: str
    requires_restart: bool
    column: str
    hints: dict[str, Any]


def field_specs(cls: type) -> list[FieldSpec]:
    """The fields of AppSettings or GenerateDefaults, in declaration (= UI) order."""
    specs = []
    for f in dataclasses.fields(cls):
        m = dict(f.metadata)
        specs.append(FieldSpec(
            name=f.name, default=f.default, label=m.pop("label", f.name), help=m.pop("help", ""),
            widget=m.pop("widget", "textbox"), choices=m.pop("choices", None),
            minimum=m.pop("minimum", None), maximum=m.pop("maximum", None), step=m.pop("step", None),
            placeholder=m.pop("placeholder", None), cli=m.pop("cli", None),
            takes_effect=m.pop("takes_effect", NEXT_USE), requires_restart=m.pop("requires_restart", False),
            column=m.pop("column", "left"), hints=m,
        ))  # fmt: skip
    return specs


def update_setting(value: S, name: str, new: Any) -> S:
    """A copy of `value` (AppSettings or GenerateDefaults) with one field changed, after checking it.

    Blank text for an optional text field means "not set" (None).

    Raises:
        SettingsError: unknown name, or a value of the wrong type or outside the range/choices.
    """
    fields_by_name = {f.name: f for f in dataclasses.fields(value)}
    f = fields_by_name.get(name)
    if f is None:
        raise SettingsError(f"There is no setting named '{name}'.")
    hint = typing.get_type_hints(type(value))[name]
    if isinstance(new, str) and not new.strip() and type(None) in typing.get_args(hint):
        new = None
    label = f.metadata.get("label", name)
    is_secret = f.metadata.get("widget") == "password"
    try:
        checked = check_value(f, hint, new)
    except ValueError as error:
        # never echo a password into a message (messages may reach a log)
        raise SettingsError(f"{label} {'must be text' if is_secret else error}.") from None
    if is_secret and isinstance(checked, str) and checked and not checked.strip():
        raise SettingsError(f"{label} cannot be only spaces. {BLANK_PASSWORD_HELP}")
    return dataclasses.replace(value, **{name: checked})


# Short aliases beside mrq's flag names, for the flags people type most.
CLI_ALIASES: dict[str, tuple[str, ...]] = {
    "device_override": ("--device",),
    "models_local_only": ("--models-local-only",),
    "embed_output_metadata": ("--embed-metadata",),
    "do_not_load_tts_on_startup": ("--do-not-load-tts-on-startup",),
    "delete_non_final_output": ("--delete-non-final-output",),
}


def add_setting_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add one flag per AppSettings field (names as mrq's UI had them) to `parser`.

    Flags default to "not given" (argparse.SUPPRESS), so only flags on the command line reach
    `apply_cli_overrides`. Booleans get `--flag` / `--no-flag`.
    """
    hints = typing.get_type_hints(AppSettings)
    for spec in field_specs(AppSettings):
        if spec.cli is None:
            continue
        base = [o for o in typing.get_args(hints[spec.name]) if o is not type(None)] or [hints[spec.name]]
        kind = base[0]
        text = f"{spec.label}: {spec.help} (default: {spec.default!r})".replace("%", "%%")
        kwargs: dict[str, Any] = {"dest": spec.name, "default": argparse.SUPPRESS, "help": text}
        if kind is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = kind
            if spec.choices is not None:
                kwargs["choices"] = spec.choices
        parser.add_argument(spec.cli, *CLI_ALIASES.get(spec.name, ()), **kwargs)
    return parser


def build_arg_parser() -> argparse.ArgumentParser:
    """A parser with one flag per setting (see `add_setting_arguments`); app.py may add its own."""
    parser = argparse.ArgumentParser(description="AI Voice Cloning web UI")
    return add_setting_arguments(parser)


def apply_cli_overrides(settings: AppSettings, namespace: argparse.Namespace) -> AppSettings:
    """`settings` with every flag given on the command line applied (for this run only).

    Attributes of `namespace` that are missing or None are left alone.

    Raises:
        SettingsError: a flag's value is outside the setting's range.
    """
    for spec in field_specs(AppSettings):
        given = getattr(namespace, spec.name, None)
        if given is not None:
            try:
                settings = update_setting(settings, spec.name, given)
            except SettingsError as error:
                raise SettingsError(f"{spec.cli}: {error}") from None
    return settings


# --- config/exec.json -------------------------------------------------------------------------

_MRQ_RENAMES = {
    "models-from-local-only": "models_local_only",
    "latents-lean-and-mean": "slim_latents",
    "defer-tts-load": "do_not_load_tts_on_startup",
    "prune-nonfinal-outputs": "delete_non_final_output",
}
_MRQ_WHISPER_BACKENDS = {"openai/whisper": "openai-whisper"}
_MRQ_CHUNK_RATE = 22050  # mrq's cond-latent-max-chunk-size counted samples of 22.05 kHz voice audio


def _settings_v0_to_v1(data: dict[str, Any], warnings: list[str]) -> dict[str, Any]:
    """mrq's exec.json (dashed keys, no schema_version) -> version 1 (field names)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        out[_MRQ_RENAMES.get(key, key.replace("-", "_"))] = value
    if out.get("sample_batch_size") is None:
        out.pop("sample_batch_size", None)
    if out.get("autoregressive_model") in ("auto", ""):
        out["autoregressive_model"] = None
    chunk = out.pop("cond_latent_max_chunk_size", None)
    if isinstance(chunk, (int, float)) and not isinstance(chunk, bool) and chunk > 0:
        out["latents_max_chunk_size"] = min(max(chunk / _MRQ_CHUNK_RATE, 1.0), 600.0)
    if out.pop("whisper_cpp", False):
        warnings.append("whisper.cpp is not supported; the openai-whisper backend is used instead.")
    backend = out.get("whisper_backend")
    if isinstance(backend, str) and backend not in WHISPER_BACKENDS:
        if backend in _MRQ_WHISPER_BACKENDS:
            out["whisper_backend"] = _MRQ_WHISPER_BACKENDS[backend]
        else:
            warnings.append(f"Whisper backend '{backend}' is not supported; using openai-whisper.")
            out.pop("whisper_backend")
    out.pop("os", None)  # mrq's unused --os flag
    return out


SETTINGS_SCHEMA = ConfigSchema(AppSettings, SETTINGS_VERSION, {0: _settings_v0_to_v1}, "settings file")


def load_settings(path: str | Path) -> LoadResult[AppSettings]:
    """Read config/exec.json (see `src.config_file.load_config` for the fallbacks and warnings)."""
    return load_config(path, SETTINGS_SCHEMA)


def save_settings(path: str | Path, settings: AppSettings) -> None:
    """Write config/exec.json atomically, tab-indented, with its schema_version."""
    save_config(path, settings, SETTINGS_VERSION)


# --- config/generate.json ---------------------------------------------------------------------

_GENERATE_DROPPED = ("time", "datetime", "model", "model_hash", "latents", "mic_audio", "experimentals")


def _generate_v0_to_v1(data: dict[str, Any], warnings: list[str]) -> dict[str, Any]:
    """mrq's generate.json (its metadata keys) -> version 1: custom prompt, flags, seed, plain text."""
    out = dict(data)
    if "prompt" in out:
        out["custom_emotion"] = out.pop("prompt") or ""
    flags = out.get("experimentals")
    if isinstance(flags, list):
        out["half_precision"] = "Half Precision" in flags
        out["cond_free"] = "Conditioning-Free" in flags
    if out.get("seed") is None:
        out.pop("seed", None)
    for key in _GENERATE_DROPPED:
        out.pop(key, None)
    for key in [k for k, v in out.items() if v is None]:
        out.pop(key)  # mrq wrote null for "not set": let the default apply
    if isinstance(out.get("text"), str):
        # mrq stored the emotion-prefixed line for single-line runs; reloading it doubled the prefix.
        out["text"] = strip_emotion_prefix(out["text"], out.get("emotion"), out.get("custom_emotion"))
    return out


GENERATE_SCHEMA = ConfigSchema(GenerateDefaults, GENERATE_VERSION, {0: _generate_v0_to_v1}, "Generate file")


def load_generate_defaults(path: str | Path) -> LoadResult[GenerateDefaults]:
    """Read config/generate.json (same fallbacks and warnings as `load_settings`)."""
    return load_config(path, GENERATE_SCHEMA)


def save_generate_defaults(path: str | Path, values: GenerateDefaults) -> None:
    """Write config/generate.json atomically, tab-indented, with its schema_version."""
    save_config(path, values, GENERATE_VERSION)
