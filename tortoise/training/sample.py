"""Checkpoint samples: after each save, speak one fixed sentence with the new weights so a run can be
judged by ear. The trainer calls any `SampleFn`; `CheckpointSampler` is the default one (TextToSpeech).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from tortoise.audio import VOICE_SAMPLE_RATE, load_audio, save_wav

log = logging.getLogger(__name__)

# (gpt checkpoint path, wav path to write, step) -> the written wav, or None when nothing was written.
SampleFn = Callable[[Path, Path, int], Path | None]

SAMPLE_SEED = 0  # the same seed at every checkpoint, so samples differ only by the weights
MAX_VOICE_CLIPS = 3


class CheckpointSampler:
    """Default sample hook: TextToSpeech with the voice's clips and the ultra_fast preset.

    The diffusion decoder, CLVP and vocoder are loaded once, on the first checkpoint; each later
    checkpoint only swaps the autoregressive model, loaded from the file just written (which also
    proves the file loads).

    Args:
        models_dir: folder of the official inference models (never downloads: offline).
        voice_clips: reference clips; the first MAX_VOICE_CLIPS are used.
        text: the sentence to speak.
        preset: a TorToiSe preset name.
        device: "auto", "cpu", "cuda", ... as TextToSpeech takes it.
        model_kwargs: UnifiedVoice arguments of the trained model (empty = full size).
        overrides: GenerationOptions fields that win over the preset.
    """

    def __init__(self, models_dir: Path, voice_clips: Sequence[Path], text: str, preset: str = "ultra_fast",
                 device: str = "auto", model_kwargs: dict | None = None, overrides: dict | None = None):
        self.models_dir = Path(models_dir)
        self.voice_clips = [Path(c) for c in voice_clips[:MAX_VOICE_CLIPS]]
        self.text = text
        self.preset = preset
        self.device = device
        self.model_kwargs = dict(model_kwargs or {})
        self.overrides = dict(overrides or {})
        self._tts = None
        self._clips: list[torch.Tensor] = []

    def __call__(self, gpt_path: Path, wav_path: Path, step: int) -> Path:
        from tortoise import models as registry
        from tortoise.api import TextToSpeech

        if self._tts is None:
            self._tts = TextToSpeech.from_dir(self.models_dir, device=self.device,
                                              autoregressive_path=gpt_path, offline=True)
            self._clips = [load_audio(c, VOICE_SAMPLE_RATE) for c in self.voice_clips]
        else:
            ar = registry.load("autoregressive", gpt_path, **self.model_kwargs)
            self._tts.models.autoregressive = ar.requires_grad_(False).to(self._tts.plan.storage_device)
        result = self._tts.tts(self.text, voice_samples=self._clips, preset=self.preset, seed=SAMPLE_SEED,
                               **self.overrides)
        save_wav(wav_path, result.waveforms[0], result.sample_rate)
        log.info("Checkpoint sample of step %d: %s", step, wav_path)
        return wav_path
