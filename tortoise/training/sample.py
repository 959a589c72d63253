"""Checkpoint samples: after each save, speak one fixed sentence with the new weights so a run can be
judged by ear. The trainer calls any `SampleFn`; `CheckpointSampler` is the default one (TextToSpeech).

The sample never holds a second autoregressive model: it speaks with the very module being trained (in
eval mode, gradients off, then put back), and loads only the decoder models (diffusion, CLVP, vocoder)
for the length of one sample, so the trainer's footprint grows by those alone and shrinks back after.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tortoise.audio import VOICE_SAMPLE_RATE, load_audio, save_wav
from tortoise.errors import GenerationCancelled
from tortoise.training.errors import TrainingError
from tortoise.training.memory import release_memory

log = logging.getLogger(__name__)

# (the model being trained, wav path to write, step, cancel) -> the written wav, or None when nothing was
# written. `cancel` returns True when the run is being stopped; the sample should then end at once.
SampleFn = Callable[[nn.Module, Path, int, Callable[[], bool]], Path | None]

SAMPLE_SEED = 0  # the same seed at every checkpoint, so samples differ only by the weights
MAX_VOICE_CLIPS = 3
# One candidate drawn one row at a time: a checkpoint sample is for listening, not for ranking, and the
# AR's KV cache at full size costs about 240 MB per row.
DEFAULT_OVERRIDES = {"num_autoregressive_samples": 1, "sample_batch_size": 1}
DECODER_FILES = {"diffusion_decoder": "diffusion_decoder.pth", "clvp2": "clvp2.pth", "vocoder": "vocoder.pth"}


class CheckpointSampler:
    """Default sample hook: TextToSpeech over the trained AR, with the voice's clips and a preset.

    Args:
        models_dir: folder of the official inference models (never downloads: offline).
        voice_clips: reference clips; the first MAX_VOICE_CLIPS are used.
        text: the sentence to speak.
        preset: a TorToiSe preset name.
        device: "auto", "cpu", "cuda", ... as TextToSpeech takes it.
        model_configs: registry name -> constructor overrides for the decoder models (empty = full size).
        overrides: GenerationOptions fields that win over the preset (and over DEFAULT_OVERRIDES).
    """

    def __init__(self, models_dir: Path, voice_clips: Sequence[Path], text: str, preset: str = "ultra_fast",
                 device: str = "auto", model_configs: dict[str, dict[str, Any]] | None = None,
                 overrides: dict[str, Any] | None = None):
        self.models_dir = Path(models_dir)
        self.voice_clips = [Path(c) for c in voice_clips[:MAX_VOICE_CLIPS]]
        self.text = text
        self.preset = preset
        self.device = device
        self.model_configs = {k: dict(v) for k, v in (model_configs or {}).items()}
        self.overrides = {**DEFAULT_OVERRIDES, **(overrides or {})}

    def check(self, model: nn.Module) -> None:
        """Refuse, before the first step, a trained AR the decoder models cannot follow.

        Reads only the shapes of the decoder checkpoints (memory-mapped), so it is cheap.

        Raises:
            TrainingError: a file is missing, or the AR's latent width does not match the diffusion
                decoder's; the message names both sizes.
        """
        path = self._file("diffusion_decoder")
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        try:
            latent_in = int(state["latent_conditioner.0.weight"].shape[1])
        except (KeyError, IndexError, TypeError, AttributeError) as e:
            raise TrainingError(f"{path} is not a TorToiSe diffusion decoder ({e}).") from e
        finally:
            del state
        width = int(model.model_dim)
        if width != latent_in:
            raise TrainingError(
                f"The model being trained has width {width}, but the diffusion decoder in {self.models_dir} "
                f"takes latents of width {latent_in}, so checkpoint samples cannot be rendered for this "
                "model size. Train the full-size model to hear samples, or turn samples off.")

    def __call__(self, model: nn.Module, wav_path: Path, step: int, cancel: Callable[[], bool]) -> Path:
        """Speak the sentence with `model` as it is now and write `wav_path`.

        The model's train/eval mode and every parameter's requires_grad are restored afterwards, also
        when the sample fails or is cancelled (GenerationCancelled propagates).
        """
        from tortoise.api import TextToSpeech, TTSModels
        from tortoise.device import resolve_device
        from tortoise.mel import load_mel_norms
        from tortoise.models import load
        from tortoise.tokenizer import VoiceBpeTokenizer

        flags = [p.requires_grad for p in model.parameters()]
        was_training = model.training
        decoders: dict[str, nn.Module] = {}
        tts = None
        try:
            for name in DECODER_FILES:  # loading takes a while: a stop in between ends the sample
                if cancel():
                    raise GenerationCancelled("The checkpoint sample was cancelled.")
                decoders[name] = load(name, self._file(name), **self.model_configs.get(name, {}))
            models = TTSModels(autoregressive=model, diffusion=decoders["diffusion_decoder"],
                               clvp=decoders["clvp2"], vocoder=decoders["vocoder"])
            tts = TextToSpeech(models, VoiceBpeTokenizer(self._file("tokenizer.json", named=True)),
                               load_mel_norms(self._file("mel_norms.pth", named=True)),
                               resolve_device(self.device))
            clips = [load_audio(c, VOICE_SAMPLE_RATE) for c in self.voice_clips]
            result = tts.tts(self.text, voice_samples=clips, preset=self.preset, seed=SAMPLE_SEED,
                             cancel=cancel, **self.overrides)
            save_wav(wav_path, result.waveforms[0], result.sample_rate)
        finally:
            model.train(was_training)
            for parameter, flag in zip(model.parameters(), flags):
                parameter.requires_grad_(flag)
            del tts, decoders
            release_memory()
        log.info("Checkpoint sample of step %d: %s", step, wav_path)
        return wav_path

    def _file(self, name: str, named: bool = False) -> Path:
        path = self.models_dir / (name if named else DECODER_FILES[name])
        if not path.is_file():
            raise TrainingError(f"Checkpoint samples need {path.name} in {self.models_dir}; it is missing. "
                                "Generate once in the app (which downloads it), or turn samples off.")
        return path

