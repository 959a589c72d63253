"""The persistent job queue: project renders (one task per segment) and single generations, stored in
SQLite (`config/jobs.sqlite`), so a crash or a restart resumes where it stopped. Jobs are waiting, running,
done, failed (with the reason) or cancelled. `JobRunner` works the queue with worker threads.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

WAITING, RUNNING, DONE, FAILED, CANCELLED = "waiting", "running", "done", "failed", "cancelled"
KIND_PROJECT, KIND_GENERATE = "project", "generate"
LEASE_S = 60.0  # a running task whose worker has not reported for this long is handed to another worker
MAX_ATTEMPTS = 3  # a task whose worker died this many times fails
_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, target TEXT NOT NULL, label TEXT NOT NULL,
    payload TEXT NOT NULL, state TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '', created REAL NOT NULL,
    started REAL, finished REAL, cancel INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS tasks (
    id INTEGER PRIMARY KEY AUTOINCREMENT, job_id INTEGER NOT NULL REFERENCES jobs(id),
    position INTEGER NOT NULL, item TEXT NOT NULL, state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    owner TEXT NOT NULL DEFAULT '', heartbeat REAL,
    reason TEXT NOT NULL DEFAULT '', result TEXT NOT NULL DEFAULT '');
CREATE INDEX IF NOT EXISTS tasks_by_state ON tasks(state, job_id, position);
"""


@dataclass(frozen=True)
class Task:
    """One unit of work: a segment of a project render, or a whole single generation."""

    id: int
    job_id: int
    kind: str
    target: str
    item: str
    payload: dict[str, Any]
    attempts: int

    @property
    def key(self) -> str:
        """Recorded in what the task produces, so a resumed job can tell it already ran."""
        return f"job{self.job_id}-task{self.id}"


@dataclass(frozen=True)
class JobView:
    """A job as the queue table shows it."""

    id: int
    kind: str
    target: str
    label: str
    state: str
    reason: str
    done: int
    total: int
    created: float
    finished: float | None


def owner_name(worker: str) -> str:
    """`host:pid:worker`, so a restarted app knows which running tasks lost their process."""
    return f"{socket.gethostname()}:{os.getpid()}:{worker}"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class JobQueue:
    """The SQLite-backed queue. Every call opens its own connection, so threads may share the object.

    Args:
        path: the database file (created with its folder).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with self._connect() as db:
                db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as error:
            broken = self.path.with_name(self.path.name + ".corrupt")
            log.error("The job database %s is unreadable (%s); it was moved to %s", self.path, error, broken)
            self.path.replace(broken)
            with self._connect() as db:
                db.executescript(_SCHEMA)

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        db.row_factory = sqlite3.Row
        try:
            db.execute("PRAGMA journal_mode=WAL")
            yield db
        finally:
            db.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    # ------------------------------------------------------------------ adding jobs

    def enqueue(self, kind: str, target: str, label: str, items: list[str], payload: dict[str, Any]) -> int:
        """Add a job with one task per item (in order); returns its id."""
        if not items:
            raise ValueError("a job needs at least one task")
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT INTO jobs (kind, target, label, payload, state, created) VALUES (?, ?, ?, ?, ?, ?)",
                (kind, target, label, json.dumps(payload), WAITING, time.time()),
            )
            job_id = int(cursor.lastrowid)
            db.executemany(
                "INSERT INTO tasks (job_id, position, item, state) VALUES (?, ?, ?, ?)",
                [(job_id, position, item, WAITING) for position, item in enumerate(items)],
            )
        return job_id

    def start_now(
        self, kind: str, target: str, label: str, item: str, payload: dict[str, Any], worker: str
    ) -> Task:
        """Record a job that `worker` of this process runs right away (e.g. a Generate click), so it is listed
        and, if the process dies, resumed by the next start."""
        now = time.time()
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT INTO jobs (kind, target, label, payload, state, created, started) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (kind, target, label, json.dumps(payload), RUNNING, now, now),
            )
            job_id = int(cursor.lastrowid)
            cursor = db.execute(
                "INSERT INTO tasks (job_id, position, item, state, attempts, owner, heartbeat) "
                "VALUES (?, 0, ?, ?, 1, ?, ?)",
                (job_id, item, RUNNING, owner_name(worker), now),
            )
        return Task(int(cursor.lastrowid), job_id, kind, target, item, payload, 1)

    # ------------------------------------------------------------------ working

    def claim(self, worker: str) -> Task | None:
        """Take the next waiting task (oldest job first, in order) for `worker`, or None."""
        with self._transaction() as db:
            self._requeue_stale(db)
            row = db.execute(
                "SELECT t.id, t.job_id, t.item, t.attempts, j.kind, j.target, j.payload FROM tasks t "
                "JOIN jobs j ON j.id = t.job_id WHERE t.state = ? AND j.cancel = 0 "
                "ORDER BY t.job_id, t.position LIMIT 1",
                (WAITING,),
            ).fetchone()
            if row is None:
                return None
            now = time.time()
            db.execute(
                "UPDATE tasks SET state = ?, owner = ?, heartbeat = ?, attempts = attempts + 1 WHERE id = ?",
                (RUNNING, owner_name(worker), now, row["id"]),
            )
            db.execute(
                "UPDATE jobs SET state = ?, started = COALESCE(started, ?) WHERE id = ?",
                (RUNNING, now, row["job_id"]),
            )
        payload = json.loads(row["payload"])
        return Task(
            row["id"], row["job_id"], row["kind"], row["target"], row["item"], payload, row["attempts"] + 1
        )

    def heartbeat(self, task_ids: list[int]) -> None:
        """Say that these running tasks are still being worked on."""
        if task_ids:
            with self._connect() as db:
                marks = ",".join("?" * len(task_ids))
                db.execute(f"UPDATE tasks SET heartbeat = ? WHERE id IN ({marks})", (time.time(), *task_ids))

    def finish(self, task: Task, state: str, reason: str = "", result: str = "") -> None:
        """Record a task's outcome (DONE, FAILED, CANCELLED) and update its job."""
        with self._transaction() as db:
            db.execute(
                "UPDATE tasks SET state = ?, reason = COALESCE(NULLIF(?, ''), reason), result = ?, "
                "heartbeat = ? WHERE id = ?",
                (state, reason, result, time.time(), task.id),
            )
            self._settle(db, task.job_id)

    def release(self, task: Task, reason: str) -> bool:
        """Put a task back (its worker died); after MAX_ATTEMPTS it fails instead. True if requeued."""
        with self._transaction() as db:
            again = task.attempts < MAX_ATTEMPTS
            note = reason if again else f"{reason} (gave up after {task.attempts} tries)"
            db.execute(
                "UPDATE tasks SET state = ?, owner = '', reason = ? WHERE id = ?",
                (WAITING if again else FAILED, note, task.id),
            )
            self._settle(db, task.job_id)
        return again

    def recover(self) -> int:
        """At start-up: tasks left running by a process that is gone go back to waiting. Returns how many."""
        host = socket.gethostname()
        count = 0
        with self._transaction() as db:
            for row in db.execute("SELECT id, owner FROM tasks WHERE state = ?", (RUNNING,)).fetchall():
                owner_host, _, rest = str(row["owner"]).partition(":")
                pid_text = rest.partition(":")[0]
                gone = (
                    owner_host == host
                    and pid_text.isdigit()
                    and (int(pid_text) == os.getpid() or not _process_alive(int(pid_text)))
                )
                if gone:
                    db.execute(
                        "UPDATE tasks SET state = ?, owner = '', reason = ? WHERE id = ?",
                        (WAITING, "interrupted by a restart; resumed", row["id"]),
                    )
                    count += 1
            self._requeue_stale(db)
        return count

    def _requeue_stale(self, db: sqlite3.Connection) -> None:
        db.execute(
            "UPDATE tasks SET state = ?, owner = '', reason = ? WHERE state = ? AND heartbeat < ?",
            (WAITING, "its worker stopped answering; retried", RUNNING, time.time() - LEASE_S),
        )

    def _settle(self, db: sqlite3.Connection, job_id: int) -> None:
        """Derive a job's state from its tasks."""
        counts = {
            row["state"]: row["n"]
            for row in db.execute(
                "SELECT state, COUNT(*) n FROM tasks WHERE job_id = ? GROUP BY state", (job_id,)
            )
        }
        cancel = db.execute("SELECT cancel FROM jobs WHERE id = ?", (job_id,)).fetchone()["cancel"]
        if counts.get(RUNNING):
            state, finished = RUNNING, None
        elif counts.get(WAITING) and not cancel:
            state, finished = (RUNNING if counts.get(DONE) or counts.get(FAILED) else WAITING), None
        elif counts.get(FAILED):
            state, finished = FAILED, time.time()
        elif cancel or counts.get(CANCELLED):
            state, finished = CANCELLED, time.time()
        else:
            state, finished = DONE, time.time()
        reason = ""
        if state == FAILED:
            failed = db.execute(
                "SELECT position, reason FROM tasks WHERE job_id = ? AND state = ? ORDER BY position",
                (job_id, FAILED),
            ).fetchall()
            reason = "; ".join(f"part {r['position'] + 1}: {r['reason']}" for r in failed[:3])
        elif state == CANCELLED:
            reason = "cancelled by the user" if cancel else "stopped"
        db.execute(
            "UPDATE jobs SET state = ?, reason = ?, finished = ? WHERE id = ?",
            (state, reason, finished, job_id),
        )

    # ------------------------------------------------------------------ cancelling and listing

    def cancel(self, job_id: int) -> bool:
        """Cancel a job: its waiting tasks will not run. Returns False when it had already ended."""
        with self._transaction() as db:
            row = db.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None or row["state"] in (DONE, FAILED, CANCELLED):
                return False
            db.execute("UPDATE jobs SET cancel = 1 WHERE id = ?", (job_id,))
            db.execute(
                "UPDATE tasks SET state = ?, reason = ? WHERE job_id = ? AND state = ?",
                (CANCELLED, "cancelled by the user", job_id, WAITING),
            )
            self._settle(db, job_id)
        return True

    def is_cancelled(self, job_id: int) -> bool:
        with self._connect() as db:
            row = db.execute("SELECT cancel FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return bool(row and row["cancel"])

    def jobs(self, limit: int = 50, target: str | None = None) -> list[JobView]:
        """The newest jobs first, with their task counts."""
        where, args = ("WHERE j.target = ?", (target,)) if target else ("", ())
        with self._connect() as db:
            rows = db.execute(
                "SELECT j.*, SUM(t.state = 'done') AS done, COUNT(t.id) AS total FROM jobs j "
                f"LEFT JOIN tasks t ON t.job_id = j.id {where} GROUP BY j.id ORDER BY j.id DESC LIMIT ?",
                (*args, limit),
            ).fetchall()
        return [
            JobView(
                r["id"],
                r["kind"],
                r["target"],
                r["label"],
                r["state"],
                r["reason"],
                int(r["done"] or 0),
                int(r["total"] or 0),
                r["created"],
                r["finished"],
            )
            for r in rows
        ]

    def tasks(self, job_id: int) -> list[dict[str, Any]]:
        with self._connect() as db:
            rows = db.execute("SELECT * FROM tasks WHERE job_id = ? ORDER BY position", (job_id,)).fetchall()
        return [dict(row) for row in rows]

    def active_items(self, target: str) -> set[str]:
        """Items of unfinished tasks of unfinished jobs for `target` (e.g. rows already queued)."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT t.item FROM tasks t JOIN jobs j ON j.id = t.job_id WHERE j.target = ? AND "
                "t.state IN (?, ?) AND j.cancel = 0",
                (target, WAITING, RUNNING),
            ).fetchall()
        return {row["item"] for row in rows}
