"""Changing one setting from the Settings tab: check it, apply it to this run, and write it to
config/exec.json without also writing the values that command-line flags set for this run only."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

from src.errors import InvalidInput, SettingsError
from src.settings import (
    IMMEDIATE,
    RESTART,
    TTS_RELOAD,
    AppSettings,
    field_specs,
    load_settings,
    save_settings,
    update_setting,
)
from src.training.asr import check_whisper_model

WHEN = {
    RESTART: "takes effect after you restart the app",
    TTS_RELOAD: "takes effect at the next (Re)Load TTS",
    IMMEDIATE: "applies now",
}
WHEN_DEFAULT = "applies from the next use"


@dataclass(frozen=True)
class SettingChange:
    """The result of `change_setting`.

    Attributes:
        settings: the settings for this run, with the change (unchanged when `changed` is False).
        changed: False when the value equals the one in effect (nothing was written).
        message: one sentence for the UI: what was saved and when it takes effect.
    """

    settings: AppSettings
    changed: bool
    message: str


def change_setting(
    settings_file: str | os.PathLike[str], current: AppSettings, name: str, value: Any,
    root: str | os.PathLike[str] | None = None,
) -> SettingChange:
    """Apply `name = value` to `current` and save it to `settings_file`.

    The file is re-read and only this one field is changed in it, so values given on the command
    line for this run (which `current` holds) are not written back unless the user changes them
    here. The file is written atomically. A Whisper Model path is checked and stored absolute
    (relative ones are taken from `root`, the app folder).

    Raises:
        SettingsError: unknown name, or a value of the wrong type or out of range, or a Whisper model
            path that does not exist or holds another kind of model (nothing saved).
    """
    if name == "whisper_model":
        try:
            value = check_whisper_model(str(value or ""), root)
        except InvalidInput as error:
            raise SettingsError(str(error)) from None
    updated = update_setting(current, name, value)
    if getattr(updated, name) == getattr(current, name):
        return SettingChange(current, False, "")
    stored = update_setting(load_settings(settings_file).value, name, getattr(updated, name))
    save_settings(settings_file, stored)
    spec = next(s for s in field_specs(AppSettings) if s.name == name)
    when = WHEN.get(spec.takes_effect, WHEN_DEFAULT)
    return SettingChange(updated, True, f"Saved {spec.label}; it {when}.")


def command_line_overrides(
    settings_file: str | os.PathLike[str], current: AppSettings
) -> list[str]:
    """Names of the settings whose value in effect differs from config/exec.json (set by flags)."""
    stored = load_settings(settings_file).value
    return [
        f.name
        for f in dataclasses.fields(AppSettings)
        if getattr(stored, f.name) != getattr(current, f.name)
    ]
