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
    updates, status = tab_settings.page_load(ctx, checker)
    assert updates == {"__type__": "update"} and calls == [] and "not loaded" in status
    tab_settings.save_setting(ctx, "check_for_updates", True)
    updates, _ = tab_settings.page_load(ctx, checker)
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
    on_load = [fn for fn in demo.fns.values() if fn.outputs == [c["updates"], c["status"]]]
    assert [fn.targets for fn in on_load] == [[(0, "load")]]  # the update check runs on page load
