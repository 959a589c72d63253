"""Test doubles and builders for the app layer: a FakeTTS with TextToSpeech's interface, a tiny real
TextToSpeech from the golden test models, voice folders made of synthetic speech, an AppContext."""

from __future__ import annotations

import math
import threading
from pathlib import Path

import soundfile as sf
import torch

from src.context import AppContext
from src.paths import AppPaths
from src.settings import AppSettings
from tests.conftest import REFERENCE_DIR, speech_like
from tortoise.api import STAGES, TTSResult
from tortoise.audio import OUTPUT_SAMPLE_RATE, VOICE_SAMPLE_RATE, save_wav
from tortoise.device import resolve_device
from tortoise.errors import GenerationCancelled, InvalidInputError, TextTooLongError
from tortoise.latents import ConditioningLatents
from tortoise.options import GenerationOptions

# Keeps real tiny-model generations short: at most 20 AR codes (about 1 s of audio) per line.
TINY_TTS_OPTIONS = {"max_mel_tokens": 20}
FAKE_TEXT_LIMIT = (
    120  # characters; FakeTTS raises TextTooLongError above it (below the 300-char splitter)
)


class FakeAligner:
    """Stands in for wav2vec2 redaction: returns the audio unchanged."""

    def redact(self, audio, text, sample_rate):
        return audio


class FakeTTS:
    """TextToSpeech's interface without models: a tone per candidate, progress, cancel checks.

    Attributes:
        calls: (text, options dict) per tts() call.
        latents_calls: the clips passed to each get_conditioning_latents call.
        on_step: called before each fake diffusion step with (call index, step); tests press Stop.
    """

    def __init__(self, model_name: str = "fake_ar", model_hash: str = "fakehash", steps: int = 3):
        self.model_name = model_name
        self.model_hash = model_hash
        self.plan = resolve_device("cpu")
        self.steps = steps
        self.calls: list[tuple[str, dict]] = []
        self.latents_calls: list[list[torch.Tensor]] = []
        self.latents_kwargs: list[dict] = []
        self.on_step = None
        self.lock = threading.Lock()

    def encode_text(self, text: str) -> torch.Tensor:
        if not text.strip():
            raise InvalidInputError("The text is empty. Type something to say.")
        if len(text) > FAKE_TEXT_LIMIT:
            raise TextTooLongError(
                f"The text is {len(text)} characters long; split it into shorter lines."
            )
        return torch.zeros(1, 4, dtype=torch.long)

    def get_conditioning_latents(
        self, voice_samples, *, method="whole", max_chunk_s=10.0, slim=False, progress=None
    ) -> ConditioningLatents:
        self.latents_calls.append(list(voice_samples))
        self.latents_kwargs.append({"max_chunk_s": max_chunk_s, "slim": slim})
        total = float(sum(c.abs().sum() for c in voice_samples))
        g = torch.Generator().manual_seed(int(total * 1000) % (2**31))
        mels = None if slim else torch.randn(1, len(voice_samples), 80, 8, generator=g)
        if progress:
            progress("latents", 1, 1)
        return ConditioningLatents(
            torch.randn(1, 16, generator=g), torch.randn(1, 32, generator=g), mels
        )

    def get_random_conditioning_latents(self, generator=None) -> ConditioningLatents:
        return ConditioningLatents(
            torch.randn(1, 16, generator=generator),
            torch.randn(1, 32, generator=generator),
            None,
            "random",
        )

    def tts(
        self,
        text,
        voice_samples=None,
        conditioning_latents=None,
        preset=None,
        seed=None,
        progress=None,
        cancel=None,
        **overrides,
    ) -> TTSResult:
        options = GenerationOptions.from_preset(preset, **overrides)
        self.encode_text(text)
        with self.lock:
            self.calls.append((text, dict(overrides, seed=seed)))
            index = len(self.calls) - 1
        for stage in STAGES[1:4]:
            if progress:
                progress(stage, 1, 1)
        for step in range(1, self.steps + 1):
            if self.on_step:
                self.on_step(index, step)
            if cancel is not None and cancel():
                raise GenerationCancelled("Generation cancelled.")
            if progress:
                progress("diffusion", step, self.steps)
        waves = []
        for k in range(options.k):
            seconds = 0.2 + 0.01 * len(text)
            t = torch.arange(int(seconds * OUTPUT_SAMPLE_RATE)) / OUTPUT_SAMPLE_RATE
            waves.append((0.3 * torch.sin(2 * math.pi * (220 + 20 * k) * t)).reshape(1, -1))
            if progress:
                progress("vocoder", k + 1, options.k)
        return TTSResult(
            waves,
            options,
            int(seed if seed is not None else 1),
            notes=[],
            timings_s={"diffusion": 0.0},
        )


class TokenizedFakeTTS(FakeTTS):
    """A FakeTTS that measures text as TextToSpeech does: a real tokenizer and a token limit per pass,
    and optionally an aligner for [bracket] redaction (`load_aligner`, `redact`)."""

    def __init__(self, tokenizer, text_token_limit: int = 396, aligner=None, **kwargs):
        super().__init__(**kwargs)
        self.tokenizer = tokenizer
        self.text_token_limit = text_token_limit
        self.aligner = aligner
        self.redacted: list[str] = []

    def count_text_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text))

    def encode_text(self, text: str) -> torch.Tensor:
        if not text.strip():
            raise InvalidInputError("The text is empty. Type something to say.")
        count = self.count_text_tokens(text)
        if count > self.text_token_limit:
            raise TextTooLongError(f"The text is {count} tokens; one pass allows {self.text_token_limit}.")
        return torch.zeros(1, count + 1, dtype=torch.long)

    def load_aligner(self):
        if self.aligner is None:
            raise InvalidInputError("No aligner was given to this double.")
        load = getattr(self.aligner, "load", None)
        if load is not None:
            load()
        return self.aligner

    def redact(self, wav, text):
        self.redacted.append(text)
        return self.load_aligner().redact(wav, text, OUTPUT_SAMPLE_RATE)


def tiny_tts(tiny_models, tokenizer_path=REFERENCE_DIR / "tokenizer.json"):
    """A real TextToSpeech over the tiny golden models on the CPU (no downloads)."""
    from tortoise.api import TextToSpeech, TTSModels
    from tortoise.tokenizer import VoiceBpeTokenizer

    m = tiny_models
    models = TTSModels(
        m.autoregressive,
        m.diffusion,
        m.clvp,
        m.vocoder,
        cvvp=m.cvvp,
        rlg_auto=m.rlg_auto,
        rlg_diffuser=m.rlg_diffuser,
        hifidecoder=m.hifidecoder,
    )
    return TextToSpeech(
        models,
        VoiceBpeTokenizer(tokenizer_path),
        m.mel_norms,
        resolve_device("cpu"),
        aligner=FakeAligner(),
        model_name="tiny_autoregressive",
        model_hash="tiny0001",
    )


def make_voice(voices_dir: Path, name: str, seconds=(1.5, 2.0), seed: int = 0) -> Path:
    """voices/<name>/ with one speech-like WAV (22.05 kHz) per entry of `seconds`."""
    folder = Path(voices_dir) / name
    folder.mkdir(parents=True, exist_ok=True)
    for i, s in enumerate(seconds):
        save_wav(folder / f"clip{i + 1}.wav", speech_like(s, seed=seed + i), VOICE_SAMPLE_RATE)
    return folder


def write_silent_clip(path: Path, seconds: float = 1.0) -> Path:
    sf.write(
        path,
        torch.zeros(int(seconds * VOICE_SAMPLE_RATE)).numpy(),
        VOICE_SAMPLE_RATE,
        subtype="PCM_16",
    )
    return path


def write_corrupt_clip(path: Path) -> Path:
    path.write_bytes(b"RIFF\x10\x00\x00\x00WAVEnot really audio at all")
    return path


def make_context(
    root: Path, tts=None, *, settings: AppSettings | None = None, tts_options=None
) -> AppContext:
    """An AppContext on `root` whose engine returns `tts` (default: a FakeTTS)."""
    paths = AppPaths.from_root(root)
    paths.ensure()
    double = tts if tts is not None else FakeTTS()
    return AppContext(
        paths,
        settings or AppSettings(),
        tts_loader=lambda: double,
        tts_options=dict(tts_options or {}),
    )
