"""Changing one setting: applied to this run, saved alone, command-line values never written."""

import json

import pytest

from src.errors import SettingsError
from src.settings import AppSettings, load_settings, save_settings
from src.settings_store import change_setting, command_line_overrides


@pytest.fixture
def settings_file(tmp_path):
    path = tmp_path / "config" / "exec.json"
    save_settings(path, AppSettings(output_volume=0.5))
    return path


def test_a_change_is_applied_and_saved_without_the_command_line_values(settings_file):
    # this run: the file's values, plus --output-sample-rate 24000 --listen 0.0.0.0:9000 given as flags
    current = AppSettings(output_volume=0.5, output_sample_rate=24000, listen="0.0.0.0:9000")
    change = change_setting(settings_file, current, "low_vram", True)
    assert change.changed and change.settings.low_vram is True
    assert change.settings.output_sample_rate == 24000  # still in effect for this run
    assert "Low VRAM" in change.message and "(Re)Load TTS" in change.message
    stored = load_settings(settings_file).value
    assert stored == AppSettings(output_volume=0.5, low_vram=True)
    assert json.loads(settings_file.read_text())["schema_version"] == 1


def test_changing_a_command_line_value_here_saves_it(settings_file):
    current = AppSettings(output_sample_rate=24000)
    change = change_setting(settings_file, current, "output_sample_rate", 48000)
    assert load_settings(settings_file).value.output_sample_rate == 48000
    assert "next use" in change.message


def test_restart_and_immediate_messages(settings_file):
    assert (
        "restart" in change_setting(settings_file, AppSettings(), "listen", "0.0.0.0:80/x").message
    )
    assert (
        "applies now"
        in change_setting(settings_file, AppSettings(), "autoregressive_model", "/m.pth").message
    )


def test_blank_text_clears_an_optional_setting(settings_file):
    change = change_setting(settings_file, AppSettings(listen="1.2.3.4"), "listen", "  ")
    assert change.settings.listen is None


def test_same_value_writes_nothing(settings_file):
    before = settings_file.stat().st_mtime_ns
    change = change_setting(settings_file, AppSettings(output_volume=0.5), "output_volume", 0.5)
    assert not change.changed and change.message == ""
    assert settings_file.stat().st_mtime_ns == before


@pytest.mark.parametrize(
    ("name", "value"), [("output_volume", 5.0), ("whisper_model", "huge"), ("nope", 1)]
)
def test_bad_values_are_refused_and_nothing_is_saved(settings_file, name, value):
    before = settings_file.read_text()
    with pytest.raises(SettingsError):
        change_setting(settings_file, AppSettings(), name, value)
    assert settings_file.read_text() == before


def test_command_line_overrides_are_the_values_that_differ_from_the_file(settings_file, tmp_path):
    current = AppSettings(
        output_volume=0.5, output_sample_rate=24000, do_not_load_tts_on_startup=True
    )
    assert command_line_overrides(settings_file, current) == [
        "do_not_load_tts_on_startup",
        "output_sample_rate",
    ]
    assert command_line_overrides(tmp_path / "missing.json", AppSettings()) == []
