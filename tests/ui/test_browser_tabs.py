"""History, Utilities and Settings in a real chromium (Playwright) against the app with the tiny
models: Copy Settings from a generated output back into Generate, the settings JSON of an upload,
importing voices from clips and from embedded latents (and generating with them), refusing a
malicious embedded `.pth`, settings that persist across a restart, and serving under /path.
Screenshots of the three tabs go to test-artifacts/.

Needs `pip install playwright` and Debian's `chromium` (apt-get install chromium); else skipped.
"""

import json
import re
import urllib.error
import urllib.request

import pytest
import soundfile as sf
from playwright import sync_api

from src.metadata import read_metadata
from tests.app_doubles import TINY_TTS_OPTIONS, make_voice, tiny_tts
from tests.conftest import REPO_ROOT, speech_like
from tests.generated_files import malicious_latents_b64, metadata, write_generated
from tests.ui.conftest import free_port, open_app_page
from tortoise.latents import ConditioningLatents

expect = sync_api.expect

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ARTIFACTS = REPO_ROOT / "test-artifacts"
RUN_TIMEOUT_MS = 180_000
TIMEOUT_MS = 120_000
SETTINGS = {  # what the generation in `generated` sets, as the Generate controls show it
    "gen-seed": "1234",
    "gen-num_autoregressive_samples": "4",
    "gen-diffusion_iterations": "4",
    "gen-temperature": "0.5",
    "gen-breathing_room": "10",
    "gen-top_p": "0.7",
}
TEXT = "Hello from the history tab."


@pytest.fixture(scope="module")
def model(tiny_models):
    return tiny_tts(tiny_models)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("tabs-root")
    make_voice(root / "voices", "amy", (1.5, 2.0))
    return root


def start_app(root, model, *flags):
    import app

    return app.start(
        ["--root", str(root), "--defer-tts-load", *flags],
        tts_loader=lambda: model,
        tts_options=TINY_TTS_OPTIONS,
    )


@pytest.fixture(scope="module")
def served(root, model):
    running = start_app(
        root, model, "--listen", f"127.0.0.1:{free_port()}", "--output-sample-rate", "24000"
    )
    yield running
    running.close()


def open_page(browser, url):
    return open_app_page(browser, url)  # page-load events (restore) have run; slow on a busy machine


@pytest.fixture
def page(browser, served):
    page = open_page(browser, served.url)
    yield page
    page.close()


def box(page, elem_id):
    return (
        page.locator(f"#{elem_id}")
        .locator("textarea, input[type=text], input[type=number], input[type=password]")
        .first
    )


def fill(page, elem_id, value):
    target = box(page, elem_id)
    target.fill(str(value))
    target.press("Tab")  # Gradio commits number and text boxes on blur


def choose(page, elem_id, option):
    target = page.locator(f"#{elem_id} input").first
    target.click()
    page.get_by_role("option", name=option, exact=True).click()
    expect(target).to_have_value(option)


def open_tab(page, name):
    page.get_by_role("tab", name=name, exact=True).click()


def expect_message(page, text):
    expect(page.get_by_text(text).first).to_be_visible(timeout=TIMEOUT_MS)
    assert "Traceback" not in page.content()


def generate(page, voice, seed):
    open_tab(page, "Generate")
    fill(page, "gen-text", TEXT)
    choose(page, "gen-voice", voice)
    open_experimental(page)
    for elem_id, value in SETTINGS.items():
        fill(page, elem_id, seed if elem_id == "gen-seed" else value)
    page.get_by_label("DDIM").check()
    page.locator("#gen-run").click()
    expect(page.locator("#gen-results")).to_contain_text(str(seed), timeout=RUN_TIMEOUT_MS)


def open_experimental(page):
    """Open the Experimental accordion (its controls are not rendered while it is closed)."""
    if not box(page, "gen-top_p").is_visible():
        page.get_by_text("Experimental", exact=True).click()
    expect(box(page, "gen-top_p")).to_be_visible()


def newest_result(root, voice):
    runs = sorted((root / "results" / voice).iterdir())
    return next(p for p in sorted(runs[-1].glob("*.wav")))


@pytest.fixture(scope="module")
def generated(browser, served, root):
    """One generation through the Generate tab: the output file."""
    page = open_page(browser, served.url)
    generate(page, "amy", 1234)
    page.close()
    return newest_result(root, "amy")


def upload(page, *files):
    page.locator("#util-files input[type=file]").set_input_files([str(f) for f in files])


def screenshot(page, name):
    ARTIFACTS.mkdir(exist_ok=True)
    page.wait_for_timeout(500)  # let transitions finish
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def test_history_copy_settings_fills_generate(page, generated):
    meta = read_metadata(generated)
    assert meta.seed == 1234 and meta.top_p == 0.7
    fill(page, "gen-seed", 5)  # values that Copy Settings must overwrite
    fill(page, "gen-num_autoregressive_samples", 16)
    fill(page, "gen-text", "Something else.")

    open_tab(page, "History")
    expect(page.locator("#history-voice input")).to_have_value("amy")
    table = page.locator("#history-table")
    expect(table).to_contain_text("1234", timeout=TIMEOUT_MS)
    expect(table).to_contain_text("tiny0001")
    expect(table).to_contain_text(TEXT)
    name = f"{generated.parent.name}/{generated.name}"
    choose(page, "history-file", name)
    link = page.locator("#history-audio a").first  # the player's download link: the picked file
    expect(link).to_have_attribute(
        "href", re.compile(re.escape(generated.name) + "$"), timeout=TIMEOUT_MS
    )
    screenshot(page, "history_tab.png")

    page.locator("#history-copy").click()
    expect(page.get_by_role("tab", name="Generate", exact=True)).to_have_attribute(
        "aria-selected", "true"
    )
    expect(box(page, "gen-text")).to_have_value(TEXT, timeout=TIMEOUT_MS)
    open_experimental(page)
    for elem_id, value in SETTINGS.items():
        expect(box(page, elem_id)).to_have_value(value)
    expect(page.get_by_label("DDIM")).to_be_checked()
    expect(page.locator("#gen-voice input")).to_have_value("amy")


def test_utilities_shows_the_settings_json_and_offers_latents(page, generated, root):
    open_tab(page, "Utilities")
    upload(page, generated)
    shown = page.locator("#util-metadata")
    expect(shown).to_contain_text("1234", timeout=TIMEOUT_MS)
    expect(shown).to_contain_text(TEXT)
    expect(shown).to_contain_text("num_autoregressive_samples")
    assert "latents" not in shown.inner_text().replace("Voice Latents", "")
    link = page.locator("#util-latents a").first
    expect(link).to_have_attribute("href", re.compile(r"/cond_latents\.pth$"))
    downloaded = page.request.get(link.get_attribute("href")).body()
    latents = ConditioningLatents.from_bytes(downloaded)  # a plain tensor file (weights_only)
    assert latents.autoregressive.shape[0] == 1
    expect(box(page, "util-voice-name")).to_have_value("amy_2")
    expect(page.locator("#util-copy")).to_be_visible()
    screenshot(page, "utilities_tab.png")
    assert sorted(p.name for p in (root / "voices").iterdir()) == ["amy"]  # no voices/.temp

    page.locator("#util-copy").click()
    expect(box(page, "gen-seed")).to_have_value("1234", timeout=TIMEOUT_MS)


def test_import_from_clips_then_generate(page, root, tmp_path):
    clips = []
    for i, seconds in enumerate((1.2, 1.6)):
        clips.append(tmp_path / f"take {i}.wav")
        sf.write(clips[-1], speech_like(seconds, 44100, seed=i)[0].numpy(), 44100)
    open_tab(page, "Utilities")
    upload(page, *clips)
    expect(page.locator("#util-notes")).to_contain_text("2 files uploaded", timeout=TIMEOUT_MS)
    fill(page, "util-voice-name", "clip voice")
    page.locator("#util-import").click()
    expect(page.locator("#util-import-status")).to_contain_text(
        "Imported voice clip voice with 2 clip(s)", timeout=TIMEOUT_MS
    )
    assert sorted(p.name for p in (root / "voices" / "clip voice").iterdir()) == [
        "take 0.wav",
        "take 1.wav",
    ]
    assert sf.info(str(root / "voices" / "clip voice" / "take 0.wav")).samplerate == 22050

    generate(page, "clip voice", 321)  # the Generate list already has it: no refresh pressed
    assert read_metadata(newest_result(root, "clip voice")).voice == "clip voice"


def test_import_from_embedded_latents_then_generate(page, generated, root):
    open_tab(page, "Utilities")
    upload(page, generated)
    expect(page.locator("#util-latents a").first).to_have_attribute(
        "href", re.compile(r"cond_latents\.pth$"), timeout=TIMEOUT_MS
    )
    fill(page, "util-voice-name", "latent voice")
    page.locator("#util-import").click()
    expect(page.locator("#util-import-status")).to_contain_text(
        "from the latents embedded", timeout=TIMEOUT_MS
    )
    assert [p.name for p in (root / "voices" / "latent voice").iterdir()] == ["cond_latents.pth"]

    generate(page, "latent voice", 654)
    assert read_metadata(newest_result(root, "latent voice")).seed == 654


def test_malicious_embedded_pth_is_refused_and_nothing_runs(page, root, tmp_path):
    marker = tmp_path / "pwned.txt"
    evil = write_generated(tmp_path / "evil.wav", metadata(latents=malicious_latents_b64(marker)))
    open_tab(page, "Utilities")
    upload(page, evil)
    expect(page.locator("#util-notes")).to_contain_text(
        "Embedded latents refused", timeout=TIMEOUT_MS
    )
    expect(page.locator("#util-notes")).to_contain_text("could run code")
    expect(page.locator("#util-metadata")).to_contain_text("1234")
    expect(page.locator("#util-latents")).to_be_hidden()
    fill(page, "util-voice-name", "evil")
    page.locator("#util-import").click()
    expect_message(page, "loading them could run code")
    assert not marker.exists()
    assert not (root / "voices" / "evil").exists()


def test_settings_persist_across_a_restart_and_serve_under_a_path(
    browser, page, served, root, model
):
    open_tab(page, "Settings")
    expect(page.locator("#settings-overrides")).to_contain_text("--output-sample-rate")
    page.get_by_label("Low VRAM (reload TTS)").check()
    expect(page.locator("#settings-status")).to_contain_text("Saved Low VRAM", timeout=TIMEOUT_MS)
    fill(page, "settings-output_volume", 0.8)
    expect(page.locator("#settings-status")).to_contain_text(
        "Saved Output Volume", timeout=TIMEOUT_MS
    )
    fill(page, "settings-sample_batch_size", 8)
    expect(page.locator("#settings-status")).to_contain_text(
        "Saved Sample Batch Size", timeout=TIMEOUT_MS
    )
    page.get_by_label("Check For Updates (restart)").check()
    expect(page.locator("#settings-status")).to_contain_text("Saved Check For Updates", timeout=TIMEOUT_MS)
    choose(page, "settings-whisper_model", "small")
    expect(page.locator("#settings-status")).to_contain_text(
        "Saved Whisper Model", timeout=TIMEOUT_MS
    )
    screenshot(page, "settings_tab.png")
    fill(page, "settings-sample_batch_size", 9999)  # above the maximum: refused and put back
    expect_message(page, "above the maximum 512")
    expect(box(page, "settings-sample_batch_size")).to_have_value("8")

    saved = json.loads((root / "config" / "exec.json").read_text())
    assert (saved["low_vram"], saved["output_volume"], saved["sample_batch_size"]) == (True, 0.8, 8)
    assert saved["whisper_model"] == "small" and saved["check_for_updates"] is True
    assert (
        saved["output_sample_rate"] == 44100
    )  # the --output-sample-rate 24000 of this run is not kept

    served.close()  # restart: a new app on the same folders, served under /voice
    port = free_port()
    restarted = start_app(root, model, "--listen", f"127.0.0.1:{port}/voice")
    try:
        assert restarted.url == f"http://127.0.0.1:{port}/voice/"
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10)
        again = open_page(browser, restarted.url)
        open_tab(again, "Settings")
        expect(again.get_by_label("Low VRAM (reload TTS)")).to_be_checked()
        expect(box(again, "settings-output_volume")).to_have_value("0.8")
        expect(box(again, "settings-sample_batch_size")).to_have_value("8")
        expect(again.locator("#settings-whisper_model input")).to_have_value("small")
        expect(box(again, "settings-output_sample_rate")).to_have_value("44100")
        expect(again.locator("#settings-overrides")).not_to_contain_text("--output-sample-rate")
        # Check For Updates is on: the page load ran it (harmless here: the root is no checkout)
        expect(again.locator("#settings-updates")).to_contain_text("is not a git checkout")
        again.close()
    finally:
        restarted.close()
