"""The default checkpoint sample: TextToSpeech speaks the fixed sentence with each new checkpoint."""

import pytest
import soundfile as sf
import torch

from tests.conftest import speech_like
from tests.tortoise.training.conftest import tiny_ar_config
from tortoise.api import TextToSpeech, TTSModels
from tortoise.audio import VOICE_SAMPLE_RATE, save_wav
from tortoise.device import resolve_device
from tortoise.tokenizer import VoiceBpeTokenizer
from tortoise.training.sample import CheckpointSampler


@pytest.mark.filterwarnings("ignore:A candidate never produced a stop token")
def test_sampler_loads_each_checkpoint_and_writes_a_wav(tmp_path, tiny_models, tokenizer_path, monkeypatch):
    m = tiny_models
    built = []

    def from_dir(models_dir, **kwargs):
        built.append(kwargs)
        models = TTSModels(m.autoregressive, m.diffusion, m.clvp, m.vocoder)
        return TextToSpeech(models, VoiceBpeTokenizer(tokenizer_path), m.mel_norms, resolve_device("cpu"))

    monkeypatch.setattr(TextToSpeech, "from_dir", staticmethod(from_dir))
    clip = tmp_path / "clip.wav"
    save_wav(clip, speech_like(2.0, VOICE_SAMPLE_RATE, seed=3), VOICE_SAMPLE_RATE)
    sampler = CheckpointSampler(tmp_path / "models", [clip], "Hello there.", device="cpu",
                                model_kwargs=tiny_ar_config(),
                                overrides={"num_autoregressive_samples": 2, "diffusion_iterations": 3,
                                           "max_mel_tokens": 16})
    weights = {k: v.clone() for k, v in m.autoregressive.state_dict().items()}
    for step in (5, 10):
        torch.save(weights, tmp_path / f"{step}_gpt.pth")
        wav = sampler(tmp_path / f"{step}_gpt.pth", tmp_path / f"{step}_sample.wav", step)
        info = sf.info(wav)
        assert info.samplerate == 24000 and info.frames > 0
    assert len(built) == 1 and built[0]["autoregressive_path"] == tmp_path / "5_gpt.pth"
    assert built[0]["offline"] is True
