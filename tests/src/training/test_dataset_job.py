"""Prepare Dataset beside generation (src/dataset_job.py): no clips and a missing Whisper model are said
at once with the TTS left loaded, a running job is waited for with the queue position shown, and a
failure leaves no training/<voice>/ folder."""

import threading
import time

import pytest

from src.errors import DatasetEmpty
from src.training.asr import AsrUnavailable
from src.training.dataset import DatasetOptions
from src.training.dataset_job import prepare_voice_dataset
from tests.app_doubles import FakeTTS, make_context, make_voice
from tests.training_doubles import ScriptedTranscriber

WAIT_S = 60


class MissingModelTranscriber(ScriptedTranscriber):
    def _load(self):
        raise AsrUnavailable("The openai-whisper model 'base' could not be loaded (no network).")


@pytest.fixture
def ctx(tmp_path):
    context = make_context(tmp_path, FakeTTS())
    make_voice(context.paths.voices_dir, "amy", (1.3, 1.6))
    (context.paths.voices_dir / "empty").mkdir()
    return context


def prepare(ctx, voice, transcriber=None, progress=None):
    return prepare_voice_dataset(
        ctx.paths, ctx.engine, ctx.voices.voice_dir(voice), transcriber or ScriptedTranscriber(), "",
        DatasetOptions(), progress,
    )  # fmt: skip


class HeldEngine:
    """Runs a job on the engine in a thread until released (a generation in progress)."""

    def __init__(self, engine):
        self.release = threading.Event()
        self.started = threading.Event()

        def run():
            with engine.job():
                self.started.set()
                self.release.wait(WAIT_S)

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert self.started.wait(WAIT_S)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release.set()
        self.thread.join(WAIT_S)


def test_a_voice_without_clips_fails_at_once_while_a_generation_runs(ctx):
    ctx.engine.get()
    with HeldEngine(ctx.engine):
        started = time.monotonic()
        with pytest.raises(DatasetEmpty, match="empty/ has no audio files"):
            prepare(ctx, "empty")
        assert time.monotonic() - started < 5  # not queued behind the generation
    assert ctx.engine.is_loaded and not (ctx.paths.training_dir / "empty").exists()


def test_a_missing_whisper_model_is_found_before_the_tts_is_unloaded(ctx):
    ctx.engine.get()
    with pytest.raises(AsrUnavailable, match="could not be loaded"):
        prepare(ctx, "amy", MissingModelTranscriber())
    assert ctx.engine.is_loaded and not (ctx.paths.training_dir / "amy").exists()


def test_waiting_shows_the_queue_position_then_prepares(ctx):
    ctx.engine.get()
    seen, result = [], {}
    with HeldEngine(ctx.engine):
        def run():
            result["done"] = prepare(ctx, "amy", progress=lambda fraction, text: seen.append(text))

        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        deadline = time.monotonic() + WAIT_S
        while not any("position 1 in the queue" in text for text in seen) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "Waiting for the current job to finish (position 1 in the queue)" in seen
        assert ctx.engine.queue_length == 2 and "done" not in result
    worker.join(WAIT_S)
    assert result["done"].summary.train_count + result["done"].summary.validation_count == 2
    assert result["done"].notes and not ctx.engine.is_loaded
    assert (ctx.paths.training_dir / "amy" / "train.txt").is_file()


def test_a_failed_preparation_leaves_no_folder(ctx):
    with pytest.raises(DatasetEmpty, match="no speech was recognised"):
        prepare(ctx, "amy", ScriptedTranscriber(("",)))
    assert not (ctx.paths.training_dir / "amy").exists()
    # an earlier dataset is kept as it was
    prepare(ctx, "amy")
    with pytest.raises(DatasetEmpty):
        prepare(ctx, "amy", ScriptedTranscriber(("",)))
    assert (ctx.paths.training_dir / "amy" / "train.txt").is_file()
