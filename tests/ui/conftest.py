"""A real app served on 127.0.0.1 with the tiny golden models, for the API and browser tests."""

import shutil
import socket

import pytest
from playwright import sync_api

from tests.app_doubles import TINY_TTS_OPTIONS, make_voice, tiny_tts, write_corrupt_clip

# Generous upper bounds: on a busy 2-core machine a page load or a toast can take a minute. Every wait below
# ends as soon as its condition holds, so a fast machine never waits this long.
ACTION_TIMEOUT_MS = 120_000
PAGE_TIMEOUT_MS = 180_000
sync_api.expect.set_options(timeout=ACTION_TIMEOUT_MS)


def open_app_page(browser, url: str, *, ready_selector: str = "#app-ready [data-ready]"):
    """A new page on the app at `url`, returned once the app's page-load events have run.

    Waits on the app's own readiness marker (set after the last Generate values are restored), not on
    network silence, which a page with timers may never reach.
    """
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(ACTION_TIMEOUT_MS)
    page.set_default_navigation_timeout(PAGE_TIMEOUT_MS)
    return goto_app(page, url, ready_selector=ready_selector)


def goto_app(page, url: str, *, ready_selector: str = "#app-ready [data-ready]"):
    """(Re)load the app in `page` and wait for its readiness marker; returns the page."""
    page.goto(url)
    page.wait_for_selector(ready_selector, state="attached", timeout=PAGE_TIMEOUT_MS)
    return page


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def served_app(tmp_path_factory, tiny_models):
    """`app.start` on a fresh root with voices `amy` (2 clips), `empty` (no clips) and `broken`."""
    import app

    root = tmp_path_factory.mktemp("app-root")
    make_voice(root / "voices", "amy", (1.5, 2.0))
    (root / "voices" / "empty").mkdir(parents=True)
    broken = root / "voices" / "broken"
    broken.mkdir()
    write_corrupt_clip(broken / "bad.wav")
    model = tiny_tts(tiny_models)
    running = app.start(
        [
            "--root",
            str(root),
            "--listen",
            f"127.0.0.1:{free_port()}",
            "--defer-tts-load",
            "--output-sample-rate",
            "24000",
        ],
        tts_loader=lambda: model,
        tts_options=TINY_TTS_OPTIONS,
    )
    yield running
    running.close()


@pytest.fixture(scope="module")
def browser():
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    assert executable, "chromium is missing: ./test.sh installs it with apt-get (Debian package chromium)"
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield browser
        browser.close()
