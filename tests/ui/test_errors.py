"""ui_handler keeps passwords out of the log: the real Save path of the Settings tab, parameters named
like a secret, deliberate errors whose message carries the value, and the whitespace-only password."""

import logging

import gradio as gr
import pytest

from src.settings import AppSettings, load_settings, save_settings
from src.ui import tab_settings
from src.ui.errors import REDACTED, scrub, secret_values, ui_handler
from tests.app_doubles import FakeTTS, make_context

PASSWORD = "Hunter2-correct-horse"


@pytest.fixture
def ctx(tmp_path):
    context = make_context(tmp_path / "app", FakeTTS())
    save_settings(context.paths.settings_file, AppSettings())
    return context


def test_saving_a_password_that_fails_internally_never_logs_it(ctx, caplog, monkeypatch):
    def broken_save(*args, **kwargs):  # the disk fails while the settings file is written
        raise OSError(f"No space left on device while writing {args[1]!r}")

    monkeypatch.setattr("src.settings_store.save_settings", broken_save)
    with caplog.at_level(logging.INFO), pytest.raises(gr.Error, match="Internal error"):
        tab_settings.save_setting(ctx, "share_password", PASSWORD)
    assert "Internal error in save_setting" in caplog.text and "Traceback" in caplog.text
    assert "share_password" in caplog.text and REDACTED in caplog.text
    assert PASSWORD not in caplog.text
    assert load_settings(ctx.paths.settings_file).value.share_password == ""  # nothing half-saved


def test_a_non_secret_setting_is_still_logged_in_full(ctx, caplog, monkeypatch):
    monkeypatch.setattr("src.settings_store.save_settings", lambda *a, **k: 1 / 0)
    with caplog.at_level(logging.INFO), pytest.raises(gr.Error):
        tab_settings.save_setting(ctx, "output_volume", 0.75)
    assert "0.75" in caplog.text and "ZeroDivisionError" in caplog.text


def test_parameters_named_like_a_secret_are_redacted_in_args_and_traceback(caplog):
    @ui_handler
    def log_in(username: str, password: str) -> None:
        raise ValueError(f"cannot check {password}")

    with caplog.at_level(logging.ERROR), pytest.raises(gr.Error):
        log_in("amy", password="it's 'quoted'")
    assert "amy" in caplog.text and "cannot check ***" in caplog.text
    assert "quoted" not in caplog.text


def test_a_deliberate_error_quoting_the_secret_is_scrubbed(caplog):
    from src.errors import AppError

    @ui_handler
    def save_setting(ctx, name, value):
        raise AppError(f"{name}: {value} was refused")

    with caplog.at_level(logging.INFO), pytest.raises(gr.Error) as caught:
        save_setting(None, "share_password", PASSWORD)
    assert PASSWORD not in caplog.text and "share_password: *** was refused" in caplog.text
    assert PASSWORD in caught.value.message  # the user may see what they typed; the log may not


def test_secret_values_and_scrub():
    def save(ctx, name, value): ...

    assert secret_values(save, (None, "share_password", "pw1"), {}) == ["pw1"]
    assert secret_values(save, (None, "output_volume", "0.5"), {}) == []
    assert secret_values(save, (None, "voice", "a prompt about password reset"), {}) == []
    assert scrub("x 'a\\nb' y a\nb", ["a\nb"]) == "x '***' y ***"


@pytest.mark.parametrize("typed", ["   ", "\t \n"])
def test_a_whitespace_password_is_refused_with_a_message_and_not_saved(ctx, typed, monkeypatch):
    warnings = []
    monkeypatch.setattr(gr, "Warning", warnings.append)
    _, status = tab_settings.save_setting(ctx, "share_password", typed)
    assert "Not saved" in status and "only spaces" in status and warnings
    assert ctx.settings.share_password == ""
    assert load_settings(ctx.paths.settings_file).value.share_password == ""


def test_a_configured_password_in_the_context_is_not_logged(ctx, caplog):
    import dataclasses

    ctx.settings = dataclasses.replace(ctx.settings, share_password=PASSWORD)

    @ui_handler
    def handler(context, text):
        raise RuntimeError("boom")

    with caplog.at_level(logging.ERROR), pytest.raises(gr.Error):
        handler(ctx, "hello")
    assert "AppContext" in caplog.text and "'hello'" in caplog.text
    assert PASSWORD not in caplog.text and PASSWORD not in repr(ctx.settings)
