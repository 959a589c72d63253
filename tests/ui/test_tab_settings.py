"""The Settings tab with a FakeTTS: one control per declared setting in two columns with restart
marks, saving on change (never the command-line values), model list, (Re)Load TTS, update check."""

import json

import gradio as gr
import pytest

from src.settings import RESTART, AppSettings, field_specs, load_settings, save_settings
from src.ui import tab_settings
from src.ui.app_ui import build_ui
from src.updates import BEHIND, UpdateChecker, UpdateStatus
from tests.app_doubles import FakeTTS, make_context
from tortoise.device import list_devices


@pytest.fixture
def loads():
    return []


@pytest.fixture
def ctx(tmp_path, loads):
    context = make_context(tmp_path / "app", FakeTTS())
    save_settings(context.paths.settings_file, AppSettings(output_volume=0.5))
    # this run: the file, plus --output-sample-rate 24000 on the command line
    context.settings = AppSettings(output_volume=0.5, output_sample_rate=24000)

    def loader():
        loads.append(context.settings.autoregressive_model)
        return FakeTTS(model_name=f"model{len(loads)}")

    context.tts_loader = loader
    return context


@pytest.fixture
def built(ctx):
    with gr.Blocks() as demo:
        c = tab_settings.build(ctx)
    return demo, c


def test_every_setting_has_a_control_in_its_column_with_restart_marks(built):
    demo, c = built
    for spec in field_specs(AppSettings):
        control = c[spec.name]
        assert control.label.startswith(spec.label)
        assert control.label.endswith("(restart)") == (
            spec.takes_effect == RESTART and spec.name != "device_override"
        )
    assert c["device_override"].label.endswith("(reload TTS)")
    assert c["low_vram"].label.endswith("(reload TTS)")
    assert c["output_volume"].value == 0.5 and c["output_sample_rate"].value == 24000
    assert c["listen"].value == "" and c["share_password"].type == "password"
    assert c["whisper_model"].choices[0] == ("tiny", "tiny")


def test_device_and_model_choices(built, ctx):
    _, c = built
    devices = [value for _, value in c["device_override"].choices]
    assert devices == [""] + [device for device, _ in list_devices()]
    assert c["device_override"].value == ""
    assert c["autoregressive_model"].choices[0][1] == "" and c["autoregressive_model"].value == ""


def test_command_line_values_are_pointed_out(built):
    _, c = built
    assert "Output Sample Rate (`--output-sample-rate`)" in c["overrides"].value


def test_a_change_is_applied_and_saved_alone(ctx):
    control, status = tab_settings.save_setting(ctx, "low_vram", True)
    assert ctx.settings.low_vram is True and ctx.settings.output_sample_rate == 24000
    assert "Saved Low VRAM" in status
    stored = json.loads(ctx.paths.settings_file.read_text())
    assert (
        stored["low_vram"] is True and stored["output_sample_rate"] == 44100
    )  # not the flag's 24000
    assert stored["output_volume"] == 0.5
    unchanged = tab_settings.save_setting(ctx, "low_vram", True)
    assert unchanged == ({"__type__": "update"}, {"__type__": "update"})


def test_numbers_and_text(ctx):
    tab_settings.save_setting(ctx, "concurrency_count", 4.0)
    tab_settings.save_setting(ctx, "listen", "0.0.0.0:8080/tts")
    stored = load_settings(ctx.paths.settings_file).value
    assert (stored.concurrency_count, stored.listen) == (4, "0.0.0.0:8080/tts")
    tab_settings.save_setting(ctx, "listen", "")
    assert load_settings(ctx.paths.settings_file).value.listen is None


def test_a_bad_value_is_refused_and_the_control_put_back(ctx):
    before = ctx.paths.settings_file.read_text()
    with pytest.warns(UserWarning, match="above the maximum"):
        control, status = tab_settings.save_setting(ctx, "output_volume", 9.0)
    assert control["value"] == 0.5 and status.startswith("Not saved")
    assert ctx.paths.settings_file.read_text() == before and ctx.settings.output_volume == 0.5


def test_model_choice_swaps_a_loaded_model_at_once(ctx, loads):
    model = ctx.paths.training_dir / "amy" / "finetune" / "models" / "500_gpt.pth"
    model.parent.mkdir(parents=True)
    model.write_bytes(b"w")
    choices = tab_settings.refresh_models(ctx)["choices"]
    assert choices[-1] == ("training/amy/finetune/models/500_gpt.pth", str(model.resolve()))
    ctx.engine.get()
    control, status = tab_settings.save_setting(ctx, "autoregressive_model", str(model))
    assert loads == [None, str(model.resolve())] and "model2" in status
    assert load_settings(ctx.paths.settings_file).value.autoregressive_model == str(model.resolve())
    with pytest.warns(UserWarning, match="was not found"):
        control, status = tab_settings.save_setting(ctx, "autoregressive_model", "/nope.pth")
    assert control["value"] == str(model.resolve())


def test_reload_tts_loads_again_with_the_new_device(ctx, loads, capsys):
    tab_settings.save_setting(ctx, "device_override", "cpu")
    assert loads == []  # saved; applied at the next (Re)Load TTS
    status = tab_settings.reload_tts(ctx)
    assert loads == [None] and "model1" in status
    assert ctx.settings.device_override == "cpu"


def test_update_check_on_page_load_only_when_enabled(ctx):
    calls = []

    def fake(root):
        calls.append(root)
        return UpdateStatus(BEHIND, "An update is available: 1 new commit(s) on origin/master.", 1)

    checker = UpdateChecker(ctx.paths.root, check=fake)
    updates, status, *_ = tab_settings.page_load(ctx, checker)
    assert updates == {"__type__": "update"} and calls == [] and "not loaded" in status
    tab_settings.save_setting(ctx, "check_for_updates", True)
    updates, *_ = tab_settings.page_load(ctx, checker)
    assert "An update is available" in updates and len(calls) == 1
    assert "An update is available" in tab_settings.check_updates(checker, force=True)
    assert len(calls) == 2


def test_outside_a_checkout_the_button_is_harmless(ctx):
    message = tab_settings.check_updates(UpdateChecker(ctx.paths.root), force=True)
    assert "not a git checkout" in message


def test_settings_tab_in_the_app(ctx):
    demo = build_ui(ctx)
    c = demo.app_components["settings"]
    assert set(c) >= {f.name for f in field_specs(AppSettings)}
    on_load = [fn for fn in demo.fns.values() if fn.outputs[:2] == [c["updates"], c["status"]]]
    assert [fn.targets for fn in on_load] == [[(0, "load")]]  # the update check runs on page load
    assert on_load[0].outputs[2:] == [c[spec.name] for spec in field_specs(AppSettings)]


def test_page_load_shows_the_settings_in_effect_and_new_checkpoints(ctx):
    tab_settings.save_setting(ctx, "whisper_backend", "faster-whisper")
    checkpoint = ctx.paths.training_dir / "amy" / "finetune" / "models" / "10_gpt.pth"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(b"weights")  # written by a run after the page was built
    _, _, *values = tab_settings.page_load(ctx, UpdateChecker(ctx.paths.root))
    by_name = dict(zip([s.name for s in field_specs(AppSettings)], values, strict=True))
    assert by_name["whisper_backend"]["value"] == "faster-whisper"
    assert by_name["output_volume"]["value"] == 0.5 and by_name["output_sample_rate"]["value"] == 24000
    assert str(checkpoint.resolve()) in [v for _, v in by_name["autoregressive_model"]["choices"]]
    assert tab_settings.refresh_models(ctx)["choices"] == by_name["autoregressive_model"]["choices"]


def test_a_whisper_model_path_is_saved_and_bad_ones_are_refused(ctx, tmp_path):
    import torch

    folder = tmp_path / "ct2"
    folder.mkdir()
    (folder / "model.bin").write_bytes(b"x")
    _, message = tab_settings.save_setting(ctx, "whisper_model", str(folder))
    assert ctx.settings.whisper_model == str(folder.resolve()) and "Saved Whisper Model" in message
    assert load_settings(ctx.paths.settings_file).value.whisper_model == str(folder.resolve())
    checkpoint = tmp_path / "tiny.pt"
    torch.save({"dims": {"n_mels": 80}, "model_state_dict": {}}, checkpoint)
    tab_settings.save_setting(ctx, "whisper_model", str(checkpoint))
    assert ctx.settings.whisper_model == str(checkpoint.resolve())
    other = tmp_path / "other.pt"
    torch.save({"weight": torch.zeros(2)}, other)
    for bad, why in ((str(tmp_path / "missing.pt"), "does not exist"), (str(other), "another kind of model"),
                     (str(tmp_path), "no model.bin")):  # fmt: skip
        control, message = tab_settings.save_setting(ctx, "whisper_model", bad)
        assert why in message and control["value"] == str(checkpoint.resolve())
    assert ctx.settings.whisper_model == str(checkpoint.resolve())
    tab_settings.save_setting(ctx, "whisper_model", "tiny.en")
    assert ctx.settings.whisper_model == "tiny.en"


def test_a_corrupt_settings_file_is_shown_in_a_banner(tmp_path):
    context = make_context(tmp_path / "app", FakeTTS())
    context.paths.settings_file.parent.mkdir(parents=True, exist_ok=True)
    context.paths.settings_file.write_text("{ not json")
    loaded = load_settings(context.paths.settings_file)
    context.startup_warnings = loaded.warnings
    with gr.Blocks():
        c = tab_settings.build(context)
    assert c["banner"].visible and "exec.json" in c["banner"].value and "exec.json.bak" in c["banner"].value
