"""Settings that stick, in a real chromium against the app on 127.0.0.1: every setting of the registry is
changed through its control (typed values confirmed with Enter), saved to config/exec.json, and shown
again after a page reload (the services use it too); a checkpoint written after the page was built
appears in the model list without Refresh; a corrupt exec.json shows a banner naming the .bak copy; and
Prepare Dataset's bar advances clip by clip."""

import json
import threading
import time

import pytest
from playwright.sync_api import expect

from src.paths import AppPaths
from src.settings import AppSettings, field_specs
from tests.app_doubles import TINY_TTS_OPTIONS, FakeTTS, make_voice
from tests.training_doubles import ScriptedTranscriber
from tests.ui.conftest import free_port
from tortoise.device import list_devices

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TIMEOUT_MS = 120_000
CHECKPOINT = "training/amy/finetune/models/10_gpt.pth"
# setting -> the value typed or chosen in the browser; the rest are derived from the declaration
TYPED = {"listen": "127.0.0.1:7861", "share_username": "alice", "share_password": "s3cret",
         "device_override": "cpu", "latents_max_chunk_size": "12.5", "sample_batch_size": "3",
         "concurrency_count": "3", "output_sample_rate": "22050", "output_volume": "0.5",
         "whisper_backend": "faster-whisper", "whisper_model": "tiny.en",
         "ray_address": "ray://head-node:10001", "ray_workers": "4"}  # fmt: skip


def start_app(root, **extra):
    import app

    args = app.build_parser().parse_args(
        ["--root", str(root), "--listen", f"127.0.0.1:{free_port()}", "--defer-tts-load"])
    ctx = app.load_context(args, tts_loader=FakeTTS, tts_options=TINY_TTS_OPTIONS)
    for key, value in extra.items():
        setattr(ctx, key, value)
    return ctx, app.serve(ctx)


@pytest.fixture(scope="module")
def clip_gates():
    """One event per clip: the transcriber holds each clip until the test has seen it on the page."""
    return [threading.Event() for _ in range(3)]


@pytest.fixture(scope="module")
def settings_app(tmp_path_factory, clip_gates):
    root = tmp_path_factory.mktemp("settings-app")
    AppPaths.from_root(root).ensure()
    make_voice(root / "voices", "amy", (1.3, 1.6, 1.9))
    ctx, running = start_app(root, transcriber_factory=lambda backend, model: GatedTranscriber(clip_gates))
    yield ctx, running
    running.close()


class GatedTranscriber(ScriptedTranscriber):
    """Holds each clip until its gate opens, so the page can be seen advancing clip by clip however
    busy the machine is."""

    def __init__(self, gates):
        super().__init__(("One clip here.", "Another clip here.", "A third clip here."))
        self.gates, self.clips = gates, 0

    def _transcribe(self, audio, language):
        gate = self.gates[min(self.clips, len(self.gates) - 1)]
        self.clips += 1
        assert gate.wait(timeout=600), "the test never saw this clip on the page"
        return super()._transcribe(audio, language)


def open_settings(page, url):
    page.goto(url)
    page.wait_for_selector("#gen-run")
    page.get_by_role("tab", name="Settings").click()
    page.wait_for_selector("#settings-listen")


def stored(ctx):
    return json.loads(ctx.paths.settings_file.read_text()) if ctx.paths.settings_file.is_file() else {}


def wait_saved(ctx, name, value):
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while stored(ctx).get(name) != value:
        assert time.monotonic() < deadline, f"{name} was not saved as {value!r}: {stored(ctx).get(name)!r}"
        time.sleep(0.2)


def expected(spec, ctx, initial=AppSettings(do_not_load_tts_on_startup=True)):
    """(what to enter, the value stored in exec.json) for one setting; a checkbox is flipped from its
    value at the start (--defer-tts-load set one)."""
    if spec.name == "autoregressive_model":
        return CHECKPOINT, str((ctx.paths.root / CHECKPOINT).resolve())
    if spec.widget == "checkbox":
        return None, not getattr(initial, spec.name)
    text = TYPED[spec.name]
    if spec.widget in ("number", "slider"):
        return text, (int(text) if isinstance(spec.default, int) else float(text))
    return text, text


def change(page, spec, text):
    root = page.locator(f"#settings-{spec.name}")
    if spec.widget == "checkbox":
        root.locator("input[type=checkbox]").click()
    elif spec.widget == "dropdown" or spec.name == "device_override":
        box = root.locator("input").first
        box.click()
        option = page.get_by_role("option", name=text, exact=True)
        if option.count():
            option.click()
        else:  # a value the list does not offer (a device name) is typed and confirmed
            box.fill(text)
            box.press("Enter")
    else:  # text, password, number and the slider's number box: typed, then Enter (no blur)
        box = root.locator("input[type=number], input[type=text], input[type=password], textarea").first
        box.fill(text)
        box.press("Enter")


def shown(page, spec, ctx):
    root = page.locator(f"#settings-{spec.name}")
    entered, value = expected(spec, ctx)
    if spec.widget == "checkbox":
        expect(root.locator("input[type=checkbox]")).to_be_checked(checked=value, timeout=TIMEOUT_MS)
    else:
        if spec.name == "device_override":  # the list shows the device's name with its id
            entered = next(f"{name} ({device})" for device, name in list_devices() if device == entered)
        box = root.locator("input[type=number], input[type=text], input[type=password], textarea, input")
        expect(box.first).to_have_value(entered, timeout=TIMEOUT_MS)


def test_every_setting_round_trips_through_a_reload(browser, settings_app):
    ctx, running = settings_app
    # what `expected` starts from (the flags --listen and --defer-tts-load set two)
    assert ctx.settings == AppSettings(do_not_load_tts_on_startup=True, listen=ctx.settings.listen)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    open_settings(page, running.url)
    # a checkpoint written after the page was built appears without Refresh Model List
    checkpoint = ctx.paths.root / CHECKPOINT
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    checkpoint.write_bytes(b"weights")
    page.reload()
    page.wait_for_selector("#gen-run")
    page.get_by_role("tab", name="Settings").click()
    specs = field_specs(AppSettings)
    for spec in specs:
        entered, value = expected(spec, ctx)
        change(page, spec, entered)
        wait_saved(ctx, spec.name, value)
    for spec in specs:  # the services read the same store
        assert getattr(ctx.settings, spec.name) == expected(spec, ctx)[1], spec.name
    page.reload()
    page.wait_for_selector("#gen-run")
    page.get_by_role("tab", name="Settings").click()
    for spec in specs:
        shown(page, spec, ctx)
    page.get_by_role("tab", name="Training").click()
    expect(page.locator("#train-prep-voice input")).to_have_value("amy", timeout=TIMEOUT_MS)
    backend = page.get_by_label("Whisper Backend").first
    expect(backend).to_have_value("faster-whisper", timeout=TIMEOUT_MS)
    expect(page.get_by_label("Whisper Model").first).to_have_value("tiny.en", timeout=TIMEOUT_MS)
    page.close()


def test_a_new_checkpoint_appears_when_settings_opens(browser, settings_app):
    ctx, running = settings_app
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(running.url)
    page.wait_for_selector("#gen-run")
    later = ctx.paths.root / "training/bob/finetune/models/20_gpt.pth"
    later.parent.mkdir(parents=True, exist_ok=True)
    later.write_bytes(b"weights")  # a run saved it while the page was open
    page.get_by_role("tab", name="Settings").click()
    page.locator("#settings-autoregressive_model input").first.click()
    expect(page.get_by_role("option", name="training/bob/finetune/models/20_gpt.pth")).to_be_visible(
        timeout=TIMEOUT_MS)
    page.close()


def test_the_prepare_bar_advances_clip_by_clip(browser, settings_app, clip_gates):
    ctx, running = settings_app
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(running.url)
    page.wait_for_selector("#gen-run")
    page.get_by_role("tab", name="Training").click()
    expect(page.locator("#train-prep-voice input")).to_have_value("amy", timeout=TIMEOUT_MS)
    page.locator("#train-prep-run").click()
    for clip, gate in enumerate(clip_gates, 1):  # each clip's bar is shown before it is released
        expect(page.locator("body")).to_contain_text(f"Transcribing clip {clip} of 3", timeout=TIMEOUT_MS)
        gate.set()
    expect(page.locator("#train-prep-summary")).to_contain_text("training lines", timeout=TIMEOUT_MS)
    page.close()


def test_a_corrupt_settings_file_shows_a_banner(browser, tmp_path):
    paths = AppPaths.from_root(tmp_path / "app")
    paths.ensure()
    paths.settings_file.write_text('{"output_volume": 0.5,')  # cut off mid-write
    _, running = start_app(paths.root)
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        open_settings(page, running.url)
        banner = page.locator("#settings-banner")
        expect(banner).to_contain_text("exec.json", timeout=TIMEOUT_MS)
        expect(banner).to_contain_text("exec.json.bak")
        expect(page.locator("#settings-output_volume input[type=number]")).to_have_value("1")
        page.close()
    finally:
        running.close()
    assert (paths.settings_file.parent / "exec.json.bak").is_file()
