"""The Generate tab in a real chromium (Playwright) against the app on 127.0.0.1, tiny models:
a two-line run end to end (files, combined.wav, metadata equal to what was set), a screenshot, and
every bad input shown as a plain message with no traceback on the page.

Needs `pip install playwright` and Debian's `chromium` (apt-get install chromium); else skipped.
"""

import re

import pytest
from playwright import sync_api

from src.metadata import read_metadata
from tests.conftest import REPO_ROOT
from tests.ui.conftest import open_app_page

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ARTIFACTS = REPO_ROOT / "test-artifacts"
RUN_TIMEOUT_MS = 300_000
MESSAGE_TIMEOUT_MS = 120_000
# Gradio's player draws the decoded clip with wavesurfer, in canvases inside a shadow root.
PLAYER_LOADED = """(id) => {
    const host = document.querySelector(id + ' #waveform > div');
    return !!(host && host.shadowRoot && host.shadowRoot.querySelector('canvas'));
}"""


@pytest.fixture
def page(browser, served_app):
    page = open_app_page(browser, served_app.url)  # the page-load restore of the last values has run
    yield page
    page.close()


def fill(page, elem_id, value):
    box = (
        page.locator(f"#{elem_id}").locator("textarea, input[type=text], input[type=number]").first
    )
    box.fill(str(value))
    box.press("Tab")  # Gradio commits number and text boxes on blur


def choose_voice(page, voice):
    box = page.locator("#gen-voice input")
    box.click()
    page.get_by_role("option", name=voice, exact=True).click()
    sync_api.expect(box).to_have_value(voice)


def run_dirs(served_app, voice):
    folder = served_app.ctx.paths.results_dir / voice
    return sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []


def expect_message(page, text):
    sync_api.expect(page.get_by_text(text).first).to_be_visible(timeout=MESSAGE_TIMEOUT_MS)
    assert "Traceback" not in page.content()


def test_two_line_run_end_to_end(page, served_app):
    before = run_dirs(served_app, "amy")
    fill(page, "gen-text", "Hello there.\n\nHow are you today?")
    fill(page, "gen-delimiter", "\\n")
    choose_voice(page, "amy")
    fill(page, "gen-seed", 1234)
    fill(page, "gen-num_autoregressive_samples", 4)
    fill(page, "gen-diffusion_iterations", 4)
    fill(page, "gen-temperature", 0.5)
    page.get_by_label("DDIM").check()
    page.locator("#gen-run").click()

    sync_api.expect(page.locator("#gen-results")).to_contain_text("1234", timeout=RUN_TIMEOUT_MS)
    # the player really decoded and drew the clip, and the voice sample is shown too
    page.wait_for_function(PLAYER_LOADED, arg="#gen-output", timeout=MESSAGE_TIMEOUT_MS)
    page.wait_for_function(PLAYER_LOADED, arg="#gen-source_sample", timeout=MESSAGE_TIMEOUT_MS)
    expect_message(page, "Skipped 1 empty line(s).")

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "generate_tab.png"), full_page=True)

    new = [d for d in run_dirs(served_app, "amy") if d not in before]
    assert len(new) == 1
    combined = new[0] / "combined.wav"
    assert combined.is_file() and (new[0] / "input.txt").is_file()
    assert sorted(p.name for p in new[0].glob("*.wav")) == ["combined.wav"]  # per-line clips pruned
    meta = read_metadata(combined)
    used = {
        "text": "Hello there.\n\nHow are you today?",
        "delimiter": "\\n",
        "voice": "amy",
        "seed": 1234,
        "num_autoregressive_samples": 4,
        "diffusion_iterations": 4,
        "temperature": 0.5,
        "diffusion_sampler": "DDIM",
        "candidates": 1,
        "emotion": "None",
        "top_p": 0.8,
        "cond_free_k": 2.0,
        "breathing_room": 8,
        "cvvp_weight": 0.0,
        "model_hash": "tiny0001",
    }
    assert {key: getattr(meta, key) for key in used} == used


@pytest.mark.parametrize(
    ("voice", "message"),
    [
        ("microphone", "there is no recording"),
        ("empty", "its folder has no audio"),
        ("broken", "bad.wav: cannot be read"),
    ],
)
def test_voice_problems_are_plain_messages(page, voice, message):
    fill(page, "gen-text", "Hello.")
    choose_voice(page, voice)
    page.locator("#gen-run").click()
    expect_message(page, message)


def test_empty_prompt_is_a_plain_message(page):
    fill(page, "gen-text", "")
    page.locator("#gen-run").click()
    expect_message(page, "Please provide text")
    page.wait_for_timeout(600)  # let the toast finish sliding in
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "generate_error.png"))


def test_stop_mid_run_saves_nothing(page, served_app):
    before = run_dirs(served_app, "amy")
    fill(page, "gen-text", "A line to stop.\nAnother line.\nAnd a third one.")
    fill(page, "gen-delimiter", "\\n")
    choose_voice(page, "amy")
    fill(page, "gen-num_autoregressive_samples", 16)
    fill(page, "gen-diffusion_iterations", 100)
    page.locator("#gen-run").click()
    sync_api.expect(page.get_by_text(re.compile("speech tokens|diffusion")).first).to_be_visible(
        timeout=MESSAGE_TIMEOUT_MS
    )
    page.locator("#gen-stop").click()
    expect_message(page, "Generation stopped. Nothing was saved.")
    assert run_dirs(served_app, "amy") == before
