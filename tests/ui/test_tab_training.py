"""The Training tab's handlers with a scripted transcriber and a fake trainer: Prepare Dataset (review,
warnings, edit, delete, bad voices), Generate Configuration (Validate, Save, Import, bad input) and
Run Training (Train, a second Train, the timer, Stop, Reconnect, a crash)."""

import json
import time
from pathlib import Path

import gradio as gr
import pytest
import yaml

from src.training.dataset import DatasetOptions
from src.training.runner import TrainRunner
from src.ui import (
    tab_training,
    tab_training_config,
    tab_training_dataset,
    tab_training_run,
)
from src.ui.tab_training_config import CONFIG_FIELDS
from tests.app_doubles import (
    FakeTTS,
    make_context,
    make_voice,
    write_corrupt_clip,
    write_silent_clip,
)
from tests.training_doubles import (
    TRAINER_ENV,
    ScriptedTranscriber,
    fake_trainer_launcher,
    scripted_transcriber_factory,
)

WAIT_S = 240  # an upper bound for a busy machine; waits end as soon as their condition holds


@pytest.fixture
def ctx(tmp_path):
    context = make_context(tmp_path / "app", FakeTTS())
    context.transcriber_factory = scripted_transcriber_factory()
    context.train_runner = TrainRunner(
        context.paths, launcher=fake_trainer_launcher(), env=TRAINER_ENV
    )
    make_voice(context.paths.voices_dir, "amy", (1.3, 1.6, 1.9, 2.0))
    return context


def prepare_values(voice="amy", **options):
    values = {"voice": voice, "language": "", "backend": "openai-whisper", "model": "base"}
    defaults = DatasetOptions()
    return {**values, **{n: getattr(defaults, n) for n in tab_training_dataset.DATASET_OPTION_FIELDS},
            **options}  # fmt: skip


def form(ctx, **changes):
    values = dict(
        zip(CONFIG_FIELDS, tab_training_config.form_values(tab_training_config.default_config(ctx)))
    )
    return {**values, "voice": "amy", **changes}


def as_dict(values):
    return dict(zip(CONFIG_FIELDS, values, strict=False))


def test_the_tab_builds_with_its_three_sub_tabs(ctx):
    with gr.Blocks():
        c = tab_training.build(ctx)
    assert [c[k].label for k in ("prep_tab", "cfg_tab", "run_tab")] == [
        "Prepare Dataset", "Generate Configuration", "Run Training"]  # fmt: skip
    assert c["prep_voice"].choices == [("amy", "amy")]  # no random / microphone
    assert c["learning_rate"].label == "Learning Rate" and c["learning_rate"].maximum == 1e-4
    assert c["use_half_precision"].value is False and c["batch_size"].value == 128
    assert c["lr_schedule"].value == "[9, 18, 25, 33]"
    assert all(name in c for name in CONFIG_FIELDS)


# ------------------------------------------------------------------ Prepare Dataset


def test_prepare_shows_counts_review_and_named_problems(ctx):
    voice_dir = ctx.paths.voices_dir / "amy"
    write_corrupt_clip(voice_dir / "zz_bad.wav")
    write_silent_clip(voice_dir / "zz_quiet.wav")
    console, summary, warnings, rows, clip, audio, text = tab_training_dataset.prepare_clicked(
        ctx, prepare_values(validation_text_length=42)
    )
    assert "Processed dataset to:" in console and "2 files skipped" in console
    assert "**2** training lines" in summary and "**2** validation lines" in summary
    assert "Skipped zz_bad.wav: cannot be read as audio" in warnings
    assert "Skipped zz_quiet.wav: it is silent" in warnings
    assert [r[0] for r in rows] == [f"audio/clip{i}.wav" for i in range(1, 5)]
    assert {r[1] for r in rows} == {"train", "validation"} and (clip, audio, text) == ("", None, "")
    assert (ctx.paths.training_dir / "amy" / "train.txt").is_file()


def test_review_select_edit_and_delete(ctx):
    tab_training_dataset.prepare_clicked(ctx, prepare_values())
    summary, warnings, rows, *_ = tab_training_dataset.load_review(ctx, "amy")
    assert "**4** training lines" in summary
    assert "validation.txt is empty" in warnings and "Validation Text Length Threshold" in warnings
    clip, audio, text = tab_training_dataset.select_clip(ctx, "amy", rows[1])
    assert clip == "audio/clip2.wav" and text == rows[1][3]
    rate, samples = audio
    assert rate == 22050 and len(samples) == pytest.approx(1.6 * 22050, abs=2)
    rows, stored = tab_training_dataset.save_transcript(ctx, "amy", clip, "  A new\ntranscript. ")
    assert stored == "A new transcript." and rows[1][3] == "A new transcript."
    with pytest.raises(gr.Error, match="A transcript cannot contain"):
        tab_training_dataset.save_transcript(ctx, "amy", clip, "a | b")
    summary, rows, clip, audio, text = tab_training_dataset.delete_selected(ctx, "amy", clip)
    assert "**3** training lines" in summary and "audio/clip2.wav" not in [r[0] for r in rows]
    assert "3 training lines" in tab_training_config.dataset_info_text(ctx, "amy")  # what cfg_tab shows
    assert not (ctx.paths.training_dir / "amy" / "audio" / "clip2.wav").exists()
    with pytest.raises(gr.Error, match="Click a clip"):
        tab_training_dataset.delete_selected(ctx, "amy", "")


def test_everything_in_validation_says_which_threshold_to_change(ctx):
    ctx.transcriber_factory = scripted_transcriber_factory(("Hi there.",))
    *_, warnings, rows, _, _, _ = tab_training_dataset.prepare_clicked(ctx, prepare_values())
    assert "train.txt is empty" in warnings and "Validation Text Length Threshold" in warnings
    assert {r[1] for r in rows} == {"validation"}
    summary, warnings, *_ = tab_training_dataset.load_review(ctx, "amy")
    assert "**0** training lines" in summary and "train.txt is empty" in warnings
    assert "No dataset yet" in tab_training_config.dataset_info_text(ctx, None)
    assert "is empty" in tab_training_config.dataset_info_text(ctx, "amy")


def test_one_clip_is_a_warning(ctx):
    make_voice(ctx.paths.voices_dir, "solo", (1.5,))
    *_, warnings, _, _, _, _ = tab_training_dataset.prepare_clicked(ctx, prepare_values("solo"))
    assert "only one clip" in warnings


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda d: None, "has no audio files"),
        (lambda d: write_corrupt_clip(d / "bad.wav"), "bad.wav: cannot be read as audio"),
        (lambda d: write_silent_clip(d / "quiet.wav"), "quiet.wav: it is silent"),
    ],
)
def test_unusable_voices_are_plain_errors(ctx, setup, message):
    folder = ctx.paths.voices_dir / "bad"
    folder.mkdir()
    setup(folder)
    with pytest.raises(gr.Error, match=message):
        tab_training_dataset.prepare_clicked(ctx, prepare_values("bad"))


def test_no_speech_is_a_plain_error(ctx):
    ctx.transcriber_factory = lambda backend, model: ScriptedTranscriber(("",))
    with pytest.raises(gr.Error, match="no speech was recognised"):
        tab_training_dataset.prepare_clicked(ctx, prepare_values())


def test_prepare_input_checks(ctx):
    with pytest.raises(gr.Error, match="Choose a voice"):
        tab_training_dataset.prepare_clicked(ctx, prepare_values(""))
    with pytest.raises(gr.Error, match="Validation Text Length Threshold is empty"):
        tab_training_dataset.prepare_clicked(ctx, prepare_values(validation_text_length=None))
    with pytest.raises(gr.Error, match="cannot be negative"):
        tab_training_dataset.prepare_clicked(ctx, prepare_values(validation_audio_length_s=-1))
    assert (
        tab_training_dataset.load_review(ctx, "amy")[0]
        == "No dataset for 'amy' yet; press Prepare."
    )


# ------------------------------------------------------------------ Generate Configuration


@pytest.fixture
def prepared(ctx):
    tab_training_dataset.prepare_clicked(ctx, prepare_values())
    return ctx


def test_validate_explains_each_adjustment(prepared):
    *values, console = tab_training_config.validate_clicked(prepared, form(prepared, epochs=10))
    adjusted = as_dict(values)
    assert adjusted["batch_size"] == 4 and adjusted["gradient_accumulation_size"] == 2
    assert "Batch size 128 is larger than the 4-line dataset" in console
    assert console.split("\n")[-1] == (
        "For 10 epochs with 4 lines in batches of 4, iterating for 10 steps (1 steps per epoch)."
    )
    *_, modern = tab_training_config.validate_clicked(prepared, form(prepared, rules="modern"))
    assert "lowered to 4" in modern


def test_save_writes_the_files_and_lists_the_run(prepared):
    *values, console, run_list = tab_training_config.save_clicked(
        prepared, form(prepared, epochs=10, batch_size=4, lr_schedule="[2, 4]")
    )
    folder = prepared.paths.training_dir / "amy"
    assert "Training settings saved to:" in console and (folder / "train.yaml").is_file()
    data = yaml.safe_load((folder / "train.yaml").read_text())
    assert data["train"]["niter"] == 10 and data["train"]["gen_lr_steps"] == [2, 4]
    assert json.loads((folder / "train.json").read_text())["epochs"] == 10
    assert run_list["choices"] == ["amy"] and run_list["value"] == "amy"
    assert as_dict(values)["lr_schedule"] == "[2, 4]"


def test_import_refills_the_form_and_offers_the_newest_state(prepared):
    tab_training_config.save_clicked(prepared, form(prepared, epochs=7, learning_rate=2e-5))
    states = prepared.paths.training_dir / "amy" / "finetune" / "training_state"
    states.mkdir(parents=True)
    for step in (5, 20, 10):
        (states / f"{step}.state").write_bytes(b"")
    *values, console = tab_training_config.import_clicked(prepared, "amy")
    imported = as_dict(values)
    assert imported["epochs"] == 7 and imported["learning_rate"] == 2e-5
    assert imported["resume_state"] == str(states / "20.state")
    assert "Latest resume found:" in console and "Importing from:" in console
    with pytest.raises(gr.Error, match="No saved training configuration"):
        tab_training_config.import_clicked(prepared, "nobody")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"resume_state": "training/amy/finetune/training_state/99.state"}, "does not exist"),
        (
            {"source_model": "models/missing_gpt.pth"},
            "Source model models/missing_gpt.pth does not exist",
        ),
        ({"lr_schedule": "nine"}, "not a list of epochs"),
        ({"epochs": None}, "Epochs is empty"),
        ({"voice": ""}, "Choose a Dataset first"),
    ],
)
def test_bad_configuration_input_is_a_plain_error(prepared, changes, message):
    with pytest.raises(gr.Error, match=message):
        tab_training_config.save_clicked(prepared, form(prepared, **changes))


def test_validate_says_a_missing_resume_state_is_cleared(prepared):
    values = form(prepared, resume_state="training/amy/finetune/training_state/99.state")
    *values, console = tab_training_config.validate_clicked(prepared, values)
    assert as_dict(values)["resume_state"] == "" and "the run will start fresh" in console


def test_form_round_trip(ctx):
    config = tab_training_config.default_config(ctx)
    values = as_dict(tab_training_config.form_values(config))
    assert tab_training_config.config_from_form(values) == config
    values["batch_size"] = 12.0  # Gradio numbers may arrive as floats
    assert tab_training_config.config_from_form(values).batch_size == 12


# ------------------------------------------------------------------ Run Training


def write_fake_config(ctx, voice="amy", **fake):
    folder = ctx.paths.training_dir_for(voice, create=True)
    data = {"gpu_ids": [0], "path": {"run_dir": str(folder / "finetune")},
            "fake": {"steps": 100000, "steps_per_epoch": 4, "step_s": 0.03, "save": 5, **fake}}  # fmt: skip
    (folder / "train.yaml").write_text(yaml.safe_dump(data))


def wait_for(fn, timeout=WAIT_S):
    deadline = time.monotonic() + timeout
    while True:
        result = fn()
        if result:
            return result
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def timer_active(update):
    return update.active if isinstance(update, gr.Timer) else update["active"]


def test_train_watch_stop_and_reconnect(ctx):
    write_fake_config(ctx)
    ctx.engine.get()  # a loaded TTS is unloaded to free memory for training
    tab_training_run.train_clicked(ctx, "amy")
    *view, timer = tab_training_run.reconnect_view(ctx, "amy", 8, None)  # what follows a start
    assert timer_active(timer) and not ctx.engine.is_loaded and "Training 'amy'" in view[1]
    with pytest.raises(gr.Error, match="already running"):
        tab_training_run.train_clicked(ctx, "amy")

    def ticked():
        *view, timer = tab_training_run.tick(ctx, "amy", 8, None)
        return view if view[3].loss.notna().sum() >= 9 and view[6]["choices"] else None

    status, message, console, losses, lr, grad, checkpoints, latest = wait_for(ticked)
    assert latest and checkpoints["value"] == f"{latest}:sample"  # the newest sample is selected
    assert status.startswith("[") and "[Epoch" in status and "it/s]" in status
    assert "Training 'amy' (process" in message and "step " in console
    drawn = losses[losses.loss.notna()]
    assert set(drawn.series) == {"text_ce", "mel_ce", "total"} and list(lr.columns) == [
        "epoch",
        "lr",
    ]
    assert set(losses.series) == set(
        tab_training_run.LOSS_COLORS
    )  # every series named from the start
    assert checkpoints["choices"][0][0].startswith("Step ")
    rate, samples = tab_training_run.show_sample(ctx, "amy", checkpoints["choices"][0][1])
    assert rate == 24000 and len(samples) == 2400

    tab_training_run.stop_clicked(ctx, "amy")
    assert ctx.train_runner.status("amy").state in ("stopping", "stopped")
    final = wait_for(lambda: (r := tab_training_run.tick(ctx, "amy", 8, None)) and
                     not timer_active(r[-1]) and r)  # fmt: skip
    assert "was stopped at step" in final[1]
    *view, timer = tab_training_run.reconnect_clicked(ctx, "amy", 8, None)  # not running: a warning
    assert not timer_active(timer) and view[3].loss.notna().sum() > 0  # reloaded from metrics.jsonl
    with pytest.raises(gr.Error, match="No training is running"):
        tab_training_run.stop_clicked(ctx, "amy")


def test_a_page_reload_reattaches_to_a_live_run(ctx):
    write_fake_config(ctx)
    write_fake_config(ctx, "bob")
    ctx.train_runner.start("bob")
    try:
        prep_voice, dataset, backend, model, run_voice, *view, timer = tab_training.on_open(
            ctx, None, None, "amy", 8, None
        )
        settings = ctx.settings
        assert (backend["value"], model["value"]) == (settings.whisper_backend, settings.whisper_model)
        assert run_voice["value"] == "bob" and timer_active(timer)
        assert prep_voice["choices"] == ["amy"]
        *view, timer = tab_training_run.reconnect_clicked(ctx, "bob", 8, None)
        assert timer_active(timer) and "Training 'bob'" in view[1]
    finally:
        ctx.train_runner.stop("bob")
    wait_for(lambda: not ctx.train_runner.is_running("bob"))


def test_the_dataset_cannot_change_under_a_running_trainer(ctx):
    tab_training_dataset.prepare_clicked(ctx, prepare_values())
    write_fake_config(ctx)
    ctx.train_runner.start("amy")
    try:
        with pytest.raises(gr.Error, match="is running on this dataset; stop it"):
            tab_training_dataset.prepare_clicked(ctx, prepare_values())
        with pytest.raises(gr.Error, match="is running on this dataset"):
            tab_training_dataset.delete_selected(ctx, "amy", "audio/clip1.wav")
        assert (ctx.paths.training_dir / "amy" / "audio" / "clip1.wav").is_file()
    finally:
        ctx.train_runner.stop("amy")
    wait_for(lambda: not ctx.train_runner.is_running("amy"))


def test_a_crash_shows_the_exit_code_and_log_lines(ctx):
    write_fake_config(ctx, fail_at=2)
    tab_training_run.train_clicked(ctx, "amy")
    final = wait_for(lambda: (r := tab_training_run.tick(ctx, "amy", 8, None)) and
                     not timer_active(r[-1]) and r)  # fmt: skip
    message = final[1]
    assert "stopped with an error" in message and "(exit code 1)" in message
    assert "```" in message and "ERROR: The source model does not fit (fake)." in message


def test_run_input_checks(ctx):
    with pytest.raises(gr.Error, match="Choose a Training Configuration"):
        tab_training_run.train_clicked(ctx, None)
    with pytest.raises(gr.Error, match="no saved training configuration"):
        tab_training_run.train_clicked(ctx, "amy")
    assert tab_training_run.run_view(ctx, None, 8, None)[0] == ""


def test_a_new_sample_is_selected_as_it_lands_and_a_chosen_step_is_kept():
    from src.training.progress import CheckpointInfo

    def cks(*steps, sampled=()):
        return [CheckpointInfo(s, Path(f"{s}_gpt.pth"), Path(f"{s}.wav") if s in sampled else None)
                for s in sorted(steps, reverse=True)]  # fmt: skip

    pick = tab_training_run.pick_checkpoint
    assert pick([], None, "") == (None, "")
    assert pick(cks(5), None, "") == ("5", "")  # no sample yet
    assert pick(cks(5), "5", "") == ("5", "")
    assert pick(cks(5, sampled=(5,)), "5", "") == ("5:sample", "5")  # its sample landed: the value changes
    assert pick(cks(5, 10, sampled=(5,)), "5:sample", "5") == ("5:sample", "5")  # 10 renders: keep 5
    assert pick(cks(5, 10, sampled=(5, 10)), "5:sample", "5") == ("10:sample", "10")  # 10 landed
    assert pick(cks(5, 10, sampled=(5, 10)), "5:sample", "10") == ("5:sample", "10")  # the user went back
