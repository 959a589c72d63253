"""JobQueue: order, states with reasons, cancel, recovery of tasks whose process died, stale leases,
workers that die too often, a corrupt database."""

import subprocess
import sys
import time

import pytest

from src import jobs
from src.jobs import CANCELLED, DONE, FAILED, RUNNING, WAITING, JobQueue


@pytest.fixture
def queue(tmp_path):
    return JobQueue(tmp_path / "config" / "jobs.sqlite")


def test_tasks_are_claimed_oldest_job_first_in_order(queue):
    first = queue.enqueue("project", "amy/a", "a", ["r1", "r2"], {"new_seed": False})
    second = queue.enqueue("project", "amy/b", "b", ["s1"], {})
    claimed = [queue.claim("w") for _ in range(4)]
    assert [(t.job_id, t.item) for t in claimed[:3]] == [(first, "r1"), (first, "r2"), (second, "s1")]
    assert claimed[3] is None
    assert claimed[0].payload == {"new_seed": False} and claimed[0].attempts == 1
    assert {j.id: j.state for j in queue.jobs()} == {first: RUNNING, second: RUNNING}


def test_job_state_follows_its_tasks_and_says_why_it_failed(queue):
    job = queue.enqueue("project", "amy/a", "a", ["r1", "r2", "r3"], {})
    one, two, three = (queue.claim("w") for _ in range(3))
    queue.finish(one, DONE)
    view = queue.jobs()[0]
    assert (view.state, view.done, view.total) == (RUNNING, 1, 3)
    queue.finish(two, FAILED, "The voice 'amy' was not found.")
    queue.finish(three, DONE)
    view = queue.jobs()[0]
    assert view.state == FAILED and "part 2: The voice 'amy' was not found." in view.reason
    assert view.finished is not None
    assert [t["state"] for t in queue.tasks(job)] == [DONE, FAILED, DONE]


def test_cancel_stops_waiting_tasks_and_is_visible(queue):
    job = queue.enqueue("project", "amy/a", "a", ["r1", "r2"], {})
    running = queue.claim("w")
    assert queue.cancel(job) and queue.is_cancelled(job)
    assert queue.claim("w") is None
    queue.finish(running, CANCELLED, "cancelled by the user")
    view = queue.jobs()[0]
    assert view.state == CANCELLED and view.reason == "cancelled by the user"
    assert not queue.cancel(job)  # already over
    assert queue.active_items("amy/a") == set()


def test_tasks_of_a_dead_process_are_resumed_at_start(queue):
    queue.enqueue("project", "amy/a", "a", ["r1", "r2"], {})
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    pid = int(dead.stdout)
    task = queue.claim("w")
    with queue._connect() as db:  # as if that process had claimed it and then died
        db.execute(
            "UPDATE tasks SET owner = ? WHERE id = ?", (f"{jobs.socket.gethostname()}:{pid}:w", task.id)
        )
    assert queue.recover() == 1
    again = queue.claim("w")
    assert (again.id, again.attempts) == (task.id, 2)
    assert queue.tasks(task.job_id)[0]["reason"] == "interrupted by a restart; resumed"


def test_a_task_whose_worker_stops_answering_is_handed_on(queue, monkeypatch):
    queue.enqueue("project", "amy/a", "a", ["r1"], {})
    task = queue.claim("w1")
    monkeypatch.setattr(jobs, "LEASE_S", 0.0)
    time.sleep(0.01)
    again = queue.claim("w2")
    assert again.id == task.id and "stopped answering" in queue.tasks(task.job_id)[0]["reason"]


def test_a_task_whose_workers_keep_dying_fails_with_the_reason(queue):
    queue.enqueue("project", "amy/a", "a", ["r1"], {})
    for attempt in range(1, jobs.MAX_ATTEMPTS + 1):
        task = queue.claim("w")
        assert task.attempts == attempt
        assert queue.release(task, "worker w died") == (attempt < jobs.MAX_ATTEMPTS)
    view = queue.jobs()[0]
    assert view.state == FAILED and "gave up after 3 tries" in view.reason


def test_the_queue_survives_a_restart(tmp_path):
    path = tmp_path / "jobs.sqlite"
    job = JobQueue(path).enqueue("generate", "amy", "g", ["generate"], {"text": "hi"})
    reopened = JobQueue(path)
    assert reopened.jobs()[0].id == job and reopened.jobs()[0].state == WAITING


def test_a_corrupt_database_is_set_aside(tmp_path):
    path = tmp_path / "jobs.sqlite"
    path.write_bytes(b"this is not a database file at all" * 100)
    queue = JobQueue(path)
    assert queue.jobs() == [] and (tmp_path / "jobs.sqlite.corrupt").is_file()
