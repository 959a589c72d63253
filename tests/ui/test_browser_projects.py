"""The Projects tab in a real chromium against the app on 127.0.0.1 with the tiny models: a 6-segment
project renders in the background, segment 3 is regenerated and its second take picked, and after the
re-stitch combined.wav differs from before only inside segment 3's span. Bad input shows plain messages.
"""

import re

import numpy as np
import pytest
import soundfile as sf
from playwright import sync_api

from src.projects.stitch import span_bounds
from tests.conftest import REPO_ROOT
from tests.ui.conftest import open_app_page

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ARTIFACTS = REPO_ROOT / "test-artifacts"
RENDER_TIMEOUT_MS = 300_000
MESSAGE_TIMEOUT_MS = 30_000
TEXT = (
    "The birch canoe slid on the smooth planks. Glue the sheet to the dark blue background.\n"
    "It is easy to tell the depth of a well. These days a chicken leg is a rare dish.\n"
    "Rice is often served in round bowls. The juice of lemons makes fine punch."
)


def fill(page, elem_id, value):
    box = page.locator(f"#{elem_id}").locator("textarea, input[type=text], input[type=number]").first
    box.fill(str(value))
    box.press("Tab")  # Gradio commits number and text boxes on blur


def choose(page, elem_id, option):
    page.locator(f"#{elem_id} input").click()
    page.get_by_role("option", name=option).first.click()


def expect_message(page, text):
    sync_api.expect(page.get_by_text(text).first).to_be_visible(timeout=MESSAGE_TIMEOUT_MS)
    assert "Traceback" not in page.content()


@pytest.fixture
def page(browser, served_app):
    page = open_app_page(browser, served_app.url)  # the page-load restore has run
    page.set_viewport_size({"width": 1400, "height": 1400})
    fill(page, "gen-seed", 4321)  # the project takes its settings from the Generate tab
    fill(page, "gen-num_autoregressive_samples", 2)
    fill(page, "gen-diffusion_iterations", 4)
    fill(page, "gen-candidates", 1)
    page.get_by_role("tab", name="Projects").click()
    page.wait_for_selector("#proj-name textarea, #proj-name input")
    yield page
    page.close()


def combined(folder):
    data, _ = sf.read(str(folder / "combined.wav"), dtype="int16")
    return data


def test_six_segment_project_regenerate_pick_and_restitch(page, served_app):
    projects = served_app.ctx.projects
    fill(page, "proj-name", "browser-book")
    choose(page, "proj-voice", "amy")
    fill(page, "proj-text", TEXT)
    page.locator("#proj-create").click()
    status = page.locator("#proj-status")
    sync_api.expect(status).to_contain_text("6/6 segments done", timeout=RENDER_TIMEOUT_MS)
    sync_api.expect(page.locator("#proj-rows")).to_contain_text(
        "Rice is often served", timeout=MESSAGE_TIMEOUT_MS
    )

    folder = projects.folder("amy", "browser-book")
    project = projects.open("amy", "browser-book").project
    assert len(project.rows) == 6 and all(len(row.candidates) == 1 for row in project.rows)
    before = combined(folder)
    third = project.rows[2]
    start, old_end = span_bounds(project)[third.id]

    fill(page, "proj-row", 3)
    sync_api.expect(page.locator("#proj-row-text textarea")).to_have_value(
        third.text, timeout=MESSAGE_TIMEOUT_MS
    )
    page.locator("#proj-regenerate").click()
    expect_message(page, "Segment 3 is queued.")

    def regenerated():
        row = projects.open("amy", "browser-book").project.rows[2]
        return len(row.candidates) == 2 and row.status == "done"

    page.wait_for_function("() => true")  # let the click's events settle before polling the files
    deadline_ms = RENDER_TIMEOUT_MS
    while not regenerated() and deadline_ms > 0:
        page.wait_for_timeout(250)
        deadline_ms -= 250
    assert regenerated(), "segment 3 was not regenerated"
    fill(page, "proj-row", 2)  # select another row and back, so the takes list is read again
    fill(page, "proj-row", 3)
    choose(page, "proj-take", re.compile(r"^Take 1 "))
    choose(page, "proj-take", re.compile(r"^Take 2 "))
    page.locator("#proj-pick").click()
    sync_api.expect(page.locator("#proj-take input")).to_have_value(re.compile(r"Take 2 .*chosen"),
                                                                    timeout=MESSAGE_TIMEOUT_MS)  # fmt: skip
    page.locator("#proj-restitch").click()
    expect_message(page, "combined.wav holds 6 segment(s).")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "projects-tab.png"), full_page=True)

    project = projects.open("amy", "browser-book").project
    assert project.rows[2].chosen == 1
    after = combined(folder)
    new_end = span_bounds(project)[third.id][1]
    assert np.array_equal(after[:start], before[:start])
    assert np.array_equal(after[new_end:], before[old_end:])
    assert not np.array_equal(after[start:new_end], before[start:old_end])


def test_bad_project_input_shows_plain_messages(page):
    page.locator("#proj-create").click()
    expect_message(page, "Please give the project a name.")
    fill(page, "proj-name", "empty-text")
    choose(page, "proj-voice", "amy")
    page.locator("#proj-create").click()
    expect_message(page, "the project text is empty")
    page.locator("#proj-regenerate").click()
    expect_message(page, "Pick a project first")


def test_a_two_voice_script_project_with_markup(page, served_app):
    from tests.app_doubles import make_voice

    make_voice(served_app.ctx.paths.voices_dir, "script-bob", (1.5,), seed=9)
    fill(page, "proj-name", "browser-script")
    choose(page, "proj-voice", "amy")
    page.locator("#proj-script input").check()
    fill(page, "proj-text", "amy: Hello there.\nghost: Boo.\nnobody: Hi.")
    page.locator("#proj-create").click()
    expect_message(page, "'ghost' (line 2)")  # every unknown voice is listed before anything is created
    expect_message(page, "'nobody' (line 3)")
    assert not served_app.ctx.projects.folder("amy", "browser-script").exists()

    fill(page, "proj-text", "amy: Hello there. [pause 0.5s]\nscript-bob: {speed 1.5}Goodbye now.{/speed}")
    page.locator("#proj-create").click()
    status = page.locator("#proj-status")
    sync_api.expect(status).to_contain_text("2/2 segments done", timeout=RENDER_TIMEOUT_MS)
    sync_api.expect(page.locator("#proj-rows")).to_contain_text("script-bob", timeout=MESSAGE_TIMEOUT_MS)
    project = served_app.ctx.projects.open("amy", "browser-script").project
    rows = [(r.voice, r.speed, r.pause_s) for r in project.rows]
    assert rows == [(None, 1.0, 0.5), ("script-bob", 1.5, 0.3)]
    page.locator("#proj-regen-flagged").click()
    expect_message(page, "No segment is flagged")
