"""A real app served on 127.0.0.1 with the tiny golden models, for the API and browser tests."""

import shutil
import socket

import pytest
from playwright import sync_api

from tests.app_doubles import TINY_TTS_OPTIONS, make_voice, tiny_tts, write_corrupt_clip


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
