"""train.yaml -> TrainerConfig: the file the Training tab writes, DLAS names, defaults and bad files."""

import pytest

from src.training.finetune import TrainingConfig, write_training_files
from tests.tortoise.training.conftest import make_dataset
from tortoise.models import build
from tortoise.training import TrainingError, load_config
from tortoise.training.config import model_kwargs_from_dlas


def test_reads_the_yaml_the_training_tab_writes(tmp_path):
    folder = make_dataset(tmp_path / "voice")
    saved = write_training_files(folder, TrainingConfig(voice="voice", epochs=10, batch_size=2,
                                                        gradient_accumulation_size=1, keep_states=3,
                                                        lr_schedule=(2, 4), use_bitsandbytes=False))
    config = load_config(saved.yaml_path)
    schedule = saved.schedule
    assert config.train_list == folder / "train.txt" and config.run_dir == folder / "finetune"
    assert (config.batch_size, config.gradient_accumulation) == (saved.config.batch_size,
                                                                 saved.config.gradient_accumulation_size)
    assert config.iterations == schedule.iterations and config.lr_milestones == schedule.lr_milestones
    assert config.save_checkpoint_freq == schedule.save_checkpoint_freq and config.keep_states == 3
    assert (config.learning_rate, config.betas, config.weight_decay) == (1e-5, (0.9, 0.96), 0.01)
    assert (config.text_loss_weight, config.mel_loss_weight, config.clip_grad_norm) == (0.01, 1.0, 4.0)
    assert config.validation_enabled and config.validation_list == folder / "validation.txt"
    assert config.use_gradient_checkpointing and not config.tortoise_compat and config.source_model is None
    with_meta = {k: v.shape for k, v in build("autoregressive", **config.model_kwargs).state_dict().items()}
    assert with_meta == {k: v.shape for k, v in build("autoregressive").state_dict().items()}


def test_dlas_text_token_count_maps_to_tortoise():
    assert model_kwargs_from_dlas({"number_text_tokens": 256, "start_text_token": 255, "checkpointing": True,
                                   "tortoise_compat": True, "layers": 2}) == {
        "number_text_tokens": 255, "start_text_token": 255, "layers": 2}


@pytest.mark.parametrize("text, match", [
    (None, "not found"), ("a: [", "cannot be read"), ("- 1", "not a YAML mapping"),
    ("train: {niter: 5}", "datasets.train.path"), ("datasets: {train: {path: t.txt}}", "train.niter"),
    ("datasets: {train: {path: t.txt, batch_size: 0}}\ntrain: {niter: 5}", "batch_size=0"),
])
def test_bad_files_say_what_is_wrong(tmp_path, text, match):
    path = tmp_path / "train.yaml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(TrainingError, match=match):
        load_config(path)
