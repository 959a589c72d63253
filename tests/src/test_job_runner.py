"""JobRunner: renders queued projects with worker threads, retries a segment whose worker died on another
worker, cancels, runs single generations; and a real app process killed mid-project resumes after a restart
with every segment rendered exactly once."""

import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import soundfile as sf

from src.generate import GenerateRequest
from src.job_runner import JobRunner, Worker
from src.jobs import CANCELLED, DONE, JobQueue
from src.projects.render import WorkerLost, render_takes
from src.projects.state import COMBINED_FILE, PENDING
from src.settings import AppSettings, GenerateDefaults
from tests.app_doubles import make_context, make_voice
from tests.conftest import REPO_ROOT
from tests.src.projects.conftest import SIX, SeededTTS
from tests.ui.conftest import free_port
from tortoise.errors import GenerationCancelled

VALUES = GenerateDefaults(seed=77, num_autoregressive_samples=2, diffusion_iterations=2, candidates=1)


def wait_for(condition, timeout_s=60.0, what="condition"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def ctx(tmp_path):
    context = make_context(tmp_path, SeededTTS(), settings=AppSettings(output_sample_rate=24000))
    make_voice(context.paths.voices_dir, "amy", (1.0,))
    return context


def runner_for(ctx, workers, concurrency=2):
    return JobRunner(ctx.job_queue, ctx.projects, ctx.generator, workers, concurrency=concurrency, poll_s=0.1)


def job_state(ctx, job):
    return next(j for j in ctx.job_queue.jobs() if j.id == job)


def test_a_queued_project_renders_and_the_queue_shows_it(ctx):
    project = ctx.projects.create("book", "amy", SIX, VALUES)
    runner = runner_for(ctx, [Worker("local", None, ctx.engine.cancel)])
    job = runner.enqueue_project("amy/book")
    assert ctx.projects.open("amy", "book").project.rows[0].status == "queued"
    assert runner.enqueue_project("amy/book") is None  # already waiting: not queued twice
    runner.start()
    try:
        wait_for(lambda: job_state(ctx, job).state == DONE, what="the job")
    finally:
        runner.stop()
    view = job_state(ctx, job)
    assert (view.done, view.total, view.label) == (6, 6, "book: 6 segments")
    rows = ctx.projects.open("amy", "book").project.rows
    assert [r.id for r in rows] == [r.id for r in project.rows] and all(len(r.candidates) == 1 for r in rows)
    assert (ctx.projects.folder("amy", "book") / COMBINED_FILE).is_file()


def test_a_segment_whose_worker_dies_is_retried_on_another_worker(ctx):
    ctx.projects.create("book", "amy", SIX, VALUES)
    steady_calls, flaky_calls = [], []

    def flaky(request):
        flaky_calls.append(request.text)
        raise WorkerLost("the process was killed")

    def steady(request):
        steady_calls.append(request.text)
        return render_takes(ctx.generator, request, worker="steady")

    runner = runner_for(ctx, [Worker("flaky", flaky), Worker("steady", steady)])
    job = runner.enqueue_project("amy/book")
    runner.start()
    try:
        wait_for(lambda: job_state(ctx, job).state == DONE, what="the job")
    finally:
        runner.stop()
    assert len(flaky_calls) == 1  # the dead worker takes nothing more
    assert sorted(steady_calls) == sorted(r.text for r in ctx.projects.open("amy", "book").project.rows)
    retried = [t for t in ctx.job_queue.tasks(job) if t["attempts"] == 2]
    assert len(retried) == 1 and "flaky died" in retried[0]["reason"]


def test_cancel_stops_the_running_segment_and_the_waiting_ones(ctx):
    ctx.projects.create("book", "amy", SIX, VALUES)
    started, stop = threading.Event(), threading.Event()

    def slow(request):
        started.set()
        if not stop.wait(30):
            raise AssertionError("never cancelled")
        raise GenerationCancelled("stopped")

    runner = runner_for(ctx, [Worker("slow", slow, stop.set)], concurrency=1)
    job = runner.enqueue_project("amy/book")
    runner.start()
    try:
        assert started.wait(30)
        assert runner.cancel(job)
        wait_for(lambda: job_state(ctx, job).state == CANCELLED, what="the cancel")
    finally:
        runner.stop()
    assert job_state(ctx, job).reason == "cancelled by the user"
    assert all(t["state"] == CANCELLED for t in ctx.job_queue.tasks(job))
    rows = ctx.projects.open("amy", "book").project.rows
    assert all(r.status == PENDING for r in rows)


def test_a_failing_segment_marks_the_row_and_the_job_with_the_reason(ctx):
    ctx.projects.create("book", "amy", "One. Two.", VALUES)
    runner = runner_for(ctx, [Worker("local")])
    job = runner.enqueue_project("amy/book")
    (ctx.paths.voices_dir / "amy" / "clip1.wav").unlink()  # the voice loses its only clip
    runner.start()
    try:
        wait_for(lambda: job_state(ctx, job).state == "failed", what="the failure")
    finally:
        runner.stop()
    assert "amy" in job_state(ctx, job).reason
    row = ctx.projects.open("amy", "book").project.rows[0]
    assert row.status == "failed" and "amy" in row.error


def test_single_generations_are_jobs_too(ctx):
    runner = runner_for(ctx, [Worker("local")])
    job = runner.enqueue_generation(GenerateRequest(text="Hello there.", voice="amy", seed=3))
    runner.start()
    try:
        wait_for(lambda: job_state(ctx, job).state == DONE, what="the generation")
    finally:
        runner.stop()
    result = ctx.job_queue.tasks(job)[0]["result"]
    assert (ctx.paths.results_dir / "amy").is_dir() and result.startswith(str(ctx.paths.results_dir / "amy"))


# ---------------------------------------------------------------------- a real process, killed and restarted


def start_app(root):
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", PYTHONPATH=str(REPO_ROOT))
    listen = f"127.0.0.1:{free_port()}"
    log = (root / "app.log").open("a")
    command = [sys.executable, "-m", "tests.project_app", "--root", str(root), "--listen", listen]
    return subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


@pytest.mark.slow
def test_a_killed_app_resumes_the_project_and_renders_each_segment_once(tmp_path):
    ctx = make_context(tmp_path, SeededTTS(), settings=AppSettings(output_sample_rate=24000))
    make_voice(ctx.paths.voices_dir, "amy", (1.0,))
    project = ctx.projects.create("book", "amy", SIX, VALUES)
    runner = runner_for(ctx, [Worker("unused")])
    job = runner.enqueue_project("amy/book")  # queued by "the UI"; the app process renders it
    segments = ctx.projects.folder("amy", "book") / "segments"
    queue = JobQueue(ctx.paths.config_dir / "jobs.sqlite")

    first = start_app(tmp_path)
    try:
        wait_for(lambda: len(list(segments.glob("*.wav"))) >= 2, 600, "two segments before the kill")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(60)
    done_before = len(list(segments.glob("*.wav")))
    assert done_before < 6, "the app finished before it could be killed"
    assert next(j for j in queue.jobs() if j.id == job).state == "running"

    second = start_app(tmp_path)
    try:
        wait_for(lambda: next(j for j in queue.jobs() if j.id == job).state == DONE, 600, "the resumed job")
    finally:
        second.terminate()
        second.wait(60)

    rows = ctx.projects.open("amy", "book").project.rows
    assert [r.text for r in rows] == [r.text for r in project.rows]
    assert all(len(r.candidates) == 1 and r.status == "done" for r in rows)
    assert len(list(segments.glob("*.wav"))) == 6  # nothing rendered twice, nothing left over
    log = (tmp_path / "tts_calls.log").read_text().splitlines()
    for row in rows:
        assert log.count(f"end {row.text}") == 1, row.text  # each segment finished exactly once
        assert log.count(f"start {row.text}") <= 2  # at most the one cut short by the kill started again
    folder = ctx.projects.folder("amy", "book")
    combined, rate = sf.read(str(folder / COMBINED_FILE), dtype="int16")
    expected = []
    for index, row in enumerate(rows):
        take, take_rate = sf.read(str(folder / row.candidates[0].file), dtype="int16")
        assert take_rate == rate
        expected.append(take)
        if index < len(rows) - 1:
            expected.append(np.zeros(round(row.pause_s * rate), dtype=np.int16))
    assert np.array_equal(combined, np.concatenate(expected))


def test_a_generate_click_is_listed_as_a_job_and_resumed_if_the_app_dies(ctx):
    runner = runner_for(ctx, [Worker("local")])
    request = GenerateRequest(text="Hello there.", voice="amy", seed=3)
    with runner.tracked_generation(request):
        view = ctx.job_queue.jobs()[0]
        assert (view.kind, view.state, view.label) == ("generate", "running", "generate: Hello there.")
        ctx.generator.generate(request)
    assert ctx.job_queue.jobs()[0].state == DONE
    with pytest.raises(GenerationCancelled), runner.tracked_generation(request):
        raise GenerationCancelled("stopped")
    assert ctx.job_queue.jobs()[0].state == CANCELLED
    with (
        pytest.raises(Exception, match="Please provide text"),
        runner.tracked_generation(GenerateRequest(voice="amy")),
    ):
        pass
    assert len(ctx.job_queue.jobs()) == 2  # bad input records nothing

    task = ctx.job_queue.start_now(
        "generate", "amy", "g", "generate", {"text": "Again.", "voice": "amy", "seed": 4}, "ui"
    )
    with ctx.job_queue._connect() as db:  # as if the process running it had died
        db.execute("UPDATE tasks SET owner = 'gone:1:ui', heartbeat = 0 WHERE id = ?", (task.id,))
    runner.start()
    try:
        wait_for(lambda: job_state(ctx, task.job_id).state == DONE, what="the resumed generation")
    finally:
        runner.stop()
