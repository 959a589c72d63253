"""A new user's first hour in a real chromium against the app on 127.0.0.1 with the tiny models: an
Emotion without the wav2vec2 aligner is refused at once and renders with Cut [Bracketed] Words off;
truncated candidates and the drawn remainder of the samples are shown; control characters are refused
by name; the installation check is in Settings."""

import pytest
from playwright import sync_api

from src.settings import GenerateDefaults, save_generate_defaults
from tests.ui.conftest import open_app_page
from tests.ui.test_browser_generate import (
    MESSAGE_TIMEOUT_MS,
    RUN_TIMEOUT_MS,
    choose_voice,
    expect_message,
    fill,
    run_dirs,
)
from tortoise.redaction import Wav2VecAligner

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def page(browser, served_app):
    page = open_app_page(browser, served_app.url)
    yield page
    page.close()


@pytest.fixture(autouse=True)
def default_generate_values_afterwards(served_app):
    """These runs save an Emotion, Cut [Bracketed] Words off and other last values; the app is shared
    with the other browser tests, so put the defaults back."""
    yield
    save_generate_defaults(served_app.ctx.paths.generate_file, GenerateDefaults())


@pytest.fixture
def missing_aligner(served_app, tmp_path):
    """The served model with a wav2vec2 aligner that is not on this machine (offline, no local copy)."""
    tts = served_app.ctx.engine.get()
    original = tts.aligner
    tts.aligner = Wav2VecAligner(tmp_path / "no-model", tmp_path / "no-tokenizer", local_files_only=True)
    yield tts
    tts.aligner = original


def open_experimental(page):
    page.get_by_text("Experimental", exact=True).click()
    sync_api.expect(page.locator("#gen-enable_redaction")).to_be_visible(timeout=MESSAGE_TIMEOUT_MS)


def set_small_run(page, samples=4):
    choose_voice(page, "amy")
    fill(page, "gen-num_autoregressive_samples", samples)
    fill(page, "gen-diffusion_iterations", 2)


def test_an_emotion_without_the_aligner_is_refused_at_once_then_renders_with_the_switch_off(
    page, served_app, missing_aligner
):
    before = run_dirs(served_app, "amy")
    fill(page, "gen-text", "Hello there.\nHow are you?")
    fill(page, "gen-delimiter", "\\n")
    page.get_by_label("Happy").check()
    set_small_run(page)
    page.locator("#gen-run").click()
    expect_message(page, "This run needs the wav2vec2 aligner")
    sync_api.expect(page.get_by_text("Cut [Bracketed] Words").first).to_be_visible()
    assert run_dirs(served_app, "amy") == before  # refused before any sampling: nothing saved

    open_experimental(page)
    page.locator("#gen-enable_redaction input[type=checkbox]").uncheck()
    page.locator("#gen-run").click()
    sync_api.expect(page.locator("#gen-results")).to_contain_text("combined.wav", timeout=RUN_TIMEOUT_MS)
    new = [d for d in run_dirs(served_app, "amy") if d not in before]
    assert len(new) == 1 and (new[0] / "combined.wav").is_file()
    page.locator("#gen-enable_redaction input[type=checkbox]").check()  # leave the page as found
    page.get_by_label("None", exact=True).first.check()


def test_truncation_and_the_sample_remainder_are_shown_per_line(page, served_app):
    fill(page, "gen-text", "First line to say.\nSecond line to say.")
    fill(page, "gen-delimiter", "\\n")
    set_small_run(page, samples=6)  # the CPU batch is 4: one batch of 4, then one of 2
    page.locator("#gen-run").click()
    # one progress bar while it runs, over the Output player (not also over Results and Notes)
    bars = page.locator(".progress-text")
    sync_api.expect(bars.first).to_be_visible(timeout=MESSAGE_TIMEOUT_MS)
    shown = [i for i in range(bars.count()) if bars.nth(i).is_visible()]
    assert len(shown) == 1
    assert page.locator("#gen-output .progress-text").count() == 1
    notes = page.locator("#gen-notes")
    sync_api.expect(notes).to_contain_text("never emitted a stop code", timeout=RUN_TIMEOUT_MS)
    sync_api.expect(notes).to_contain_text("Line 1: Candidate 1 never emitted a stop code")
    sync_api.expect(notes).to_contain_text("Line 2: Candidate 1 never emitted a stop code")
    sync_api.expect(notes).to_contain_text("All 6 samples were drawn: 1 batch(es) of 4, then one of 2")
    assert "Traceback" not in page.content()


def test_control_characters_are_refused_by_name(page):
    fill(page, "gen-text", "Hello \x1b[31mred\x1b[0m world")
    page.locator("#gen-run").click()
    expect_message(page, "ESC (U+001B)")


def test_the_installation_check_is_in_settings(page):
    page.get_by_role("tab", name="Settings").click()
    report = page.locator("#settings-doctor")
    sync_api.expect(report).to_contain_text("Model autoregressive.pth", timeout=MESSAGE_TIMEOUT_MS)
    sync_api.expect(report).to_contain_text("wav2vec2 aligner")
    sync_api.expect(report).to_contain_text("Disk space")
    page.locator("#settings-doctor-check").click()
    sync_api.expect(report).to_contain_text("ffmpeg")
