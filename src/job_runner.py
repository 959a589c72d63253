"""JobRunner: works the persistent queue (src/jobs.py) with one thread per worker (a local engine per GPU,
or a Ray actor), renders project segments through ProjectService and single generations through the
Generator, cancels, and hands a segment whose worker died to another worker.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from src.errors import AppError, InvalidInput
from src.generate import GenerateRequest, Generator, check_request
from src.jobs import CANCELLED, DONE, FAILED, KIND_GENERATE, KIND_PROJECT, LEASE_S, JobQueue, Task
from src.projects import ProjectService, parse_ref
from src.projects import state as st
from src.projects.render import Renderer, WorkerLost
from tortoise import GenerationCancelled, TortoiseError

log = logging.getLogger(__name__)


@dataclass
class Worker:
    """Where tasks render.

    Attributes:
        name: shown in logs and the queue (e.g. `cuda:1`, `ray-0`).
        renderer: renders one segment; None uses the app's engine.
        cancel: stops the render in progress (e.g. that engine's Stop flag); None: cannot stop mid-segment.
    """

    name: str
    renderer: Renderer | None = None
    cancel: Callable[[], Any] | None = None


class JobRunner:
    """Worker threads over the queue. `start` resumes what a crash or restart interrupted.

    Args:
        queue: the job queue.
        projects: the project service.
        generator: the generation service (single-generation jobs).
        workers: where to render; one thread each, at most `concurrency` of them.
        concurrency: the Concurrency setting: how many tasks run at once at most.
        poll_s: how often idle workers look for work (they are also woken when a job is added).
    """

    def __init__(
        self,
        queue: JobQueue,
        projects: ProjectService,
        generator: Generator,
        workers: list[Worker],
        *,
        concurrency: int = 1,
        poll_s: float = 1.0,
    ) -> None:
        self.queue = queue
        self.projects = projects
        self.generator = generator
        self.workers = list(workers) or [Worker("local")]
        self.concurrency = max(1, int(concurrency))
        self.poll_s = poll_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._running: dict[str, Task] = {}  # worker name -> task in progress
        self._tracked: list[Task] = []  # generations running in request threads
        self._lock = threading.Lock()
        self.notes: list[str] = []

    # ------------------------------------------------------------------ life cycle

    def start(self) -> None:
        """Requeue interrupted tasks and start the worker threads (once)."""
        with self._lock:
            if self._threads:
                return
            resumed = self.queue.recover()
            if resumed:
                log.info("Resuming %d interrupted task(s) from the job queue", resumed)
            active = self.workers[: self.concurrency]
            for worker in active:
                thread = threading.Thread(
                    target=self._loop, args=(worker,), name=f"jobs-{worker.name}", daemon=True
                )
                self._threads.append(thread)
                thread.start()
            beat = threading.Thread(target=self._heartbeat, name="jobs-heartbeat", daemon=True)
            self._threads.append(beat)
            beat.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        for worker in self.workers:
            if worker.cancel is not None and worker.name in self._running:
                worker.cancel()
        for thread in self._threads:
            thread.join(timeout=timeout_s)

    @property
    def is_started(self) -> bool:
        return bool(self._threads)

    def wake(self) -> None:
        self._wake.set()

    # ------------------------------------------------------------------ adding and cancelling

    def enqueue_project(
        self,
        ref: str,
        row_ids: list[str] | None = None,
        *,
        new_seed: bool = False,
        overrides: dict[str, Any] | None = None,
        label: str = "",
    ) -> int | None:
        """Queue the rendering of a project's rows (default: every row without a chosen take). Rows already
        waiting in the queue are not added twice. Returns the job id, or None when nothing needs rendering."""
        voice, name = parse_ref(ref)
        project = self.projects.open(voice, name).project
        if row_ids is None:
            row_ids = [row.id for row in project.rows if row.chosen is None]
        queued = self.queue.active_items(ref)
        wanted = [row_id for row_id in row_ids if row_id not in queued]
        if not wanted:
            return None
        positions = {row.id: number for number, row in enumerate(project.rows, start=1)}
        what = label or (
            f"segment {positions.get(wanted[0], '?')}" if len(wanted) == 1 else f"{len(wanted)} segments"
        )
        job = self.queue.enqueue(
            KIND_PROJECT,
            ref,
            f"{name}: {what}",
            wanted,
            {"new_seed": bool(new_seed), "overrides": dict(overrides or {})},
        )
        self.projects.set_status(voice, name, wanted, st.QUEUED)
        self.wake()
        return job

    def enqueue_generation(self, request: GenerateRequest) -> int:
        """Queue a single generation (the Generate tab's request)."""
        values = {k: v for k, v in request.__dict__.items() if k != "mic_audio"}
        job = self.queue.enqueue(
            KIND_GENERATE, request.voice, f"generate: {request.text[:40]}", ["generate"], values
        )
        self.wake()
        return job

    @contextlib.contextmanager
    def tracked_generation(self, request: GenerateRequest) -> Iterator[None]:
        """Run a single generation in the caller's thread as a visible job: listed while it runs, marked
        done/failed/cancelled after, and re-run by the next start if the app dies meanwhile."""
        request = check_request(request)  # bad input is refused before anything is recorded
        values = {k: v for k, v in request.__dict__.items() if k != "mic_audio"}
        label = f"generate: {request.text.strip()[:40]}"
        task = self.queue.start_now(KIND_GENERATE, request.voice, label, "generate", values, "ui")
        with self._lock:
            self._tracked.append(task)
        try:
            yield
        except GenerationCancelled:
            self.queue.finish(task, CANCELLED, "cancelled by the user")
            raise
        except BaseException as error:
            self.queue.finish(task, FAILED, str(error) or type(error).__name__)
            raise
        else:
            self.queue.finish(task, DONE)
        finally:
            with self._lock:
                self._tracked.remove(task)

    def cancel(self, job_id: int) -> bool:
        """Cancel a job; a segment rendering for it is stopped too. Returns False if it had ended."""
        cancelled = self.queue.cancel(int(job_id))
        with self._lock:
            busy = [name for name, task in self._running.items() if task.job_id == int(job_id)]
        for worker in self.workers:
            if worker.name in busy and worker.cancel is not None:
                worker.cancel()
        if cancelled:
            self._reset_cancelled_rows(int(job_id))
        return cancelled

    def _reset_cancelled_rows(self, job_id: int) -> None:
        tasks = [t for t in self.queue.tasks(job_id) if t["state"] == CANCELLED]
        jobs = [j for j in self.queue.jobs(200) if j.id == job_id]
        if tasks and jobs and jobs[0].kind == KIND_PROJECT:
            voice, name = parse_ref(jobs[0].target)
            try:
                self.projects.set_status(voice, name, [t["item"] for t in tasks], st.PENDING)
            except InvalidInput:
                log.info("Project %s is gone; nothing to reset", jobs[0].target)

    # ------------------------------------------------------------------ working

    def _loop(self, worker: Worker) -> None:
        while not self._stop.is_set():
            task = self.queue.claim(worker.name)
            if task is None:
                self._wake.wait(self.poll_s)
                self._wake.clear()
                continue
            with self._lock:
                self._running[worker.name] = task
            try:
                lost = self._run(task, worker)
            finally:
                with self._lock:
                    self._running.pop(worker.name, None)
            if lost and len(self.workers) > 1 and self._others_alive(worker):
                log.warning("Worker %s died; it takes no more tasks", worker.name)
                return

    def _others_alive(self, worker: Worker) -> bool:
        return any(
            t.is_alive() and t.name != f"jobs-{worker.name}" and t.name != "jobs-heartbeat"
            for t in self._threads
        )

    def _run(self, task: Task, worker: Worker) -> bool:
        """Run one task and record the outcome. Returns True when the worker was lost."""
        try:
            result = self._execute(task, worker)
        except WorkerLost as error:
            again = self.queue.release(task, f"worker {worker.name} died: {error}")
            log.warning(
                "Task %s: worker %s died (%s); %s",
                task.key,
                worker.name,
                error,
                "retrying on another worker" if again else "giving up",
            )
            self.wake()
            return True
        except GenerationCancelled:
            self.queue.finish(task, CANCELLED, "cancelled by the user")
            self._reset_cancelled_rows(task.job_id)
        except (AppError, TortoiseError) as error:
            self.queue.finish(task, FAILED, str(error))
        except Exception as error:  # boundary: a worker thread must survive any one task
            log.exception("Task %s failed", task.key)
            self.queue.finish(task, FAILED, f"internal error ({type(error).__name__}: {error}); see the log")
        else:
            self.queue.finish(task, DONE, result=result)
        return False

    def _execute(self, task: Task, worker: Worker) -> str:
        if self.queue.is_cancelled(task.job_id):
            raise GenerationCancelled("cancelled")
        if task.kind == KIND_PROJECT:
            voice, name = parse_ref(task.target)
            change = self.projects.render_row(
                voice,
                name,
                task.item,
                new_seed=bool(task.payload.get("new_seed")),
                overrides=task.payload.get("overrides") or None,
                renderer=worker.renderer,
                task=task.key,
            )
            return " ".join(change.notes)
        if task.kind == KIND_GENERATE:
            result = self.generator.generate(GenerateRequest(**task.payload))
            return str(result.run_dir)
        raise InvalidInput(f"Unknown job kind '{task.kind}'.")

    def _heartbeat(self) -> None:
        while not self._stop.wait(LEASE_S / 4):
            with self._lock:
                ids = [task.id for task in [*self._running.values(), *self._tracked]]
            try:
                self.queue.heartbeat(ids)
            except Exception:  # boundary: a background thread; the next beat retries
                log.exception("Could not record the job heartbeat")
