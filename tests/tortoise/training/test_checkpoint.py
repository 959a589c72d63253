"""Checkpoint files: official key set, atomic saves under a full disk, keep-X, archiving, resume checks."""

import errno
import json

import pytest
import torch

from tests.conftest import REFERENCE_DIR
from tortoise.models import build
from tortoise.training import checkpoint as ckpt
from tortoise.training.errors import ResumeError, TrainingError


@pytest.fixture
def tiny_ar(golden):
    return build("autoregressive", **golden("autoregressive.pt")["config"])


def _state(step, config=None):
    return {"format_version": ckpt.STATE_FORMAT_VERSION, "step": step, "epoch": 0, "batch_in_epoch": step,
            "model_config": config or {"layers": 2}, "optimizer": {}}


def test_full_size_keys_equal_the_official_manifest():
    manifest = json.loads((REFERENCE_DIR / "manifests" / "autoregressive.json").read_text())["state_dict"]
    with torch.device("meta"):
        model = build("autoregressive")
    shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert len(shapes) == 410 and shapes == manifest


def test_gpt_file_is_flat_fp32_with_the_model_keys(tmp_path, tiny_ar):
    layout = ckpt.RunLayout(tmp_path / "run")
    tiny_ar.half()
    path = ckpt.save_checkpoint(layout, 5, tiny_ar, _state(5))
    saved = torch.load(path, weights_only=True)
    assert list(saved) == list(tiny_ar.state_dict())
    assert all(v.dtype == torch.float32 for v in saved.values())
    assert path == tmp_path / "run/models/5_gpt.pth" and layout.state_path(5).is_file()
    assert not list(layout.models_dir.glob(".*tmp"))


def test_disk_full_while_saving_keeps_the_previous_checkpoint(tmp_path, tiny_ar, monkeypatch):
    layout = ckpt.RunLayout(tmp_path / "run")
    ckpt.save_checkpoint(layout, 10, tiny_ar, _state(10))
    before = layout.gpt_path(10).read_bytes(), layout.state_path(10).read_bytes()

    def full_disk(obj, f):
        f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ckpt.torch, "save", full_disk)
    with pytest.raises(TrainingError, match="disk is full.*step 10 is intact"):
        ckpt.save_checkpoint(layout, 20, tiny_ar, _state(20))
    assert (layout.gpt_path(10).read_bytes(), layout.state_path(10).read_bytes()) == before
    assert not layout.gpt_path(20).exists() and not layout.state_path(20).exists()
    assert sorted(p.name for p in layout.models_dir.iterdir()) == ["10_gpt.pth"]
    assert sorted(p.name for p in layout.state_dir.iterdir()) == ["10.state"]


@pytest.mark.parametrize("keep", [0, 1, 2, 3])
def test_keep_x_keeps_exactly_x(tmp_path, keep):
    layout = ckpt.RunLayout(tmp_path)
    layout.create()
    for step in (5, 10, 15, 20):
        layout.gpt_path(step).write_bytes(b"x")
        layout.state_path(step).write_bytes(b"x")
        layout.sample_path(step).write_bytes(b"x")
    ckpt.prune_checkpoints(layout, keep)
    expected = [5, 10, 15, 20] if keep == 0 else [5, 10, 15, 20][-keep:]
    assert layout.saved_steps() == expected
    assert len(list(layout.models_dir.glob("*_sample.wav"))) == 4


def test_archive_renames_a_used_run_folder(tmp_path):
    run = tmp_path / "finetune"
    assert ckpt.archive_run_dir(run) is None
    run.mkdir()
    assert ckpt.archive_run_dir(run) is None  # empty: nothing to keep
    (run / "metrics.jsonl").write_text("{}")
    archived = ckpt.archive_run_dir(run)
    assert archived.name.startswith("finetune_archived_") and (archived / "metrics.jsonl").is_file()
    assert not run.exists()


def test_resume_state_checks(tmp_path, tiny_ar):
    layout = ckpt.RunLayout(tmp_path / "run")
    config = {"layers": 2}
    with pytest.raises(ResumeError, match="does not exist"):
        ckpt.load_resume_state(layout.state_path(3), config, 100)
    ckpt.save_checkpoint(layout, 3, tiny_ar, _state(3, config))
    state = ckpt.load_resume_state(layout.state_path(3), config, 100)
    assert state["step"] == 3 and state["gpt_path"] == layout.gpt_path(3)
    with pytest.raises(ResumeError, match="different model.*layers"):
        ckpt.load_resume_state(layout.state_path(3), {"layers": 30}, 100)
    with pytest.raises(ResumeError, match="raise the number of epochs"):
        ckpt.load_resume_state(layout.state_path(3), config, 3)
    layout.gpt_path(3).unlink()
    with pytest.raises(ResumeError, match="weights .* are missing"):
        ckpt.load_resume_state(layout.state_path(3), config, 100)
    garbage = tmp_path / "9.state"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ResumeError, match="cannot be read"):
        ckpt.load_resume_state(garbage, config, 100)
    torch.save({"step": 1}, garbage)
    with pytest.raises(ResumeError, match="not a training state"):
        ckpt.load_resume_state(garbage, config, 100)
