"""In-process training runs of the tiny model: loss, checkpoints, keep-X, samples, resume, bad input."""

import math

import pytest
import torch

from tests.tortoise.training.conftest import make_dataset, tiny_ar_config, write_yaml
from tortoise.audio import save_wav
from tortoise.errors import WeightsError
from tortoise.models import build, load
from tortoise.training import DatasetError, ResumeError, TrainingError, load_config, read_metrics, train
from tortoise.training import checkpoint as ckpt
from tortoise.training.config import resolved_model_config
from tortoise.training.objective import LRSchedule, TrainingForward


@pytest.fixture(scope="module")
def base_config(tmp_path_factory, tiny_files):
    """The 4-clip dataset (its DVAE code cache shared by every test here) and its train.yaml."""
    folder = make_dataset(tmp_path_factory.mktemp("data") / "voice")
    return load_config(write_yaml(folder, tiny_files, iterations=30, save_freq=5, keep_states=2,
                                  milestones=(20,), val_freq=10))


@pytest.fixture(scope="module")
def finished(base_config, tmp_path_factory):
    calls = []

    def sample(model, wav_path, step, cancel):
        assert not cancel()
        calls.append((model, step))
        torch.manual_seed(1234)  # a real sampler reseeds; the trainer must restore its generators
        save_wav(wav_path, torch.zeros(1, 2400), 24000)
        return wav_path

    config = base_config.replace(run_dir=tmp_path_factory.mktemp("run") / "finetune")
    result = train(config, sample_fn=sample)
    return config, result, read_metrics(result.metrics_path), calls


def _train_records(records):
    return [r for r in records if r["type"] == "train"]


def test_loss_falls_over_30_steps(finished):
    _, result, records, _ = finished
    losses = [r["loss_gpt_total"] for r in _train_records(records)]
    assert result.step == 30 and len(losses) == 30
    assert sum(losses[-3:]) / 3 < 0.8 * sum(losses[:3]) / 3


def test_metrics_records(finished):
    _, _, records, _ = finished
    train_records = _train_records(records)
    assert [r["step"] for r in train_records] == list(range(1, 31))
    for key in ("loss_text_ce", "loss_mel_ce", "loss_gpt_total", "lr", "grad_norm", "epoch", "epoch_progress",
                "it_s", "steps", "skipped"):
        assert key in train_records[0]
    assert train_records[-1]["epoch_progress"] == 15.0
    assert [r["lr"] for r in train_records[17:20]] == pytest.approx([1e-3, 5e-4, 5e-4])  # milestone 20
    assert [r["step"] for r in records if r["type"] == "val"] == [10, 20, 30]
    assert [r["step"] for r in records if r["type"] == "checkpoint"] == [5, 10, 15, 20, 25, 30]
    assert records[0]["type"] == "start" and records[-1]["type"] == "end"


def test_checkpoint_loads_as_the_autoregressive_model(finished):
    _, result, _, _ = finished
    model = load("autoregressive", result.last_checkpoint, **tiny_ar_config())
    assert set(torch.load(result.last_checkpoint, weights_only=True)) == set(model.state_dict())


def test_keep_x_and_samples_next_to_checkpoints(finished):
    config, _, records, calls = finished
    layout = ckpt.RunLayout(config.run_dir)
    assert layout.saved_steps() == [25, 30]
    assert [step for _, step in calls] == [5, 10, 15, 20, 25, 30]
    assert all(layout.sample_path(step).is_file() for _, step in calls)
    assert [r["sample"] for r in records if r["type"] == "sample"][-1] == str(layout.sample_path(30))
    assert [r["step"] for r in records if r["type"] == "sample_start"] == [5, 10, 15, 20, 25, 30]
    assert all(isinstance(model, torch.nn.Module) for model, _ in calls)  # the trained module, no file


def test_resume_continues_at_the_right_step_lr_and_weights(base_config, tmp_path):
    config = base_config.replace(run_dir=tmp_path / "finetune", iterations=8, save_checkpoint_freq=4,
                                 keep_states=0, lr_milestones=(6,), sample_enabled=False)
    train(config)
    first = _train_records(read_metrics(config.run_dir / "metrics.jsonl"))
    resumed = train(config.replace(resume_state=config.run_dir / "training_state/4.state"))
    records = read_metrics(resumed.metrics_path)
    starts = [r for r in records if r["type"] == "start"]
    assert starts[-1]["step"] == 4 and starts[-1]["resumed_from"].endswith("4.state")
    again = _train_records(records)
    assert [r["step"] for r in again] == list(range(1, 9))
    assert [r["lr"] for r in again[4:]] == pytest.approx([LRSchedule(1e-3, milestones=(6,)).lr_at(s)
                                                          for s in range(5, 9)])
    # same data order, same crops (restored generators): the resumed steps repeat the original ones
    assert [r["loss_gpt_total"] for r in again[4:]] == pytest.approx([r["loss_gpt_total"] for r in first[4:]],
                                                                     rel=1e-4)


def test_stop_request_saves_and_ends(base_config, tmp_path):
    config = base_config.replace(run_dir=tmp_path / "finetune", sample_enabled=False)
    steps = []
    result = train(config, on_record=lambda r: steps.append(r.get("step")),
                   should_stop=lambda: len([s for s in steps if s]) >= 3)
    assert result.was_stopped and result.step == 3 and ckpt.RunLayout(config.run_dir).saved_steps() == [3]


def test_fresh_run_archives_the_previous_folder(base_config, tmp_path):
    config = base_config.replace(run_dir=tmp_path / "finetune", iterations=2, sample_enabled=False)
    train(config)
    train(config)
    assert len(list(tmp_path.glob("finetune_archived_*"))) == 1


def test_one_clip_dataset_is_rejected(tiny_files, tmp_path):
    config = load_config(write_yaml(make_dataset(tmp_path / "one", count=1), tiny_files, batch_size=1))
    with pytest.raises(DatasetError, match="1 usable clip.*at least 2"):
        train(config)


def test_batch_larger_than_dataset_is_rejected(base_config, tmp_path):
    with pytest.raises(DatasetError, match="Batch size 8 is larger than the 4 usable clips"):
        train(base_config.replace(run_dir=tmp_path / "run", batch_size=8))


def test_missing_and_mismatched_resume_states(base_config, tmp_path):
    config = base_config.replace(run_dir=tmp_path / "finetune", iterations=2, save_checkpoint_freq=1,
                                 sample_enabled=False)
    with pytest.raises(ResumeError, match="does not exist"):
        train(config.replace(resume_state=tmp_path / "nope.state"))
    train(config)
    state = config.run_dir / "training_state/1.state"
    with pytest.raises(ResumeError, match="different model"):
        train(config.replace(resume_state=state, model_kwargs={**config.model_kwargs, "max_text_tokens": 41}))


def test_source_model_with_wrong_keys(base_config, tmp_path, tiny_files):
    weights = torch.load(tiny_files["source"], weights_only=True)
    weights.pop("mel_head.weight")
    weights["extra.weight"] = torch.zeros(1)
    torch.save(weights, tmp_path / "bad.pth")
    with pytest.raises(WeightsError, match="(?s)missing keys: mel_head.weight.*unexpected keys: extra"):
        train(base_config.replace(run_dir=tmp_path / "run", source_model=tmp_path / "bad.pth"))
    with pytest.raises(TrainingError, match="does not exist"):
        train(base_config.replace(run_dir=tmp_path / "run", source_model=tmp_path / "none.pth"))


def test_disk_full_during_a_save_keeps_the_previous_checkpoint(base_config, tmp_path, monkeypatch):
    config = base_config.replace(run_dir=tmp_path / "finetune", iterations=6, save_checkpoint_freq=2,
                                 sample_enabled=False)
    real_save, saves = torch.save, []

    def save(obj, f):
        saves.append(1)
        if len(saves) > 2:  # the second checkpoint (gpt + state per checkpoint)
            f.write(b"half")
            raise OSError(28, "No space left on device")
        real_save(obj, f)

    monkeypatch.setattr(ckpt.torch, "save", save)
    with pytest.raises(TrainingError, match="step 4: the disk is full.*step 2 is intact"):
        train(config)
    monkeypatch.undo()
    layout = ckpt.RunLayout(config.run_dir)
    assert layout.saved_steps() == [2]
    load("autoregressive", layout.gpt_path(2), **tiny_ar_config())
    model_config = resolved_model_config(config.model_kwargs)
    assert ckpt.load_resume_state(layout.state_path(2), model_config, 6)["step"] == 2


def test_nan_losses_are_skipped_then_abort(base_config, tmp_path, monkeypatch):
    real_forward, calls = TrainingForward.forward, []

    def flaky(self, *args, **kwargs):
        calls.append(1)
        loss_text, loss_mel = real_forward(self, *args, **kwargs)
        return loss_text, loss_mel * (math.nan if len(calls) in (3, 4) else 1.0)

    monkeypatch.setattr(TrainingForward, "forward", flaky)
    config = base_config.replace(run_dir=tmp_path / "a", iterations=6, sample_enabled=False)
    records = _train_records(read_metrics(train(config).metrics_path))
    assert [r["skipped"] for r in records] == [False, False, True, True, False, False]
    assert records[2]["loss_gpt_total"] is None and math.isfinite(records[4]["loss_gpt_total"])

    monkeypatch.setattr(TrainingForward, "forward",
                        lambda self, *a, **k: tuple(x * math.nan for x in real_forward(self, *a, **k)))
    with pytest.raises(TrainingError, match="NaN or infinite for 10 steps in a row"):
        train(config.replace(run_dir=tmp_path / "b", iterations=30))


def test_random_init_without_source_model(base_config, tmp_path):
    result = train(base_config.replace(run_dir=tmp_path / "r", source_model=None, iterations=1,
                                       sample_enabled=False))
    assert set(torch.load(result.last_checkpoint, weights_only=True)) == set(
        build("autoregressive", **tiny_ar_config()).state_dict())


def test_bf16_autocast_and_loader_workers_on_cpu(base_config, tmp_path):
    result = train(base_config.replace(run_dir=tmp_path / "bf16", iterations=2, use_bf16=True, workers=1,
                                       gradient_accumulation=2, sample_enabled=False))
    records = _train_records(read_metrics(result.metrics_path))
    assert len(records) == 2 and all(math.isfinite(r["loss_gpt_total"]) for r in records)


def test_fine_tuning_a_checkpoint_of_the_run_folder_it_archives(base_config, tmp_path):
    config = base_config.replace(run_dir=tmp_path / "finetune", iterations=2, sample_enabled=False)
    first = train(config)
    second = train(config.replace(source_model=first.last_checkpoint))  # finetune/ is archived first
    assert second.step == 2 and len(list(tmp_path.glob("finetune_archived_*"))) == 1
