"""Fast mode in a real chromium against the app on 127.0.0.1 (tiny models): pick Mode Fast, press Run, and
the live player starts playing while lines are still being generated; the files carry the mode. Plus the
`generate_fast` API endpoint."""

import dataclasses
import time

import pytest
from playwright import sync_api

from src.metadata import read_metadata
from src.settings import load_generate_defaults, save_generate_defaults
from tests.ui.conftest import open_app_page
from tortoise import StreamSettings

pytestmark = [pytest.mark.browser, pytest.mark.slow]

RUN_TIMEOUT_MS = 180_000
LINES = 6
PLAYING = """() => {
    const audio = document.querySelector('#gen-stream_output audio');
    return !!(audio && !audio.paused && audio.currentTime > 0);
}"""


@pytest.fixture(autouse=True)
def standard_mode_afterwards(served_app):
    """A fast run saves Mode Fast as the last value; put Standard back for the other browser tests."""
    yield
    path = served_app.ctx.paths.generate_file
    saved = load_generate_defaults(path).value
    save_generate_defaults(path, dataclasses.replace(saved, generation_mode="Standard"))


@pytest.fixture
def slow_fast_mode(served_app, monkeypatch):
    """Small chunks, and a pause after each one so that a run lasts longer than the start of playback
    (the tiny models are otherwise done before a browser could play anything)."""
    fast = served_app.ctx.fast_generator
    monkeypatch.setattr(fast, "stream_settings", StreamSettings(4, 4, 256))
    original = fast.stream

    def paced(request):
        for update in original(request):
            yield update
            if update.audio is not None:
                time.sleep(0.4)

    monkeypatch.setattr(fast, "stream", paced)
    return fast


@pytest.fixture
def page(browser, served_app):
    page = open_app_page(browser, served_app.url)  # the page-load restore has run
    yield page
    page.close()


def run_dirs(served_app, voice):
    folder = served_app.ctx.paths.results_dir / voice
    return sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []


def test_fast_mode_plays_before_the_run_ends(page, served_app, slow_fast_mode):
    before = run_dirs(served_app, "amy")
    text = "\n".join(f"This is line number {i}." for i in range(LINES))
    page.locator("#gen-text textarea").fill(text)
    delimiter = page.locator("#gen-delimiter textarea, #gen-delimiter input").first
    delimiter.fill("\\n")
    delimiter.press("Tab")
    box = page.locator("#gen-voice input")
    box.click()
    page.get_by_role("option", name="amy", exact=True).click()
    page.locator("#gen-generation_mode").get_by_label("Fast").check()
    sync_api.expect(page.locator("#gen-run-fast")).to_be_visible()
    sync_api.expect(page.locator("#gen-run")).to_be_hidden()
    page.locator("#gen-run-fast").click()

    page.wait_for_function(PLAYING, timeout=RUN_TIMEOUT_MS)
    # playing already, and the run has not finished: no new results row, no combined.wav yet
    after = run_dirs(served_app, "amy")
    assert len(after) == len(before) + 1
    assert not (after[-1] / "combined.wav").exists()
    assert "Seed used" not in page.locator("#gen-notes").inner_text()

    sync_api.expect(page.locator("#gen-notes")).to_contain_text("Seed used", timeout=RUN_TIMEOUT_MS)
    combined = after[-1] / "combined.wav"
    assert combined.is_file() and read_metadata(combined).generation_mode == "Fast"
    assert "Traceback" not in page.content()


def test_generate_fast_api_returns_the_saved_file(served_app):
    from gradio_client import Client

    client = Client(served_app.url, verbose=False)
    job = client.submit(text="Hello from the fast API.", voice="amy", seed=9, preset=None, mic_audio=None,
                        api_name="/generate_fast")
    outputs = job.result(timeout=RUN_TIMEOUT_MS / 1000)
    _stream, output, results, notes = outputs
    assert output.endswith(".wav") and results["data"][0][0] == 9 and "Seed used: **9**" in notes
    produced = run_dirs(served_app, "amy")[-1] / "result.wav"
    assert read_metadata(produced).generation_mode == "Fast"
