"""The default checkpoint sample: the trained AR itself speaks the fixed sentence, with the decoder models
loaded from real (tiny) files for one sample only; a model size the decoders cannot follow is refused."""

import shutil

import pytest
import soundfile as sf
import torch

import tortoise.models as registry
from tests.conftest import REFERENCE_DIR, load_golden, speech_like
from tests.tortoise.training.conftest import tiny_ar_config
from tortoise.audio import VOICE_SAMPLE_RATE, save_wav
from tortoise.errors import GenerationCancelled
from tortoise.training.errors import TrainingError
from tortoise.training.sample import CheckpointSampler

GOLDEN = {"diffusion_decoder": "diffusion.pt", "clvp2": "clvp.pt", "vocoder": "vocoder.pt"}
FILES = {"diffusion_decoder": "diffusion_decoder.pth", "clvp2": "clvp2.pth", "vocoder": "vocoder.pth"}
FAST = {"diffusion_iterations": 3, "max_mel_tokens": 16}


def tiny_decoders(folder):
    """models/ with the tiny golden diffusion decoder, CLVP and vocoder as files, tokenizer and norms."""
    folder.mkdir(parents=True, exist_ok=True)
    configs = {}
    for name, golden in GOLDEN.items():
        g = load_golden(golden)
        torch.save(g["state_dict"], folder / FILES[name])
        configs[name] = dict(g["config"])
    for name in ("tokenizer.json", "mel_norms.pth"):
        shutil.copy(REFERENCE_DIR / name, folder / name)
    return configs


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    return folder, tiny_decoders(folder)


@pytest.fixture
def clip(tmp_path):
    path = tmp_path / "clip.wav"
    save_wav(path, speech_like(2.0, VOICE_SAMPLE_RATE, seed=3), VOICE_SAMPLE_RATE)
    return path


def trained_ar():
    g = load_golden("autoregressive.pt")
    return registry.load("autoregressive", g["state_dict"], **g["config"]).train().requires_grad_(True)


@pytest.mark.filterwarnings("ignore:A candidate never produced a stop token")
def test_sample_speaks_with_the_trained_model_and_loads_no_second_ar(models_dir, clip, tmp_path, monkeypatch):
    folder, configs = models_dir
    model = trained_ar()
    loaded = []
    real_load = registry.load
    monkeypatch.setattr(registry, "load",
                        lambda name, *a, **k: loaded.append(name) or real_load(name, *a, **k))
    model.text_embedding.weight.requires_grad_(False)  # a frozen parameter stays frozen
    sampler = CheckpointSampler(folder, [clip], "Hello there.", device="cpu", model_configs=configs,
                                overrides=FAST)
    sampler.check(model)
    wavs = [sampler(model, tmp_path / f"{step}_sample.wav", step, lambda: False) for step in (5, 10)]
    for wav in wavs:
        info = sf.info(wav)
        assert info.samplerate == 24000 and info.frames > 0
    assert "autoregressive" not in loaded and loaded.count("diffusion_decoder") == 2  # reloaded per sample
    assert model.training and model.text_embedding.weight.requires_grad is False
    assert all(p.requires_grad for n, p in model.named_parameters() if n != "text_embedding.weight")
    # the sample follows the weights: changed weights give a different sample from the same seed
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    changed = sampler(model, tmp_path / "15_sample.wav", 15, lambda: False)
    assert not torch.equal(torch.from_numpy(sf.read(changed)[0]), torch.from_numpy(sf.read(wavs[1])[0]))


def test_a_cancelled_sample_restores_the_model(models_dir, clip, tmp_path):
    folder, configs = models_dir
    model = trained_ar()
    sampler = CheckpointSampler(folder, [clip], "Hello there.", device="cpu", model_configs=configs,
                                overrides=FAST)
    with pytest.raises(GenerationCancelled):
        sampler(model, tmp_path / "5_sample.wav", 5, lambda: True)
    assert model.training and all(p.requires_grad for p in model.parameters())
    assert not (tmp_path / "5_sample.wav").exists()


def test_a_model_size_the_decoders_cannot_follow_is_refused_up_front(models_dir, clip):
    folder, configs = models_dir
    wider = registry.build("autoregressive", **{**tiny_ar_config(), "model_dim": 48})
    sampler = CheckpointSampler(folder, [clip], "Hello.", device="cpu", model_configs=configs)
    with pytest.raises(TrainingError, match="width 48.*latents of width 32.*turn samples off"):
        sampler.check(wider)


def test_missing_decoder_files_are_named(tmp_path, clip):
    sampler = CheckpointSampler(tmp_path / "empty", [clip], "Hello.", device="cpu")
    with pytest.raises(TrainingError, match="diffusion_decoder.pth.*missing"):
        sampler.check(trained_ar())
