"""The run's memory estimate: its parts at full size, and what the trainer lowers or refuses when the
estimate does not fit the free memory (faked smaller than it is)."""

import pytest

import tortoise.training.memory as memory
import tortoise.training.trainer as trainer_module
from tests.tortoise.training.conftest import make_dataset, write_yaml
from tortoise.training import TrainingError, load_config, read_metrics, train
from tortoise.training.memory import GB, count_parameters, estimate_run_memory


def test_full_size_parts_follow_the_parameter_count():
    params, layers, width = count_parameters({})
    assert (layers, width) == (30, 1024) and 400e6 < params < 450e6
    e = estimate_run_memory({}, batch_size=1, longest_codes=216, longest_text=120, workers=2, sample=True)
    assert e.weights == e.gradients == 4 * params and e.optimizer == 8 * params
    assert e.workers == 2 * memory.PER_WORKER and e.sample > 2 * GB
    assert e.peak == max(e.training_peak, e.sample_peak)
    assert e.sample_peak < e.training_peak + e.sample  # the sample needs no gradients and no second AR
    bigger = estimate_run_memory({}, batch_size=4, longest_codes=216, longest_text=120, workers=2,
                                 sample=True)
    assert bigger.activations > 3.5 * e.activations
    eight_bit = estimate_run_memory({}, batch_size=1, longest_codes=216, longest_text=120, workers=0,
                                    sample=False, eight_bit_adam=True)
    assert eight_bit.optimizer == 2 * params and eight_bit.sample == 0 and eight_bit.workers == 0
    assert "weights 1.6 GB" in e.describe() and e.describe().startswith("about ")


@pytest.fixture
def config(tmp_path, tiny_files):
    return load_config(write_yaml(make_dataset(tmp_path / "voice"), tiny_files, iterations=2, save_freq=100,
                                  batch_size=2)).replace(workers=2)


def test_workers_are_lowered_when_they_do_not_fit(config, monkeypatch):
    monkeypatch.setattr(memory, "PER_WORKER", 100 * GB)
    monkeypatch.setattr(trainer_module, "available_memory", lambda device: 8 * GB)
    result = train(config)
    note = [r for r in read_metrics(result.metrics_path) if r["type"] == "memory"][0]
    assert note["changes"] == ["data-loader workers 2 -> 0"] and note["estimate"] <= note["available"]
    assert result.step == 2


def test_a_batch_that_cannot_fit_is_refused_with_the_batch_that_would(config, monkeypatch):
    monkeypatch.setattr(memory, "ACTIVATION_FACTOR", 3e8)  # about 1 GB of activations per clip here
    one = estimate_run_memory(config.model_kwargs, batch_size=1, longest_codes=50, longest_text=60, workers=0,
                              sample=False)
    monkeypatch.setattr(trainer_module, "available_memory", lambda device: int((one.peak + 0.5 * GB) / 0.9))
    with pytest.raises(TrainingError, match=r"This run needs about .* GB \(weights .*activations.*Lower "
                                            r"Batch Size to 1 \(raise Gradient Accumulation"):
        train(config)


def test_a_save_that_may_not_fit_on_the_disk_is_warned_about(config, monkeypatch):
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(trainer_module.shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 1000, 1000))
    result = train(config.replace(save_checkpoint_freq=1, keep_states=0))
    warnings = [r for r in read_metrics(result.metrics_path) if r["type"] == "disk"]
    assert [r["step"] for r in warnings] == [1, 2]
    assert warnings[0]["needed"] > warnings[0]["free"] == 1000
    assert "Keep Previous States is 0" in warnings[0]["message"] and "stays intact" in warnings[0]["message"]
    assert result.step == 2  # only a warning: the (real) disk had room
