"""GenerationOptions and PRESETS: the one place for every generation knob, its range, default and meaning.

Names follow TorToiSe's `tts()` arguments exactly so that options, UI controls, metadata and the CLI map
one to one. Defaults equal the official `tts()` defaults; presets then override a few of them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from tortoise.errors import InvalidInputError

SAMPLERS = ("p", "ddim", "dpm++2m")

# Official presets (tts_with_preset): base settings first, then the per-preset values.
_PRESET_BASE: dict[str, Any] = {
    "temperature": 0.8,
    "length_penalty": 1.0,
    "repetition_penalty": 2.0,
    "top_p": 0.8,
    "cond_free_k": 2.0,
    "diffusion_temperature": 1.0,
}
PRESETS: dict[str, dict[str, Any]] = {
    "ultra_fast": {
        **_PRESET_BASE,
        "num_autoregressive_samples": 16,
        "diffusion_iterations": 30,
        "cond_free": False,
    },
    "fast": {**_PRESET_BASE, "num_autoregressive_samples": 96, "diffusion_iterations": 80},
    "standard": {**_PRESET_BASE, "num_autoregressive_samples": 256, "diffusion_iterations": 200},
    "high_quality": {**_PRESET_BASE, "num_autoregressive_samples": 256, "diffusion_iterations": 400},
}


def _knob(default: Any, doc: str, low: float | None = None, high: float | None = None) -> Any:
    return field(default=default, metadata={"doc": doc, "min": low, "max": high})


@dataclass(frozen=True)
class GenerationOptions:
    """Every knob of one generation. Build with `GenerationOptions.from_preset(...)` or directly.

    Groups follow the official `tts()` docstring: autoregressive sampling, ranking, diffusion, output.
    """

    # --- autoregressive sampling ---
    num_autoregressive_samples: int = _knob(
        512, "Candidates sampled from the AR model before ranking. More is better and slower.", 1, 4096
    )
    temperature: float = _knob(
        0.8, "Softmax temperature of the AR model; lower is more deterministic.", 0.01, 5.0
    )
    length_penalty: float = _knob(
        1.0, "Kept for parity; it has no effect when sampling (as in the official code)."
    )
    repetition_penalty: float = _knob(
        2.0, "Penalty for ids already present; higher reduces long silences and stutters.", 0.01, 20.0
    )
    top_p: float = _knob(
        0.8, "Nucleus sampling: keep the smallest set of codes whose probability exceeds P.", 0.0, 1.0
    )
    top_k: int = _knob(
        50, "Keep only the K most likely codes (50 is the HF default the official code used).", 0, 8194
    )
    max_mel_tokens: int = _knob(
        500, "Longest output in AR codes (each code is 1024 samples at 22.05 kHz).", 1, 600
    )
    use_kv_mel_offset: bool = _knob(
        True, "Official kv-cache mel positions (+1 after the start token). False gives positions 0,1,2,..."
    )
    sample_batch_size: int = _knob(0, "AR candidates sampled at once; 0 picks one from free memory.", 0, 512)
    # --- ranking ---
    cvvp_amount: float = _knob(0.0, "Weight of CVVP in the ranking (0 = CLVP only, 1 = CVVP only).", 0.0, 1.0)
    k: int = _knob(1, "Best candidates returned after ranking.", 1, 64)
    # --- diffusion ---
    diffusion_iterations: int = _knob(100, "Diffusion steps; more is higher quality and slower.", 1, 4000)
    sampler: str = _knob("p", "Diffusion sampler: p (ancestral), ddim, or dpm++2m.")
    cond_free: bool = _knob(
        True, "Conditioning-free guidance: sharper, more expressive audio; 2x diffusion cost."
    )
    cond_free_k: float = _knob(
        2.0, "Strength of conditioning-free guidance, ramped over the steps.", 0.0, 20.0
    )
    diffusion_temperature: float = _knob(
        1.0, "Scale of the initial diffusion noise; 0 gives a mean-like output.", 0.0, 2.0
    )
    breathing_room: int = _knob(
        8, "Pause size: a run of more than this many calm (silence) codes ends the clip.", 1, 64
    )
    # --- text ---
    enable_redaction: bool = _knob(True, "Cut [bracketed] text from the audio after generation.")

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise InvalidInputError(
                f"Unknown sampler '{self.sampler}'. Choose one of: {', '.join(SAMPLERS)}."
            )
        for f in dataclasses.fields(self):
            low, high = f.metadata.get("min"), f.metadata.get("max")
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if (low is not None and value < low) or (high is not None and value > high):
                raise InvalidInputError(f"{f.name} = {value} is out of range [{low}, {high}].")
        if self.k > self.num_autoregressive_samples:
            raise InvalidInputError(
                f"k = {self.k} best candidates requested but only "
                f"{self.num_autoregressive_samples} are sampled."
            )

    @classmethod
    def from_preset(cls, preset: str | None = None, **overrides: Any) -> GenerationOptions:
        """Preset values (if any), then explicit overrides. Unknown names raise InvalidInputError."""
        values: dict[str, Any] = {}
        if preset is not None:
            key = normalize_preset_name(preset)
            values.update(PRESETS[key])
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise InvalidInputError(f"Unknown generation option(s): {', '.join(unknown)}.")
        values.update({k: v for k, v in overrides.items() if v is not None})
        if "sampler" in values:
            values["sampler"] = normalize_sampler_name(values["sampler"])
        return cls(**values)

    def replace(self, **changes: Any) -> GenerationOptions:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def normalize_preset_name(preset: str) -> str:
    """Accept 'Ultra Fast', 'ultra_fast', 'ultra-fast'... and return the PRESETS key."""
    key = preset.strip().lower().replace(" ", "_").replace("-", "_")
    if key not in PRESETS:
        raise InvalidInputError(f"Unknown preset '{preset}'. Choose one of: {', '.join(PRESETS)}.")
    return key


def normalize_sampler_name(sampler: str) -> str:
    """Accept 'P', 'DDIM', 'DPM++2M' (UI spellings) and return the SAMPLERS key."""
    key = str(sampler).strip().lower().replace(" ", "")
    if key not in SAMPLERS:
        raise InvalidInputError(f"Unknown sampler '{sampler}'. Choose one of: {', '.join(SAMPLERS)}.")
    return key
