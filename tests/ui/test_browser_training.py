"""The Training tab in a real chromium (Playwright) against the app on 127.0.0.1: prepare a dataset
(scripted transcriber, no Whisper model), review and edit a clip, validate and save a configuration,
train the tiny models in a real trainer subprocess, watch the plots fill, reload the page (the run is
re-attached), stop, find the checkpoint in Settings and generate with it. Screenshots of the three
sub-tabs go to test-artifacts/. Bad input shows plain messages.

Needs `pip install playwright` and Debian's `chromium` (apt-get install chromium); else skipped.
"""

import re

import pytest
from playwright.sync_api import expect

from src.metadata import read_metadata
from src.paths import AppPaths
from tests.app_doubles import TINY_TTS_OPTIONS, make_voice, tiny_tts
from tests.conftest import REPO_ROOT, load_golden
from tests.training_doubles import (
    SENTENCES,
    TRAINER_ENV,
    install_tiny_models,
    scripted_transcriber_factory,
    tiny_trainer_args,
)
from tests.ui.conftest import free_port, goto_app, open_app_page

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ARTIFACTS = REPO_ROOT / "test-artifacts"
TRAIN_TIMEOUT_MS = (
    180_000  # the trainer imports torch and encodes the clips first (busy 2-core box)
)
MESSAGE_TIMEOUT_MS = 120_000
# a player is loaded when its <audio> knows the duration, or its waveform shows one
PLAYER_LOADED = """(id) => [...document.querySelectorAll(id + ' audio')]
    .some((a) => a.readyState >= 1 && a.duration > 0)
    || [...document.querySelectorAll(id + ' time#duration')]
    .some((t) => /^\\d+:\\d\\d$/.test(t.textContent.trim()) && t.textContent.trim() !== '0:00')"""
PLOT_HAS_LINES = """(id) => [...document.querySelectorAll(id + ' .mark-line path')]
    .some((p) => (p.getAttribute('d') || '').length > 20)"""


@pytest.fixture(scope="module")
def training_app(tmp_path_factory, tiny_models):
    """An app whose Prepare uses a scripted transcriber and whose trainer builds the tiny models;
    its TTS loader honours the Autoregressive Model setting, so a fine-tune can be generated with."""
    import app
    from tortoise import models as registry

    root = tmp_path_factory.mktemp("training-app")
    paths = AppPaths.from_root(root)
    paths.ensure()
    overrides = install_tiny_models(paths)
    make_voice(paths.voices_dir, "amy", (1.3, 1.6, 1.9, 2.0, 1.5))
    (paths.voices_dir / "empty").mkdir()
    args = app.build_parser().parse_args(
        ["--root", str(root), "--listen", f"127.0.0.1:{free_port()}", "--defer-tts-load"]
    )
    tiny_config = dict(load_golden("autoregressive.pt")["config"])
    holder = {}

    def loader():
        tts = tiny_tts(tiny_models)
        chosen = holder["ctx"].settings.autoregressive_model
        if chosen:  # a fine-tuned checkpoint of the tiny model
            ar = registry.load("autoregressive", chosen, **tiny_config)
            tts.models.autoregressive = ar.eval().requires_grad_(False)
            tts.model_name, tts.model_hash = "finetune", "ft000001"
        return tts

    ctx = app.load_context(args, tts_loader=loader, tts_options=TINY_TTS_OPTIONS)
    holder["ctx"] = ctx
    ctx.transcriber_factory = scripted_transcriber_factory((*SENTENCES[:4], "Hi there."))
    ctx.trainer_args = tiny_trainer_args(overrides)
    ctx.trainer_env = TRAINER_ENV
    running = app.serve(ctx)
    yield running
    for voice in ctx.train_runner.running_voices():
        ctx.train_runner.stop(voice)
    running.close()


@pytest.fixture
def page(browser, training_app):
    page = open_app_page(browser, training_app.url)
    open_training(page, training_app.url)
    yield page
    page.close()


def open_training(page, url, sub_tab="Prepare Dataset"):
    goto_app(page, url)
    page.get_by_role("tab", name="Training").click()
    page.get_by_role("tab", name=sub_tab).click()


def fill(page, elem_id, value):
    box = (
        page.locator(f"#{elem_id}").locator("textarea, input[type=text], input[type=number]").first
    )
    box.fill(str(value))
    box.press("Tab")  # Gradio commits number and text boxes on blur


def choose(page, elem_id, option):
    page.locator(f"#{elem_id} input").click()
    page.get_by_role("option", name=option, exact=True).click()
    expect(page.locator(f"#{elem_id} input")).to_have_value(option)


def expect_message(page, text):
    expect(page.get_by_text(text).first).to_be_visible(timeout=MESSAGE_TIMEOUT_MS)
    assert "Traceback" not in page.content()


def textbox(page, elem_id):
    return page.locator(f"#{elem_id}").locator("textarea, input").first


def screenshot(page, name, *, keep_toasts=False):
    ARTIFACTS.mkdir(exist_ok=True)
    if not keep_toasts:  # close the pop-ups so that they hide nothing
        for close in page.locator(".toast-close").all():
            if close.is_visible():
                close.click()
    page.wait_for_timeout(800)  # let plots settle
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def test_prepare_configure_train_reconnect_stop_and_generate(page, training_app):
    ctx = training_app.ctx
    # ---- Prepare Dataset: counts, the review table, a clip played and its transcript edited
    page.locator("#train-prep-run").click()
    expect(page.locator("#train-prep-summary")).to_contain_text(
        "4 training lines (train.txt) · 1 validation lines", timeout=TRAIN_TIMEOUT_MS
    )
    expect(textbox(page, "train-prep-console")).to_have_value(re.compile("Processed dataset to:"))
    page.locator("#train-prep-table [role=gridcell]").filter(
        has_text="audio/clip2.wav"
    ).first.click()
    expect(textbox(page, "train-prep-text")).to_have_value(SENTENCES[1])
    page.wait_for_function(PLAYER_LOADED, arg="#train-prep-audio", timeout=MESSAGE_TIMEOUT_MS)
    fill(page, "train-prep-text", "Glue the sheet to the dark blue backdrop.")
    page.locator("#train-prep-save").click()
    expect(page.locator("#train-prep-table")).to_contain_text("dark blue backdrop.")
    train_list = (ctx.paths.training_dir / "amy" / "train.txt").read_text()
    assert "audio/clip2.wav|Glue the sheet to the dark blue backdrop." in train_list
    screenshot(page, "training_prepare.png")

    # ---- Generate Configuration: Validate explains, Save writes train.yaml
    page.get_by_role("tab", name="Generate Configuration").click()
    expect(page.locator("#train-cfg-voice input")).to_have_value("amy")  # the new dataset
    fill(page, "train-cfg-epochs", 3000)
    page.locator("#train-cfg-validate").click()
    console = textbox(page, "train-cfg-console")
    expect(console).to_have_value(re.compile("Batch size 128 is larger than the 4-line dataset"))
    expect(textbox(page, "train-cfg-batch_size")).to_have_value("4")
    page.locator("#train-cfg-save").click()
    expect(console).to_have_value(
        re.compile("Training settings saved to:"), timeout=MESSAGE_TIMEOUT_MS
    )
    assert (ctx.paths.training_dir / "amy" / "train.yaml").is_file()
    screenshot(page, "training_config.png")

    # ---- Run Training: the status line moves, the plots get points, checkpoints appear
    page.get_by_role("tab", name="Run Training").click()
    expect(page.locator("#train-run-voice input")).to_have_value("amy")
    page.locator("#train-run-train").click()
    status = textbox(page, "train-run-status")
    expect(status).to_have_value(
        re.compile(r"\[Epoch \d+/3000, Step \d+/3000\]"), timeout=TRAIN_TIMEOUT_MS
    )
    for plot in ("#train-run-loss", "#train-run-lr", "#train-run-grad"):
        page.wait_for_function(PLOT_HAS_LINES, arg=plot, timeout=MESSAGE_TIMEOUT_MS)
    expect(page.locator("#train-run-checkpoint input")).to_have_value(
        re.compile(r"Step \d+ \(no sample\)"), timeout=MESSAGE_TIMEOUT_MS
    )
    expect(textbox(page, "train-run-console")).to_have_value(re.compile("Training Metrics"))
    page.locator("#train-run-train").click()  # a second run of the same voice
    expect_message(page, "Training for 'amy' is already running")
    screenshot(page, "training_run.png")

    # ---- a reloaded page re-attaches to the live run, Reconnect too
    before = step_of(status.input_value())
    open_training(page, training_app.url, "Run Training")
    status = textbox(page, "train-run-status")
    expect(status).to_have_value(re.compile(r"\[Epoch"), timeout=MESSAGE_TIMEOUT_MS)
    page.wait_for_function(PLOT_HAS_LINES, arg="#train-run-loss", timeout=MESSAGE_TIMEOUT_MS)
    page.locator("#train-run-reconnect").click()
    page.wait_for_function(
        "([sel, n]) => { const m = document.querySelector(sel).value.match(/Step (\\d+)\\//);"
        " return m && Number(m[1]) > n; }",
        arg=["#train-run-status textarea, #train-run-status input", before],
        timeout=MESSAGE_TIMEOUT_MS,
    )

    # ---- Stop: the trainer saves a checkpoint and exits
    page.locator("#train-run-stop").click()
    message = page.locator("#train-run-message")
    expect(message).to_contain_text(
        re.compile(r"Training for 'amy' was stopped at step \d+"), timeout=TRAIN_TIMEOUT_MS
    )
    # the message names the step the trainer stopped (and saved) at; the status line, refreshed on a
    # timer, may still show an earlier step
    stopped_at = int(re.search(r"stopped at step (\d+)", message.inner_text()).group(1))
    checkpoint = ctx.paths.training_dir / "amy" / "finetune" / "models" / f"{stopped_at}_gpt.pth"
    assert checkpoint.is_file() and not ctx.train_runner.is_running("amy")
    page.locator("#train-run-reconnect").click()
    expect_message(page, "Training is not in progress for 'amy'")

    # ---- Settings lists the checkpoint; generating with it works
    page.get_by_role("tab", name="Settings").click()
    page.get_by_role("button", name="Refresh Model List").click()
    label = f"training/amy/finetune/models/{stopped_at}_gpt.pth"
    choose(page, "settings-autoregressive_model", label)
    page.locator("#settings-reload").click()
    expect(page.locator("#settings-status")).to_contain_text("finetune", timeout=MESSAGE_TIMEOUT_MS)
    page.get_by_role("tab", name="Generate").click()
    fill(page, "gen-text", "Hello there.")
    choose(page, "gen-voice", "amy")
    fill(page, "gen-num_autoregressive_samples", 2)
    fill(page, "gen-diffusion_iterations", 2)
    page.locator("#gen-run").click()
    page.wait_for_function(PLAYER_LOADED, arg="#gen-output", timeout=TRAIN_TIMEOUT_MS)
    outputs = sorted((ctx.paths.results_dir / "amy").rglob("*.wav"))
    assert outputs and read_metadata(outputs[-1]).model_hash == "ft000001"


def step_of(status_line: str) -> int:
    return int(re.search(r"Step (\d+)/", status_line).group(1))


def test_bad_input_is_shown_plainly(page, training_app):
    choose(page, "train-prep-voice", "empty")
    page.locator("#train-prep-run").click()
    expect_message(page, "has no audio files")
    page.get_by_role("tab", name="Generate Configuration").click()
    fill(page, "train-cfg-resume_state", "training/amy/finetune/training_state/999999.state")
    page.locator("#train-cfg-save").click()
    expect_message(page, "does not exist. Pick one of the training_state/*.state files")
    fill(page, "train-cfg-resume_state", "")
    fill(page, "train-cfg-lr_schedule", "nine")
    page.locator("#train-cfg-validate").click()
    expect_message(page, "is not a list of epochs")
    screenshot(page, "training_error.png", keep_toasts=True)
