"""`--overrides` (a YAML merged into train.yaml, e.g. tiny model sizes) and SIGTERM as a graceful stop
(the trainer saves a checkpoint after the current step and exits 0)."""

import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from tests.conftest import REPO_ROOT
from tests.tortoise.training.conftest import make_dataset, tiny_ar_config, write_yaml
from tortoise.training import checkpoint as ckpt
from tortoise.training import load_config, read_metrics
from tortoise.training.config import merge_mappings

ENV = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}


def test_merge_mappings_merges_nested_and_replaces_the_rest():
    base = {"a": {"b": 1, "c": {"d": 2}}, "e": [1, 2], "f": 3}
    changes = {"a": {"c": {"x": 9}, "b": None}, "e": [7], "g": {"h": 1}}
    assert merge_mappings(base, changes) == {
        "a": {"b": None, "c": {"d": 2, "x": 9}}, "e": [7], "f": 3, "g": {"h": 1}}  # fmt: skip
    assert base == {"a": {"b": 1, "c": {"d": 2}}, "e": [1, 2], "f": 3}  # not changed in place


def test_load_config_with_a_merge_overrides_model_sizes(tmp_path, tiny_files):
    path = write_yaml(make_dataset(tmp_path / "voice"), tiny_files)
    config = load_config(path, merge={"networks": {"gpt": {"kwargs": {"layers": 3}}},
                                      "train": {"niter": 7}})  # fmt: skip
    assert config.model_kwargs["layers"] == 3 and tiny_ar_config()["layers"] == 2
    assert config.model_kwargs["model_dim"] == tiny_ar_config()["model_dim"]
    assert config.iterations == 7 and config.batch_size == 2  # untouched keys stay


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_exits_cleanly(tmp_path, tiny_files):
    folder = make_dataset(tmp_path / "voice")
    config = write_yaml(folder, tiny_files, iterations=100000, save_freq=100000)
    overrides = tmp_path / "overrides.yaml"
    overrides.write_text(yaml.safe_dump({"train": {"niter": 50000}}))
    layout = ckpt.RunLayout(folder / "finetune")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tortoise.training", "--config", str(config), "--overrides", str(overrides)],
        cwd=REPO_ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        while not [r for r in read_metrics(layout.metrics_path) if r["type"] == "train"]:
            assert proc.poll() is None and time.monotonic() < deadline, "the trainer did not start"
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output[-2000:]
    assert "Stop requested: saving a checkpoint after the current step." in output
    records = read_metrics(layout.metrics_path)
    steps = [r["step"] for r in records if r["type"] == "train"]
    assert records[0]["steps"] == 50000  # the overrides file was applied
    assert layout.saved_steps() == [steps[-1]] and records[-1]["type"] == "end"


def _start_with_samples(tmp_path, tiny_files, **sample):
    from tests.tortoise.training.test_sample import tiny_decoders

    folder = make_dataset(tmp_path / "voice")
    config = write_yaml(folder, tiny_files, iterations=100000, save_freq=3)
    data = yaml.safe_load(config.read_text())
    data["path"]["models_dir"] = str(tmp_path / "models")
    configs = tiny_decoders(tmp_path / "models")
    data["ext"]["sample"] = {"enabled": True, "text": "Hi.", "model_configs": configs, **sample}
    config.write_text(yaml.safe_dump(data))
    proc = subprocess.Popen(
        [sys.executable, "-m", "tortoise.training", "--config", str(config)],
        cwd=REPO_ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    return proc, ckpt.RunLayout(folder / "finetune")


@pytest.mark.slow
def test_sigterm_during_a_sample_ends_the_run_within_10_s(tmp_path, tiny_files):
    # a sample long enough to be caught in the middle: many diffusion steps
    proc, layout = _start_with_samples(tmp_path, tiny_files,
                                       overrides={"diffusion_iterations": 4000, "max_mel_tokens": 16})
    try:
        deadline = time.monotonic() + 240
        while not [r for r in read_metrics(layout.metrics_path) if r["type"] == "sample_start"]:
            assert proc.poll() is None and time.monotonic() < deadline, "no sample started"
            time.sleep(0.1)
        time.sleep(1.0)  # well inside the diffusion loop
        proc.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        output, _ = proc.communicate(timeout=60)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and took < 10, (took, output[-2000:])
    assert "Stop requested: cancelling the checkpoint sample." in output
    assert layout.saved_steps() == [3] and not layout.sample_path(3).exists()
    from tortoise.models import load

    assert load("autoregressive", layout.gpt_path(3), **tiny_ar_config()) is not None  # complete and loadable
    assert layout.state_path(3).is_file()
