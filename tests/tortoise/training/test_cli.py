"""`python -m tortoise.training` as a subprocess: clear errors, SIGKILL then resume, 2-process gloo DDP."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

from tests.conftest import REPO_ROOT
from tests.tortoise.training.conftest import make_dataset, tiny_ar_config, write_yaml
from tortoise.models import build
from tortoise.training import checkpoint as ckpt
from tortoise.training import read_metrics
from tortoise.training.objective import LRSchedule

pytestmark = pytest.mark.slow
ENV = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}


def _run(*args, timeout=300):
    return subprocess.run([sys.executable, *args], cwd=REPO_ROOT, env=ENV, capture_output=True, text=True,
                          timeout=timeout)


def _train_records(path):
    return [r for r in read_metrics(path) if r["type"] == "train"]


def test_missing_config_exits_with_a_message(tmp_path):
    proc = _run("-m", "tortoise.training", "--config", str(tmp_path / "none.yaml"))
    assert proc.returncode == 1
    assert "Training configuration" in proc.stdout and "not found" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr


def test_bad_resume_state_exits_with_a_message(tmp_path, tiny_files):
    config = write_yaml(make_dataset(tmp_path / "voice"), tiny_files)
    proc = _run("-m", "tortoise.training", "--config", str(config), "--resume", str(tmp_path / "x.state"))
    assert proc.returncode == 1 and "does not exist" in proc.stdout


def test_sigkill_then_resume_continues_at_the_right_step_and_lr(tmp_path, tiny_files):
    folder = make_dataset(tmp_path / "voice")
    config = write_yaml(folder, tiny_files, iterations=100000, save_freq=3, milestones=(5,))
    layout = ckpt.RunLayout(folder / "finetune")
    proc = subprocess.Popen([sys.executable, "-m", "tortoise.training", "--config", str(config)],
                            cwd=REPO_ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while not layout.state_path(6).is_file():
            assert proc.poll() is None and time.monotonic() < deadline, "the trainer did not reach step 6"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    last = max(s for s in layout.saved_steps() if layout.state_path(s).is_file())
    assert last >= 6 and not list(layout.state_dir.glob(".*tmp"))  # only whole files were renamed in

    data = yaml.safe_load(config.read_text())
    data["train"]["niter"] = last + 4
    config.write_text(yaml.safe_dump(data))
    state = str(layout.state_path(last))
    resumed = _run("-m", "tortoise.training", "--config", str(config), "--resume", state)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"Start training from epoch: {last // 2}, iter: {last}" in resumed.stdout
    records = read_metrics(layout.metrics_path)
    after = [r for r in records if r["type"] == "train" and r["step"] > last]
    assert [r["step"] for r in after] == [last + 1, last + 2, last + 3, last + 4]
    assert [r["lr"] for r in after] == pytest.approx([LRSchedule(1e-3, milestones=(5,)).lr_at(s)
                                                      for s in range(last + 1, last + 5)])
    assert after[0]["lr"] == pytest.approx(5e-4)
    assert layout.gpt_path(last + 4).is_file()


def test_torchrun_two_process_gloo(tmp_path, tiny_files):
    folder = make_dataset(tmp_path / "voice")
    config = write_yaml(folder, tiny_files, iterations=12, save_freq=6, batch_size=2)
    proc = _run("-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
                "tortoise.training", "--config", str(config), "--device", "cpu", timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    layout = ckpt.RunLayout(folder / "finetune")
    assert layout.saved_steps() == [6, 12]
    saved = torch.load(layout.gpt_path(12), weights_only=True)
    assert list(saved) == list(build("autoregressive", **tiny_ar_config()).state_dict())
    records = read_metrics(layout.metrics_path)
    assert [r for r in records if r["type"] == "start"][0]["world_size"] == 2
    losses = [r["loss_gpt_total"] for r in records if r["type"] == "train"]
    assert len(losses) == 12 and sum(losses[-3:]) < 0.9 * sum(losses[:3])
