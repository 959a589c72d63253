"""Checkpoint samples inside a real tiny run (the default sampler over tiny decoder files), samples turned
off with a reason, and Stop during a sample or a save."""

import pytest
import torch

import tortoise.training.checkpoint as ckpt_module
from tests.tortoise.training.conftest import make_dataset, write_yaml
from tests.tortoise.training.test_sample import FAST, FILES, tiny_decoders
from tortoise.models import build, load
from tortoise.training import checkpoint as ckpt
from tortoise.training import load_config, read_metrics, train
from tortoise.training.control import SAMPLING, SaveAbandoned, StopControl
from tortoise.training.sample import CheckpointSampler

pytestmark = pytest.mark.filterwarnings("ignore:A candidate never produced a stop token")


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_files):
    root = tmp_path_factory.mktemp("samples")
    models = root / "models"
    configs = tiny_decoders(models)
    config = load_config(write_yaml(make_dataset(root / "voice"), tiny_files, iterations=4, save_freq=2,
                                    val_freq=100))
    config = config.replace(sample_enabled=True, models_dir=models, sample_model_configs=configs,
                            sample_text="Hi.", sample_overrides=FAST)
    return config, models


def _types(records):
    return [(r["type"], r.get("step")) for r in records if r["type"] in
            ("checkpoint", "sample_start", "sample", "samples_off")]


def test_the_default_sampler_writes_a_sample_at_each_save(setup, tmp_path):
    config, _ = setup
    config = config.replace(run_dir=tmp_path / "finetune")
    train(config)
    records = read_metrics(ckpt.RunLayout(config.run_dir).metrics_path)
    assert _types(records) == [("checkpoint", 2), ("sample_start", 2), ("sample", 2),
                               ("checkpoint", 4), ("sample_start", 4), ("sample", 4)]
    layout = ckpt.RunLayout(config.run_dir)
    assert all(layout.sample_path(step).is_file() for step in (2, 4))


def test_a_model_size_the_sampler_cannot_build_turns_samples_off_with_the_reason(setup, tmp_path):
    config, models = setup
    wrong = tmp_path / "models"
    configs = tiny_decoders(wrong)
    configs["diffusion_decoder"]["in_latent_channels"] = 48
    torch.save(build("diffusion_decoder", **configs["diffusion_decoder"]).state_dict(),
               wrong / FILES["diffusion_decoder"])
    config = config.replace(run_dir=tmp_path / "finetune", models_dir=wrong, sample_model_configs=configs)
    result = train(config)
    records = read_metrics(result.metrics_path)
    off = [r for r in records if r["type"] == "samples_off"]
    assert len(off) == 1 and "width 32" in off[0]["reason"] and "width 48" in off[0]["reason"]
    assert result.step == 4 and ckpt.RunLayout(config.run_dir).saved_steps() == [2, 4]  # training went on
    assert not [r for r in records if r["type"] == "sample_start"]


def test_stop_during_a_sample_cancels_it_and_ends_the_run(setup, tmp_path):
    config, models = setup
    config = config.replace(run_dir=tmp_path / "finetune")
    control = StopControl()
    clips = [config.train_list.parent / "audio" / "clip_00000.wav"]
    real = CheckpointSampler(models, clips, "Hello.", device="cpu", model_configs=config.sample_model_configs,
                             overrides=FAST)
    phases = []

    def sample(model, wav, step, cancel):
        phases.append(control.phase)
        control.request()  # Stop pressed while the sample renders
        return real(model, wav, step, cancel)

    result = train(config, sample_fn=sample, should_stop=control)
    assert phases == [SAMPLING] and result.was_stopped and result.step == 2
    layout = ckpt.RunLayout(config.run_dir)
    assert layout.saved_steps() == [2] and not layout.sample_path(2).exists()
    assert load("autoregressive", layout.gpt_path(2), **config.model_kwargs) is not None


def test_stop_during_a_save_abandons_it_and_keeps_the_previous_checkpoint(setup, tmp_path, monkeypatch):
    config, _ = setup
    config = config.replace(run_dir=tmp_path / "finetune", sample_enabled=False)
    control = StopControl()
    saves = []
    real_save = torch.save

    def save(obj, f, *args, **kwargs):
        saves.append(1)
        if len(saves) == 3:  # the second checkpoint's first file: Stop arrives in the middle of it
            control.request()
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(ckpt_module.torch, "save", save)
    with pytest.raises(SaveAbandoned):
        train(config, should_stop=control)
    layout = ckpt.RunLayout(config.run_dir)
    assert layout.saved_steps() == [2]
    assert not [p for p in layout.models_dir.iterdir() if p.name.endswith(".tmp")]
    assert load("autoregressive", layout.gpt_path(2), **config.model_kwargs) is not None
    assert ckpt.load_resume_state(layout.state_path(2), config.model_kwargs | {}, 10)["step"] == 2
