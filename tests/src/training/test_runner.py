"""TrainRunner with a fake trainer (start, the lock, a second start refused, stop, kill after a
timeout, re-attach from a new runner, crashes with their log lines) and with the real trainer on the
tiny models; status-line and plot-frame arithmetic from synthetic metrics."""

import json
import subprocess
import sys
import time

import pytest
import torch
import yaml

from src.errors import TrainingError
from src.models_catalog import list_autoregressive_models
from src.paths import AppPaths
from src.training.progress import (
    MetricsReader,
    TrainingProgress,
    format_duration,
    list_checkpoints,
    plot_frames,
    progress_from,
    tail_lines,
)
from src.training.runner import EXIT_NAME, LOCK_NAME, LOG_NAME, TrainRunner, configured_voices
from tests.training_doubles import FAKE_TRAINER, TRAINER_ENV, fake_trainer_launcher

WAIT_S = 240  # an upper bound for a busy machine; waits end as soon as their condition holds


@pytest.fixture
def paths(tmp_path):
    p = AppPaths.from_root(tmp_path / "app")
    p.ensure()
    return p


def write_fake_config(paths, voice="amy", **fake):
    folder = paths.training_dir_for(voice, create=True)
    data = {"gpu_ids": [0], "path": {"run_dir": str(folder / "finetune"), "resume_state": None},
            "fake": {"steps": 20, "steps_per_epoch": 4, "step_s": 0.02, "save": 5, **fake}}  # fmt: skip
    (folder / "train.yaml").write_text(yaml.safe_dump(data))
    return folder


def runner_for(paths, **kwargs):
    return TrainRunner(paths, launcher=fake_trainer_launcher(), env=TRAINER_ENV, **kwargs)


def wait_until(predicate, timeout=WAIT_S):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def wait_for_end(runner, voice):
    wait_until(lambda: not runner.status(voice).is_running)
    return runner.status(voice)


# ------------------------------------------------------------------ processes


def test_start_runs_to_the_end_and_refuses_a_second_run(paths):
    folder = write_fake_config(paths, steps=40, step_s=0.05)
    runner = runner_for(paths)
    started = runner.start("amy")
    assert started.is_running and started.pid > 0
    lock = json.loads((folder / LOCK_NAME).read_text())
    assert lock["pid"] == started.pid and str(FAKE_TRAINER) in lock["command"]
    with pytest.raises(TrainingError, match="already running.*Press Stop.*Reconnect"):
        runner.start("amy")
    with pytest.raises(TrainingError, match="already running"):
        runner_for(paths).start("amy")  # another runner (a second window, or after a restart)
    status = wait_for_end(runner, "amy")
    assert status.state == "finished" and status.exit_code == 0
    assert status.message.startswith("Training for 'amy' finished at step 40 of 40. The run folder holds ")
    assert not (folder / LOCK_NAME).exists() and (folder / EXIT_NAME).is_file()
    assert status.progress.line.startswith("[Epoch 10/10, Step 40/40]")
    assert [ck.step for ck in runner.checkpoints("amy")] == [40, 35, 30, 25, 20, 15, 10, 5]
    assert runner.plot_frames("amy") is runner.plot_frames("amy")  # unchanged metrics: cached
    assert all(ck.sample_path.is_file() for ck in runner.checkpoints("amy"))
    assert (
        "step 40/40" in runner.console("amy", 8) and len(runner.console("amy", 8).split("\n")) == 8
    )
    assert (folder / LOG_NAME).read_text().startswith("[")  # the command line heads the log


def test_a_finished_run_can_be_started_again(paths):
    write_fake_config(paths, steps=3)
    runner = runner_for(paths)
    runner.start("amy")
    assert wait_for_end(runner, "amy").state == "finished"
    runner.start("amy")
    assert wait_for_end(runner, "amy").state == "finished"


def test_stop_saves_and_ends_the_run(paths):
    write_fake_config(paths, steps=100000, step_s=0.05, save=1000)
    runner = runner_for(paths)
    runner.start("amy")
    wait_until(lambda: (p := runner.status("amy").progress) is not None and p.step >= 3)
    message = runner.stop("amy")
    assert "saves a checkpoint after the current step" in message
    assert runner.status("amy").state in ("stopping", "stopped")
    status = wait_for_end(runner, "amy")
    assert status.state == "stopped" and status.exit_code == 0
    assert "was stopped at step" in status.message and "The run folder holds 1 MB" in status.message
    steps = [ck.step for ck in runner.checkpoints("amy")]
    assert len(steps) == 1 and steps[0] == status.progress.step  # the checkpoint of the stop
    with pytest.raises(TrainingError, match="No training is running for 'amy'"):
        runner.stop("amy")


def test_stop_kills_a_trainer_that_does_not_exit(paths):
    write_fake_config(paths, steps=100000, step_s=0.05, ignore_term=True)
    runner = runner_for(paths, stop_timeout_s=0.5)
    runner.start("amy")
    wait_until(lambda: runner.status("amy").progress is not None)
    runner.stop("amy")
    status = wait_for_end(runner, "amy")
    assert status.state == "stopped" and status.exit_code == -9
    assert "did not stop within 0.5 s after Stop, so it was killed" in status.message
    assert "newest complete checkpoint is step" in status.message or "no checkpoint" in status.message


def test_stop_pressed_twice_interrupts_then_kills(paths, monkeypatch):
    import src.training.runner as train_runner

    monkeypatch.setattr(train_runner, "SECOND_STOP_TIMEOUT_S", 0.5)
    write_fake_config(paths, steps=100000, step_s=0.05, save=2, ignore_term=True)
    runner = runner_for(paths, stop_timeout_s=600)
    runner.start("amy")
    wait_until(lambda: (p := runner.status("amy").progress) is not None and p.step >= 3)
    first = runner.stop("amy")
    assert "press Stop again to interrupt it at once" in first
    second = runner.stop("amy")
    assert second.startswith("Stop pressed again: interrupting training for 'amy' now")
    status = wait_for_end(runner, "amy")  # killed 0.5 s after the second press, not 600 s after the first
    assert status.state == "stopped" and "within 0.5 s" in status.message
    assert "newest complete checkpoint is step" in status.message


def test_reconnect_from_a_new_runner_after_a_restart(paths):
    write_fake_config(paths, steps=100000, step_s=0.05, save=1000)
    first = runner_for(paths)
    started = first.start("amy")
    wait_until(lambda: (p := first.status("amy").progress) is not None and p.step >= 2)
    restarted = runner_for(paths)  # the app was restarted: a fresh runner, no child process
    assert restarted.running_voices() == ["amy"]
    status = restarted.reconnect("amy")
    assert status.is_running and status.pid == started.pid and status.progress.step >= 2
    assert "step" in restarted.console("amy", 4)
    frames = restarted.plot_frames("amy")
    assert len(frames.losses) > 0
    wait_until(lambda: restarted.plot_frames("amy") is not frames)  # new steps: recomputed
    restarted.stop("amy")  # the new runner can stop it too
    assert wait_for_end(restarted, "amy").state == "stopped"
    with pytest.raises(TrainingError, match="not in progress.*was stopped"):
        restarted.reconnect("amy")


def test_a_run_that_ended_unwatched_clears_its_lock(paths):
    """A trainer started by an app that is gone: its end is noticed from the pid, not an exit code."""
    folder = write_fake_config(paths, steps=100000, step_s=0.05)
    process = subprocess.Popen([sys.executable, str(FAKE_TRAINER), "--config", str(folder / "train.yaml")],
                               stdout=subprocess.DEVNULL)  # fmt: skip
    (folder / LOCK_NAME).write_text(json.dumps({"pid": process.pid, "started_at": time.time() - 1}))
    (folder / LOG_NAME).write_text("earlier output\n")
    runner = runner_for(paths)
    try:
        wait_until(lambda: runner.status("amy").progress is not None)
        assert runner.is_running("amy") and runner.reconnect("amy").pid == process.pid
    finally:
        process.kill()
        process.wait()
    status = runner.status("amy")
    assert status.state == "ended" and "ended while the app was not watching" in status.message
    assert not (folder / LOCK_NAME).exists()
    runner.start("amy")  # the stale lock does not block a new run
    runner.stop("amy")
    wait_for_end(runner, "amy")


def test_a_stale_lock_of_a_dead_process_is_ignored(paths):
    folder = write_fake_config(paths, steps=2)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)  # fmt: skip
    (folder / LOCK_NAME).write_text(json.dumps({"pid": int(dead.stdout), "started_at": 1.0}))
    runner = runner_for(paths)
    assert not runner.is_running("amy")
    runner.start("amy")
    assert wait_for_end(runner, "amy").state == "finished"


@pytest.mark.parametrize(
    ("fake", "code", "shown"),
    [
        ({"fail_at": 3}, 1, "ERROR: The source model does not fit (fake)."),
        ({"crash_at": 3}, 1, "RuntimeError: fake internal error"),  # an uncaught exception: exit 1
    ],
)
def test_a_crash_surfaces_the_exit_code_and_the_last_log_lines(paths, fake, code, shown):
    write_fake_config(paths, **fake)
    runner = runner_for(paths)
    runner.start("amy")
    status = wait_for_end(runner, "amy")
    assert status.state == "failed" and status.exit_code == code
    assert f"(exit code {code})" in status.message and shown in status.message
    assert str(runner.log_path("amy")) in status.message


def test_start_needs_a_saved_configuration(paths):
    with pytest.raises(TrainingError, match="no saved training configuration.*Save Training"):
        runner_for(paths).start("nobody")


def test_more_gpus_than_the_machine_has_is_refused(paths):
    folder = write_fake_config(paths)
    data = yaml.safe_load((folder / "train.yaml").read_text())
    data["gpu_ids"] = list(range(64))
    (folder / "train.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(TrainingError, match="asks for 64 GPUs"):
        TrainRunner(paths).start("amy")
    assert not (folder / LOCK_NAME).exists()


def test_configured_voices(paths):
    write_fake_config(paths, "zed")
    write_fake_config(paths, "amy")
    paths.training_dir_for("no_config", create=True)
    assert configured_voices(paths) == ["amy", "zed"]


# ------------------------------------------------------------------ metrics arithmetic


def _train(step, spe=10, seconds=0.5, **values):
    epoch = (step - 1) // spe
    return {"type": "train", "step": step, "steps": 100, "epoch": epoch,
            "epoch_progress": epoch + ((step - 1) % spe + 1) / spe, "loss_text_ce": 2.0,
            "loss_mel_ce": 4.0, "loss_gpt_total": 4.02, "lr": 1e-5, "grad_norm": 3.0,
            "step_time_s": seconds, **values}  # fmt: skip


def test_status_line_math():
    start = {"type": "start", "step": 0, "steps": 100, "epoch": 0, "steps_per_epoch": 10}
    records = [start, *(_train(s) for s in range(1, 26))]
    records.append({"type": "val", "step": 20, "epoch": 1, "val_loss_gpt_total": 3.5})
    progress = progress_from(records)
    assert (progress.step, progress.steps, progress.epoch, progress.epochs) == (25, 100, 3, 10)
    assert progress.seconds_per_step == pytest.approx(0.5) and progress.eta_s == pytest.approx(37.5)
    assert progress.fraction == 0.25
    assert progress.line == (
        "[Epoch 3/10, Step 25/100] [2.00 it/s] [ETA 0:00:38] [LR 1.000e-05, Loss 4.0200, Val Loss 3.5000]"
    )
    slow = progress_from([start, _train(1, seconds=4.0)])
    assert "[4.00 s/it] [ETA 0:06:36]" in slow.line
    assert progress_from([start]).line == "[Epoch 1/10, Step 0/100] [starting]"
    assert progress_from([]) is None
    # steps per epoch that do not divide the steps: the last epoch is partial
    assert progress_from([{**start, "steps": 25, "steps_per_epoch": 10}]).epochs == 3


def test_rate_uses_the_last_steps_since_the_newest_start():
    start = {"type": "start", "step": 0, "steps": 100, "steps_per_epoch": 10}
    old = [_train(s, seconds=10.0) for s in range(1, 6)]
    resumed = {"type": "start", "step": 5, "steps": 100, "steps_per_epoch": 10}
    new = [_train(s, seconds=1.0) for s in range(6, 8)]
    progress = progress_from([start, *old, resumed, *new])
    assert progress.seconds_per_step == 1.0 and progress.eta_s == 93.0


def test_format_duration():
    assert format_duration(0) == "0:00:00"
    assert format_duration(3725.4) == "1:02:05"
    assert format_duration(90000) == "25:00:00"


def test_plot_frames_from_a_synthetic_metrics_file(tmp_path):
    path = tmp_path / "metrics.jsonl"
    records = [{"type": "start", "step": 0, "steps": 40, "steps_per_epoch": 4}]
    records += [_train(s, spe=4, loss_gpt_total=10.0 - s / 10) for s in range(1, 9)]
    records += [{"type": "val", "step": 8, "epoch": 1, "val_loss_text_ce": 2.5, "val_loss_mel_ce": 5.0,
                 "val_loss_gpt_total": 5.025}]  # fmt: skip
    records += [{"type": "start", "step": 6, "steps": 40, "steps_per_epoch": 4}]  # resumed at 6
    records += [_train(s, spe=4, loss_gpt_total=1.0, lr=None if s == 8 else 5e-6) for s in (7, 8)]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))

    frames = plot_frames(MetricsReader(path).records())
    totals = frames.losses[frames.losses.series == "total"]
    assert list(totals.epoch) == [0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0]
    assert list(totals.loss)[-2:] == [1.0, 1.0]  # steps 7 and 8 were redone after the resume
    assert set(frames.losses.series) == {
        "text_ce",
        "mel_ce",
        "total",
    }  # the val at 8 was dropped too
    assert list(frames.lr.columns) == ["epoch", "lr"] and len(frames.lr) == 7  # null LR left out
    assert list(frames.grad_norm.columns) == ["epoch", "grad_norm"] and len(frames.grad_norm) == 8

    with open(path, "a") as f:
        f.write(
            json.dumps({"type": "val", "step": 8, "epoch": 1, "val_loss_gpt_total": 0.9}) + "\n"
        )
    frames = plot_frames(MetricsReader(path).records())
    val = frames.losses[frames.losses.series == "val_total"]
    assert list(val.epoch) == [2.0] and list(val.loss) == [0.9]


def test_plot_frames_are_thinned_keeping_the_last_point():
    records = [_train(s, spe=100) for s in range(1, 2501)]
    frames = plot_frames(records, max_points=100)
    assert len(frames.lr) <= 101 and frames.lr.epoch.iloc[-1] == records[-1]["epoch_progress"]
    assert frames.losses.groupby("series").size().max() <= 101
    empty = plot_frames([])
    assert list(empty.losses.columns) == ["epoch", "loss", "series"] and len(empty.losses) == 0


def test_metrics_reader_reads_only_new_complete_lines(tmp_path):
    path = tmp_path / "metrics.jsonl"
    reader = MetricsReader(path)
    assert reader.records() == []
    with open(path, "w") as f:
        f.write(json.dumps(_train(1)) + "\n" + '{"type": "train", "st')  # torn last line
    assert [r["step"] for r in reader.records()] == [1]
    with open(path, "a") as f:
        f.write('ep": 2}\n')
    assert [r["step"] for r in reader.records()] == [1, 2]
    path.unlink()
    path.write_text(json.dumps(_train(9)) + "\n")  # a fresh run replaced the file
    assert [r["step"] for r in reader.records()] == [9]


def test_tail_lines_and_checkpoints(tmp_path):
    log = tmp_path / "train.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)) + "10%|#\r50%|#####\n\n")
    assert tail_lines(log, 3) == ["line 98", "line 99", "50%|#####"]
    assert tail_lines(tmp_path / "missing.log", 3) == []
    models = tmp_path / "run" / "models"
    models.mkdir(parents=True)
    for name in (
        "5_gpt.pth",
        "10_gpt.pth",
        "10_sample.wav",
        "2_sample.wav",
        "x_gpt.pth",
        "notes.txt",
    ):
        (models / name).write_bytes(b"")
    found = list_checkpoints(tmp_path / "run")
    assert [(c.step, c.gpt_path is not None, c.sample_path is not None) for c in found] == [
        (10, True, True), (5, True, False), (2, False, True)]  # fmt: skip
    assert list_checkpoints(tmp_path / "nothing") == []


def test_progress_fraction_bounds():
    assert TrainingProgress(5, 0, 1, 1).fraction == 0.0
    assert TrainingProgress(12, 10, 1, 1).fraction == 1.0


# ------------------------------------------------------------------ the real trainer


@pytest.mark.slow
def test_real_trainer_on_the_tiny_models(tmp_path):
    from src.training.dataset import prepare_dataset
    from src.training.finetune import TrainingConfig, write_training_files
    from tests.app_doubles import make_voice
    from tests.training_doubles import ScriptedTranscriber, install_tiny_models, tiny_trainer_args

    paths = AppPaths.from_root(tmp_path / "app")
    paths.ensure()
    overrides = install_tiny_models(paths)
    make_voice(paths.voices_dir, "amy", (1.3, 1.6, 1.9, 2.0))
    prepare_dataset(paths.voice_dir("amy"), paths.training_dir_for("amy"), ScriptedTranscriber())
    config = TrainingConfig(voice="amy", epochs=4, batch_size=4, save_rate=1, use_bitsandbytes=False,
                            workers=0)  # fmt: skip
    write_training_files(paths, config)
    runner = TrainRunner(paths, extra_args=tiny_trainer_args(overrides), env=TRAINER_ENV)
    runner.start("amy")
    status = wait_for_end(runner, "amy")
    assert status.state == "finished", status.message
    assert status.progress.step == status.progress.steps == 4  # one 4-clip batch per epoch
    ckpt = runner.run_dir("amy") / "models" / "4_gpt.pth"
    assert ckpt.is_file() and [c.step for c in runner.checkpoints("amy")] == [4, 3, 2, 1]
    assert str(ckpt.resolve()) in {m.value for m in list_autoregressive_models(paths)}
    assert len(runner.plot_frames("amy").losses) == 12  # 4 steps x 3 series

    # resuming with a different model size: the trainer refuses, and the log says why
    state = runner.run_dir("amy") / "training_state" / "2.state"
    write_training_files(paths, TrainingConfig(**{**config.__dict__, "resume_state": str(state)}))
    bigger = tmp_path / "bigger.yaml"
    data = yaml.safe_load(overrides.read_text())
    data["networks"]["gpt"]["kwargs"]["layers"] = 3
    bigger.write_text(yaml.safe_dump(data))
    mismatched = TrainRunner(paths, extra_args=tiny_trainer_args(bigger), env=TRAINER_ENV)
    mismatched.start("amy")
    status = wait_for_end(mismatched, "amy")
    assert status.state == "failed" and status.exit_code == 1
    assert "was saved for a different model (layers differ)" in status.message
    assert ckpt.is_file()  # a failed resume archives nothing

    # a source model with the wrong keys
    wrong = tmp_path / "wrong_gpt.pth"
    import torch

    torch.save({"not.a.key": torch.zeros(1)}, wrong)
    write_training_files(paths, TrainingConfig(**{**config.__dict__, "source_model": str(wrong)}))
    runner.start("amy")
    status = wait_for_end(runner, "amy")
    assert status.state == "failed" and status.exit_code == 1
    assert "wrong_gpt.pth" in status.message and "ERROR" in status.message


def test_the_status_line_says_when_a_sample_renders_and_when_samples_are_off():
    start = {"type": "start", "step": 0, "steps": 100, "steps_per_epoch": 10}
    rendering = progress_from([start, _train(1), _train(2), {"type": "checkpoint", "step": 2},
                               {"type": "sample_start", "step": 2}])
    assert rendering.sampling_step == 2 and rendering.line.endswith("[rendering the sample of step 2]")
    done = progress_from([start, _train(2), {"type": "sample_start", "step": 2},
                          {"type": "sample", "step": 2, "sample": "x.wav"}, _train(3)])
    assert done.sampling_step is None and "sample" not in done.line
    off = progress_from([start, {"type": "samples_off", "step": 0, "reason": "width 32 vs 1024"}, _train(1)])
    assert off.samples_off == "width 32 vs 1024" and off.line.endswith("[samples off]")
    # a new run (a later start) forgets the old run's notes
    assert progress_from([start, {"type": "samples_off", "reason": "x"}, start]).samples_off is None


class _ManySmallTensors:
    """Stands in for a loaded TextToSpeech: 300 MB in 100 kB tensors (heap, not mmap, allocations)."""

    def __init__(self):
        self.tensors = [torch.ones(25_000) for _ in range(3000)]


def test_unloading_for_training_gives_the_memory_back():
    from src.engine import TTSEngine
    from src.training.runner import unload_for_training
    from tortoise.training import resident_bytes

    engine = TTSEngine(_ManySmallTensors)
    assert unload_for_training(engine) == ""  # nothing loaded: nothing to say
    engine.get()
    loaded = resident_bytes()
    note = unload_for_training(engine)
    assert loaded - resident_bytes() > 200 * 1024**2
    assert note.startswith("TorToiSe was unloaded to free memory (the app went from ") and " GB to " in note
