"""Tests for src/training/finetune.py: the Validate arithmetic (seed and modern), the schedule,
and the files."""

import dataclasses
import json

import pytest
import yaml

from src.errors import AppError, DatasetEmpty, InvalidInput, InvalidVoiceName, TrainingError
from src.paths import AppPaths
from src.training.finetune import (
    DEFAULT_LR_SCHEDULE,
    RUN_FOLDER,
    DatasetInfo,
    TrainingConfig,
    derive_schedule,
    detect_bitsandbytes,
    find_resume_states,
    load_training_config,
    parse_lr_schedule,
    read_dataset_info,
    validate_config,
    write_training_files,
)


def seed(config=None, lines=300, **kwargs):
    kwargs.setdefault("bitsandbytes_usable", True)
    return validate_config(config or TrainingConfig(), lines, "seed", **kwargs)


def modern(config=None, lines=300, **kwargs):
    kwargs.setdefault("bitsandbytes_usable", True)
    return validate_config(config or TrainingConfig(), lines, "modern", **kwargs)


def make_dataset(folder, lines=300, validation=0):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.txt").write_text("\n".join(f"audio/{i:05d}.wav|line {i}" for i in range(lines)))
    if validation:
        (folder / "validation.txt").write_text("\n".join(f"audio/v{i}.wav|v {i}" for i in range(validation)))
    return folder


# ---------------------------------------------------------------- config and form helpers


def test_defaults_match_the_seed_form():
    c = TrainingConfig()
    assert (c.epochs, c.learning_rate, c.batch_size, c.gradient_accumulation_size) == (500, 1e-5, 128, 4)
    assert (c.print_rate, c.save_rate, c.text_loss_weight, c.mel_loss_weight) == (5, 5, 0.01, 1.0)
    assert c.lr_schedule == (9, 18, 25, 33) and c.lr_scheme == "MultiStepLR"
    assert not c.use_half_precision and c.use_bitsandbytes and not c.tortoise_compat
    assert c.resume_state == "" and c.source_model == "" and c.rules == "seed"


def test_every_field_has_a_label_and_help():
    for f in dataclasses.fields(TrainingConfig):
        assert f.metadata["label"] and f.metadata["help"], f.name
    lr = next(f for f in dataclasses.fields(TrainingConfig) if f.name == "learning_rate")
    assert (lr.metadata["minimum"], lr.metadata["maximum"], lr.metadata["step"]) == (0.0, 1e-4, 1e-6)
    keep = next(f for f in dataclasses.fields(TrainingConfig) if f.name == "keep_states")
    assert (keep.metadata["minimum"], keep.metadata["maximum"]) == (0, 8)


def test_parse_lr_schedule():
    assert parse_lr_schedule("") == DEFAULT_LR_SCHEDULE
    assert parse_lr_schedule("  ") == DEFAULT_LR_SCHEDULE
    assert parse_lr_schedule("[2, 4, 9, 18, 25, 33, 50]") == (2, 4, 9, 18, 25, 33, 50)
    assert parse_lr_schedule("[3.0]") == (3,)
    for bad in ("9, 18", "[1.5]", '["a"]', "{}", "[true]"):
        with pytest.raises(InvalidInput):
            parse_lr_schedule(bad)


# ---------------------------------------------------------------- seed rules (TRAINING_SPEC §5.2)


def test_seed_worked_example_300_lines_batch_128():
    config, messages = seed(lines=300)
    assert config.batch_size == 100 and config.gradient_accumulation_size == 4
    assert any("128 lowered to 100" in m and "3 batches per epoch" in m for m in messages)
    assert messages[-1] == ("For 500 epochs with 300 lines in batches of 100, iterating for 1500 steps "
                            "(3 steps per epoch).")
    s = derive_schedule(config, 300)
    assert (s.iterations, s.steps_per_epoch, s.print_freq, s.save_checkpoint_freq) == (1500, 3, 15, 15)
    assert s.lr_milestones == (27, 54, 75, 99) and s.drop_last and s.checkpoints == 100


def test_seed_worked_example_128_lines_batch_64_hits_the_reference_bug():
    config, messages = seed(dataclasses.replace(TrainingConfig(), batch_size=64), lines=128)
    assert config.batch_size == 42  # 128 // (128 // 64 + 1)
    s = derive_schedule(config, 128)
    assert s.iterations == int(500 * 128 / 42) == 1523
    assert s.print_freq == int(5 * 1523 / 500) == 15
    assert s.lr_milestones == tuple(int(1523 / 500 * d) for d in (9, 18, 25, 33)) == (27, 54, 76, 100)
    assert s.steps_per_epoch == 3


def test_seed_batch_equal_to_dataset_is_kept():
    config, messages = seed(dataclasses.replace(TrainingConfig(), batch_size=50), lines=50)
    assert config.batch_size == 50 and config.gradient_accumulation_size == 4
    assert derive_schedule(config, 50).iterations == 500


def test_seed_batch_larger_than_dataset_is_clamped():
    config, messages = seed(lines=100)
    assert config.batch_size == 100
    assert any("larger than the 100-line dataset; lowered to 100" in m for m in messages)
    assert derive_schedule(config, 100).iterations == 500


def test_seed_dataset_of_one_clip():
    config, messages = seed(lines=1)
    assert config.batch_size == 1 and config.gradient_accumulation_size == 1
    assert any("set to 1 because the batch size is 1" in m for m in messages)
    s = derive_schedule(config, 1)
    assert (s.iterations, s.steps_per_epoch, s.print_freq, s.save_checkpoint_freq) == (500, 1, 5, 5)
    assert s.lr_milestones == (9, 18, 25, 33)


def test_seed_batch_one_keeps_one_instead_of_reaching_zero():
    # The reference computes 300 // 301 = 0 here; the batch must stay 1.
    config, _ = seed(dataclasses.replace(TrainingConfig(), batch_size=1, gradient_accumulation_size=1))
    assert (config.batch_size, config.gradient_accumulation_size) == (1, 1)
    assert derive_schedule(config, 300).iterations == 150000


def test_seed_accumulation_too_large_for_batch():
    config, messages = seed(dataclasses.replace(TrainingConfig(), batch_size=6, gradient_accumulation_size=4),
                            lines=6)
    assert config.gradient_accumulation_size == 3
    assert any("lowered to 3" in m for m in messages)


@pytest.mark.parametrize("name", ["epochs", "batch_size", "gradient_accumulation_size", "print_rate",
                                  "save_rate", "validation_rate", "lr_restarts", "gpus"])
@pytest.mark.parametrize("value", [0, -3])
def test_zero_and_negative_counts_are_raised_to_one(name, value):
    config, messages = seed(dataclasses.replace(TrainingConfig(), **{name: value}))
    assert getattr(config, name) >= 1
    assert any("below the minimum 1" in m for m in messages)
    derive_schedule(config, 300)  # usable


def test_negative_floats_and_out_of_range_values_are_clamped():
    bad = dataclasses.replace(TrainingConfig(), learning_rate=-1.0, text_loss_weight=-0.5,
                              mel_loss_weight=3.0, keep_states=12, workers=-1)
    config, messages = seed(bad)
    assert (config.learning_rate, config.text_loss_weight, config.mel_loss_weight) == (0.0, 0.0, 1.0)
    assert (config.keep_states, config.workers) == (8, 0)
    assert any("learning rate is 0" in m for m in messages)
    high, _ = seed(dataclasses.replace(TrainingConfig(), learning_rate=5e-3))
    assert high.learning_rate == 1e-4


def test_rates_larger_than_epochs_are_lowered():
    config, messages = seed(dataclasses.replace(TrainingConfig(), epochs=3, print_rate=5, save_rate=10,
                                                validation_rate=4))
    assert (config.print_rate, config.save_rate, config.validation_rate) == (3, 3, 3)
    assert any("Save frequency of 10 epochs is more than the 3 training epochs" in m for m in messages)
    s = derive_schedule(config, 300)
    assert (s.iterations, s.save_checkpoint_freq) == (9, 9)


def test_non_positive_schedule_epochs_are_dropped():
    config, messages = seed(dataclasses.replace(TrainingConfig(), lr_schedule=(0, -2, 1)), lines=150)
    assert config.lr_schedule == (1,)
    assert any("schedule [0, -2, 1] changed to [1]" in m for m in messages)
    s = derive_schedule(dataclasses.replace(config, epochs=1000, print_rate=1, save_rate=1), 150)
    assert s.print_freq >= 1 and s.save_checkpoint_freq >= 1


def test_lr_schedule_is_sorted_and_deduplicated():
    config, messages = seed(dataclasses.replace(TrainingConfig(), lr_schedule=(18, 9, 9)))
    assert config.lr_schedule == (9, 18)


def test_mode_defaults_to_config_rules_and_is_recorded():
    config, _ = validate_config(dataclasses.replace(TrainingConfig(), rules="modern"), 300,
                                bitsandbytes_usable=True)
    assert config.rules == "modern" and config.batch_size == 128
    config, _ = validate_config(TrainingConfig(), 300, "modern", bitsandbytes_usable=True)
    assert config.rules == "modern"
    with pytest.raises(InvalidInput):
        validate_config(TrainingConfig(), 300, "legacy")


def test_empty_dataset_is_refused():
    with pytest.raises(DatasetEmpty):
        validate_config(TrainingConfig(), 0)


# ---------------------------------------------------------------- modern rules (TRAINING_SPEC §5.3)


def test_modern_worked_example_keeps_batch_128():
    config, messages = modern(lines=300)
    assert (config.batch_size, config.gradient_accumulation_size) == (128, 4)
    s = derive_schedule(config, 300)
    assert (s.iterations, s.steps_per_epoch, s.drop_last) == (1500, 3, False)  # ceil(500 * ceil(300/128))
    assert (s.print_freq, s.save_checkpoint_freq, s.validation_freq) == (15, 15, 15)
    assert s.lr_milestones == (27, 54, 75, 99)
    assert messages[-1].startswith("For 500 epochs with 300 lines in batches of 128, iterating for 1500")


def test_modern_uneven_split_rounds_steps_up():
    config, _ = modern(dataclasses.replace(TrainingConfig(), epochs=10, batch_size=64), lines=100)
    s = derive_schedule(config, 100)
    assert (s.iterations, s.steps_per_epoch, s.save_checkpoint_freq) == (20, 2, 10)


def test_modern_accumulation_rules():
    c, m = modern(dataclasses.replace(TrainingConfig(), batch_size=100, gradient_accumulation_size=8))
    assert c.gradient_accumulation_size == 4  # 8 - 100 % 8
    c, m = modern(dataclasses.replace(TrainingConfig(), batch_size=100, gradient_accumulation_size=6))
    assert c.gradient_accumulation_size == 2  # 6 - 100 % 6
    c, m = modern(dataclasses.replace(TrainingConfig(), batch_size=6, gradient_accumulation_size=4))
    assert c.gradient_accumulation_size == 3  # 6 / 4 < 2 -> int(6 / 2)
    c, m = modern(dataclasses.replace(TrainingConfig(), batch_size=1, gradient_accumulation_size=0))
    assert (c.batch_size, c.gradient_accumulation_size) == (1, 1)


def test_modern_batch_is_a_multiple_of_the_gpu_count():
    c, m = modern(dataclasses.replace(TrainingConfig(), batch_size=127, gradient_accumulation_size=1, gpus=2))
    assert c.batch_size == 126
    assert any("multiple of the 2 GPUs" in msg for msg in m)


@pytest.mark.parametrize(
    "vram, accumulation", [(80, 4), (40, 4), (24, 16), (12, 32), (8, 32), (6, 64), (4, 128)])
def test_modern_vram_cap(vram, accumulation):
    c, _ = modern(vram_gb=vram)  # batch 128, accumulation 4 -> 32 clips per chunk
    assert c.gradient_accumulation_size == accumulation


def test_modern_batch_larger_than_dataset_and_one_clip():
    c, m = modern(lines=1)
    assert (c.batch_size, c.gradient_accumulation_size) == (1, 1)
    s = derive_schedule(c, 1)
    assert (s.iterations, s.print_freq) == (500, 5)


def test_modern_validation_batch_and_switch():
    c, m = modern(validation_size=10)
    s = derive_schedule(c, 300, validation_size=10)
    assert s.validation_enabled and s.validation_batch_size == 10  # int(128 / 4) = 32, clamped to 10
    s = derive_schedule(c, 300, validation_size=100)
    assert s.validation_batch_size == 32
    c, m = modern(validation_size=0)
    assert any("no validation.txt lines" in msg for msg in m)
    s = derive_schedule(c, 300)
    assert not s.validation_enabled and s.validation_batch_size == 0
    off = derive_schedule(dataclasses.replace(c, use_validation=False), 300, validation_size=10)
    assert not off.validation_enabled


def test_cosine_schedule():
    config = dataclasses.replace(TrainingConfig(), lr_scheme="CosineAnnealingLR_Restart", epochs=40)
    c, _ = modern(config, lines=300)  # 3 steps per epoch, 4 restarts every 10 epochs
    s = derive_schedule(c, 300)
    assert s.lr_restarts == (30, 60, 90, 120) and s.lr_periods == (30,) * 5
    assert s.lr_restart_weights == (0.75, 0.5, 0.25, 0.125)
    assert derive_schedule(TrainingConfig(), 300).lr_restarts == ()


def test_derive_schedule_refuses_an_unvalidated_config():
    with pytest.raises(TrainingError):
        derive_schedule(TrainingConfig(), 100)  # batch 128 > 100 lines
    with pytest.raises(TrainingError):
        derive_schedule(dataclasses.replace(TrainingConfig(), epochs=0), 300)


# ---------------------------------------------------------------- paths checked by Validate


def test_missing_resume_state_is_cleared_and_existing_kept(tmp_path):
    c, m = seed(dataclasses.replace(TrainingConfig(), resume_state=str(tmp_path / "nope.state")))
    assert c.resume_state == "" and any("does not exist; the run will start fresh" in x for x in m)
    state = tmp_path / "10.state"
    state.write_bytes(b"x")
    c, m = seed(dataclasses.replace(TrainingConfig(), resume_state="10.state"), root=tmp_path)
    assert c.resume_state == "10.state"


def test_bitsandbytes_turned_off_without_package_or_gpu():
    c, m = seed(bitsandbytes_usable=False)
    assert not c.use_bitsandbytes and any("BitsAndBytes" in x and "turned off" in x for x in m)
    c, m = seed(bitsandbytes_usable=True)
    assert c.use_bitsandbytes
    # Auto-detection: this test machine has no CUDA GPU, so detection must report a reason.
    reason = detect_bitsandbytes()
    c, m = validate_config(TrainingConfig(), 300)
    assert c.use_bitsandbytes == (reason is None)


# ---------------------------------------------------------------- files


def test_read_dataset_info(tmp_path):
    info = read_dataset_info(make_dataset(tmp_path / "v", 5, validation=2))
    assert (info.train_size, info.validation_size) == (5, 2)
    (tmp_path / "v" / "validation.txt").unlink()
    info = read_dataset_info(tmp_path / "v")
    assert info.validation_path is None and info.validation_size == 0
    with pytest.raises(DatasetEmpty):
        read_dataset_info(tmp_path / "missing")
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "train.txt").write_text("\n\n")
    with pytest.raises(DatasetEmpty):
        read_dataset_info(tmp_path / "e")


EXPECTED_TOP_KEYS = ["name", "model", "gpu_ids", "start_step", "checkpointing_enabled", "fp16",
                     "use_tb_logger", "wandb", "datasets", "networks", "path", "steps", "train", "logger",
                     "ext"]


def test_write_training_files_worked_example(tmp_path):
    paths = AppPaths.from_root(tmp_path)
    make_dataset(paths.training_dir / "alice", 300)
    saved = write_training_files(paths, TrainingConfig(voice="alice"), bitsandbytes_usable=False)
    assert saved.yaml_path == paths.training_dir / "alice" / "train.yaml"
    assert saved.messages[-1] == f"Training settings saved to: {saved.yaml_path}"
    assert saved.config.batch_size == 100 and not saved.config.use_bitsandbytes
    data = yaml.safe_load(saved.yaml_path.read_text(encoding="utf-8"))
    assert list(data) == EXPECTED_TOP_KEYS
    assert data["name"] == "alice" and data["fp16"] is False and data["gpu_ids"] == [0]
    train_set = data["datasets"]["train"]
    assert train_set["path"] == str(paths.training_dir / "alice" / "train.txt")
    assert (train_set["batch_size"], train_set["drop_last"]) == (100, True)
    assert (train_set["max_wav_length"], train_set["conditioning_length"]) == (255995, 44000)
    assert data["datasets"]["val"]["enabled"] is False
    assert data["train"] == {"niter": 1500, "warmup_iter": -1, "mega_batch_factor": 4, "val_freq": 15,
                             "ema_enabled": False, "default_lr_scheme": "MultiStepLR",
                             "gen_lr_steps": [27, 54, 75, 99], "lr_gamma": 0.5}
    assert data["logger"] == {"print_freq": 15, "save_checkpoint_freq": 15, "visual_debug_rate": 15,
                              "keep_states": 0}
    gpt_step = data["steps"]["gpt_train"]
    assert gpt_step["optimizer_params"] == {"lr": 1e-5, "weight_decay": 0.01, "beta1": 0.9, "beta2": 0.96,
                                            "eps": 1e-8}
    assert gpt_step["clip_grad_eps"] == 4.0
    assert gpt_step["losses"]["text_ce"]["weight"] == 0.01 and gpt_step["losses"]["mel_ce"]["weight"] == 1.0
    assert data["path"] == {"pretrain_model_gpt": str(paths.tortoise_models_dir / "autoregressive.pth"),
                            "strict_load": True, "resume_state": None,
                            "run_dir": str(paths.training_dir / "alice" / RUN_FOLDER),
                            "models_dir": str(paths.tortoise_models_dir)}
    assert data["networks"]["gpt"]["kwargs"]["tortoise_compat"] is False
    assert data["networks"]["gpt"]["kwargs"]["layers"] == 30
    assert data["ext"] == {"bitsandbytes": False}
    assert "&id" not in saved.yaml_path.read_text()  # no yaml anchors
    stored = json.loads(saved.json_path.read_text(encoding="utf-8"))
    assert stored["schema_version"] == 1 and stored["batch_size"] == 100
    assert stored["lr_schedule"] == [9, 18, 25, 33] and stored["voice"] == "alice"
    assert not list((paths.training_dir / "alice").glob(".*tmp"))


def test_write_modern_with_validation_resume_and_options(tmp_path):
    folder = make_dataset(tmp_path / "bob", 300, validation=20)
    state = tmp_path / "bob" / RUN_FOLDER / "training_state" / "300.state"
    state.parent.mkdir(parents=True)
    state.write_bytes(b"s")
    config = TrainingConfig(voice="bob", rules="modern", resume_state=str(state), use_half_precision=True,
                            tortoise_compat=True, lr_scheme="CosineAnnealingLR_Restart", keep_states=2)
    saved = write_training_files(folder, config, bitsandbytes_usable=True)
    data = yaml.safe_load(saved.yaml_path.read_text())
    assert data["fp16"] is True and data["ext"]["bitsandbytes"] is True
    assert data["path"]["pretrain_model_gpt"] is None and data["path"]["resume_state"] == str(state)
    assert data["datasets"]["val"]["enabled"] is True and data["datasets"]["val"]["batch_size"] == 20
    assert data["datasets"]["train"]["drop_last"] is False
    assert data["train"]["niter"] == 1500 and data["train"]["restarts"] == [375, 750, 1125, 1500]
    assert data["logger"]["keep_states"] == 2
    assert data["networks"]["gpt"]["kwargs"]["tortoise_compat"] is True


def test_write_with_plain_folder_and_source_model(tmp_path):
    folder = make_dataset(tmp_path / "carol", 10)
    model = tmp_path / "1000_gpt.pth"
    model.write_bytes(b"m")
    saved = write_training_files(folder, TrainingConfig(voice="carol", source_model=str(model)),
                                 bitsandbytes_usable=True)
    data = yaml.safe_load(saved.yaml_path.read_text())
    assert data["path"]["pretrain_model_gpt"] == str(model)
    plain = write_training_files(folder, TrainingConfig(voice="carol"), bitsandbytes_usable=True)
    assert yaml.safe_load(plain.yaml_path.read_text())["path"]["pretrain_model_gpt"] is None


def test_write_errors(tmp_path):
    paths = AppPaths.from_root(tmp_path)
    make_dataset(paths.training_dir / "dan", 10)
    with pytest.raises(TrainingError, match="Resume state .* does not exist"):
        write_training_files(paths, TrainingConfig(voice="dan", resume_state="training/dan/x.state"))
    with pytest.raises(TrainingError, match="Source model .* does not exist"):
        write_training_files(paths, TrainingConfig(voice="dan", source_model="models/nope.pth"))
    with pytest.raises(DatasetEmpty):
        write_training_files(paths, TrainingConfig(voice="eve"))
    with pytest.raises(InvalidInput, match="Choose a Dataset first") as no_dataset:
        write_training_files(paths, TrainingConfig(voice=""))
    assert "cannot be used as a voice name" not in str(no_dataset.value)
    with pytest.raises(InvalidVoiceName):
        write_training_files(paths, TrainingConfig(voice="../x"))
    assert not (paths.training_dir / "dan" / "train.yaml").exists()


def test_write_accepts_an_explicit_dataset_info(tmp_path):
    folder = make_dataset(tmp_path / "fay", 3)
    info = DatasetInfo(folder, folder / "train.txt", 300)
    saved = write_training_files(folder, TrainingConfig(voice="fay"), info, bitsandbytes_usable=True)
    assert saved.schedule.iterations == 1500


def test_round_trip_through_train_json(tmp_path):
    folder = make_dataset(tmp_path / "gus", 300)
    config = TrainingConfig(voice="gus", epochs=50, lr_schedule=(2, 4, 9), batch_size=100, rules="modern",
                            use_half_precision=True, keep_states=3, learning_rate=2e-5)
    saved = write_training_files(folder, config, bitsandbytes_usable=False)
    loaded, messages = load_training_config(folder)
    assert loaded == saved.config
    assert messages[0] == f"Importing from: {folder / 'train.json'}"


def test_import_offers_the_newest_state(tmp_path):
    folder = make_dataset(tmp_path / "hal", 30)
    write_training_files(folder, TrainingConfig(voice="hal"), bitsandbytes_usable=True)
    states = folder / RUN_FOLDER / "training_state"
    states.mkdir(parents=True)
    for step in (50, 1000, 200):
        (states / f"{step}.state").write_bytes(b"s")
    (states / "notes.state").write_bytes(b"s")
    found = find_resume_states(folder / RUN_FOLDER)
    assert [p.name for p in found] == ["1000.state", "200.state", "50.state"]
    loaded, messages = load_training_config(folder)
    assert loaded.resume_state == str(states / "1000.state")
    assert messages[-1] == f"Latest resume found: {states / '1000.state'}"
    loaded, _ = load_training_config(folder, offer_resume=False)
    assert loaded.resume_state == ""
    assert find_resume_states(tmp_path / "nothing") == []


def test_import_errors_and_bad_values(tmp_path):
    folder = tmp_path / "ivy"
    folder.mkdir()
    with pytest.raises(TrainingError, match="Save Training Configuration"):
        load_training_config(folder)
    (folder / "train.json").write_text("{not json")
    with pytest.raises(TrainingError, match="could not be read"):
        load_training_config(folder)
    (folder / "train.json").write_text("[1, 2]")
    with pytest.raises(TrainingError):
        load_training_config(folder)
    (folder / "train.json").write_text(json.dumps({"batch_size": "lots", "epochs": 7, "colour": "red"}))
    loaded, messages = load_training_config(folder)
    assert loaded.batch_size == 128 and loaded.epochs == 7 and loaded.voice == "ivy"
    assert any("batch_size" in m for m in messages) and any("colour" in m for m in messages)


def test_errors_are_app_errors():
    assert issubclass(TrainingError, AppError) and issubclass(DatasetEmpty, AppError)


def test_unknown_lr_scheme_falls_back_to_multistep():
    config, messages = seed(dataclasses.replace(TrainingConfig(), lr_scheme="Linear"))
    assert config.lr_scheme == "MultiStepLR" and any("'Linear' is not one of" in m for m in messages)


def test_yaml_paths_are_absolute_for_a_relative_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_dataset(tmp_path / "jo", 4, validation=1)
    saved = write_training_files("jo", TrainingConfig(voice="jo"), bitsandbytes_usable=True)
    data = yaml.safe_load(saved.yaml_path.read_text())
    assert data["datasets"]["train"]["path"] == str(tmp_path / "jo" / "train.txt")
    assert data["datasets"]["val"]["path"] == str(tmp_path / "jo" / "validation.txt")
    assert data["path"]["run_dir"] == str(tmp_path / "jo" / RUN_FOLDER)
