"""Training runs as subprocesses: start one per voice (a pid lock file), stop it (signal, then kill),
re-attach after a page or app restart, and the numbers the Run Training tab shows (status line,
console tail, plot frames, checkpoint samples), read from `train.log` and `finetune/metrics.jsonl`.

Files in `training/<voice>/` (beside train.yaml, not in finetune/, which the trainer archives when a
fresh run starts): `train.pid` (JSON; exists while a run is live), `train.log` (the trainer's merged
stdout and stderr) and `train.exit` (JSON; how the last run ended, when this app saw it end).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from src.atomic import write_json_atomic
from src.errors import TrainingError
from src.paths import AppPaths
from src.training.progress import (
    CheckpointInfo,
    MetricsReader,
    PlotFrames,
    TrainingProgress,
    folder_size,
    list_checkpoints,
    plot_frames,
    progress_from,
    tail_lines,
)
from tortoise import release_memory, resident_bytes

log = logging.getLogger(__name__)

CODE_ROOT = Path(__file__).resolve().parents[2]  # where the `tortoise` package is importable from
TRAINER_MODULE = "tortoise.training"
CONFIG_NAME = "train.yaml"
LOCK_NAME = "train.pid"
LOG_NAME = "train.log"
EXIT_NAME = "train.exit"
RUN_FOLDER = "finetune"  # training/<voice>/finetune/, as src.training.finetune writes path.run_dir
METRICS_NAME = "metrics.jsonl"
DEFAULT_STOP_TIMEOUT_S = 90.0  # a graceful stop finishes the step and saves a checkpoint (no sample) first
SECOND_STOP_TIMEOUT_S = 5.0  # Stop pressed again: the trainer is interrupted, then killed after this
MAX_LINE = 600  # characters of one log line in a message
STARTING_GRACE_S = 30.0  # a lock without a pid yet is a run being started, not a stale one
EXIT_MEANINGS = {
    0: "finished",
    1: "stopped with an error",
    3: "crashed with an internal error",
    130: "was interrupted",
    -9: "was killed",  # by a signal: SIGKILL (POSIX)
    -15: "was terminated",  # SIGTERM (POSIX)
}


@dataclass(frozen=True)
class RunInfo:
    """What the lock file records about a live run.

    Attributes:
        voice: the dataset/run name (training/<voice>/).
        pid: the process started (the trainer, or torchrun for several GPUs); None while starting.
        started_at: Unix time the run was started.
        command: the command line.
        is_resume: whether it continues from a training state (its metrics continue the old file).
        process_token: the process's start time as the OS reports it, to tell a reused pid apart.
        stop_requested_at: Unix time Stop was pressed, or None.
        killed_after_s: set when the run did not stop in time after Stop and was killed (seconds waited).
    """

    voice: str
    pid: int | None
    started_at: float
    command: tuple[str, ...] = ()
    is_resume: bool = False
    process_token: str | None = None
    stop_requested_at: float | None = None
    killed_after_s: float | None = None


@dataclass(frozen=True)
class TrainingStatus:
    """A run as the UI shows it.

    Attributes:
        voice: the run's name.
        state: `running`, `stopping`, `finished`, `stopped`, `failed`, `ended` (it ended while no app
            watched, so its exit code is unknown) or `idle` (never started).
        pid: the live process, if any.
        exit_code: how the process ended, when known.
        progress: from the metrics; None before the trainer wrote any.
        message: one plain paragraph for the user (with the last log lines after a failure).
    """

    voice: str
    state: str
    pid: int | None = None
    exit_code: int | None = None
    progress: TrainingProgress | None = None
    message: str = ""

    @property
    def is_running(self) -> bool:
        return self.state in ("running", "stopping")

    @property
    def line(self) -> str:
        """The status line, or the message when there is no progress yet."""
        return self.progress.line if self.progress else ""


def unload_for_training(engine: Any) -> str:
    """Unload the app's TTS model before a run and give its memory back to the OS (glibc keeps freed
    heap pages otherwise, so the app would go on holding gigabytes); the note for the user.

    Args:
        engine: the app's TTSEngine (anything with `unload() -> bool`).

    Returns:
        "" when nothing was loaded, else a sentence with the app's memory before and after.
    """
    before = resident_bytes()
    unloaded = engine.unload()
    release_memory()
    if not unloaded:
        return ""
    after = resident_bytes()
    return (f"TorToiSe was unloaded to free memory (the app went from {before / 1024**3:.1f} GB to "
            f"{after / 1024**3:.1f} GB); it loads again on the next generation.")  # fmt: skip


def configured_voices(paths: AppPaths) -> list[str]:
    """Folders of training/ that hold a saved train.yaml, by name."""
    if not paths.training_dir.is_dir():
        return []
    return sorted(
        (p.name for p in paths.training_dir.iterdir() if (p / CONFIG_NAME).is_file()),
        key=lambda n: (n.lower(), n),
    )


# ---------------------------------------------------------------------------------------------- processes


def _process_token(pid: int) -> str | None:
    """The process's start time in clock ticks (Linux /proc), to recognise a reused pid; else None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()  # the name in (...) may hold spaces
    return fields[19] if len(fields) > 19 else None


def _process_alive(pid: int) -> bool:
    """Whether a process with this pid is running (not a zombie)."""
    if os.name == "nt":
        return _windows_process_alive(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive, and the token check tells whose
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rfind(")") + 2 :][:1] not in ("Z", "X")


def _windows_process_alive(pid: int) -> bool:
    import ctypes

    kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
    handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
    if not handle:
        return False
    try:
        code = ctypes.c_ulong()
        kernel32.GetExitCodeProcess(handle, ctypes.byref(code))
        return code.value == 259  # STILL_ACTIVE
    finally:
        kernel32.CloseHandle(handle)


def _send_stop(pid: int) -> None:
    """Ask the trainer to save and stop: SIGTERM to it alone (its data-loader workers must live on
    until it has saved); on Windows CTRL_BREAK to its process group."""
    try:
        if os.name == "nt":
            os.kill(pid, signal.CTRL_BREAK_EVENT)  # type: ignore[attr-defined]
        else:
            os.kill(pid, signal.SIGTERM)
    except OSError as error:
        log.info("could not signal process %d: %s", pid, error)


def _kill_tree(pid: int) -> None:
    """Kill the run's whole process group (trainer, torchrun workers, data-loader workers)."""
    try:
        if os.name == "nt":
            subprocess.run(
                ["taskkill", "/F", "/T", "/PID", str(pid)], capture_output=True, check=False
            )
        else:
            os.killpg(
                pid, signal.SIGKILL
            )  # started with start_new_session: its group id is its pid
    except OSError as error:
        log.info("could not kill process group %d: %s", pid, error)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


# ---------------------------------------------------------------------------------------------- runner


class TrainRunner:
    """Starts, stops and watches training subprocesses, one per voice.

    A run outlives the page and the app: its process runs in its own session, writes its output to
    `training/<voice>/train.log`, and a new TrainRunner (after a restart) finds it through
    `training/<voice>/train.pid`.

    Args:
        paths: the installation's folders.
        launcher: the command that runs the trainer (default `python -m tortoise.training`); tests
            pass a fake trainer script.
        extra_args: added after `--config <yaml>` (e.g. `--overrides tiny.yaml --no-sample`).
        env: environment variables added for the trainer (e.g. OMP_NUM_THREADS).
        stop_timeout_s: how long Stop waits for the trainer to save and exit before killing it.
    """

    def __init__(
        self,
        paths: AppPaths,
        *,
        launcher: Sequence[str] | None = None,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        stop_timeout_s: float = DEFAULT_STOP_TIMEOUT_S,
    ):
        self.paths = paths
        self.launcher = tuple(launcher) if launcher else (sys.executable, "-m", TRAINER_MODULE)
        self.extra_args = tuple(extra_args)
        self.env = dict(env or {})
        self.stop_timeout_s = stop_timeout_s
        self._lock = threading.RLock()
        self._children: dict[str, subprocess.Popen] = {}
        self._readers: dict[str, MetricsReader] = {}
        self._frames: dict[str, tuple[tuple[Any, ...], PlotFrames]] = {}

    # ------------------------------------------------------------------ files

    def folder(self, voice: str) -> Path:
        """`training/<voice>/` (raises InvalidVoiceName for names that are not a plain folder)."""
        return self.paths.training_dir_for(voice)

    def run_dir(self, voice: str) -> Path:
        """`training/<voice>/finetune/`: checkpoints, states and metrics.jsonl."""
        return self.folder(voice) / RUN_FOLDER

    def log_path(self, voice: str) -> Path:
        return self.folder(voice) / LOG_NAME

    # ------------------------------------------------------------------ start / stop

    def start(self, voice: str, *, device: str | None = None) -> TrainingStatus:
        """Start training `voice` from its saved train.yaml (resuming when it names a state).

        Args:
            voice: a folder of training/ with a train.yaml.
            device: `--device` for the trainer (default: its automatic choice).

        Returns:
            The status right after starting.

        Raises:
            TrainingError: no saved configuration, a run for this voice is already going, the
                configuration asks for more GPUs than there are, or the process could not start.
        """
        folder = self.folder(voice)
        config_path = folder / CONFIG_NAME
        if not config_path.is_file():
            raise TrainingError(
                f"'{voice}' has no saved training configuration ({config_path}); set it up in "
                "Generate Configuration and press Save Training Configuration first."
            )
        gpus, is_resume = _read_run_settings(config_path)
        command = self._command(config_path, gpus, device)
        with self._lock:
            running = self._live_run(voice)
            if running is not None and running.pid is None:
                raise TrainingError(f"Training for '{voice}' is being started; press Reconnect.")
            if running is not None:
                since = time.strftime("%H:%M:%S", time.localtime(running.started_at))
                raise TrainingError(
                    f"Training for '{voice}' is already running (process {running.pid}, started at "
                    f"{since}). Press Stop to end it, or Reconnect to watch it."
                )
            lock_path = folder / LOCK_NAME
            started_at = time.time()
            try:
                fd = os.open(lock_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                raise TrainingError(
                    f"Training for '{voice}' is being started by another window; press Reconnect."
                ) from None
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump({"voice": voice, "pid": None, "started_at": started_at}, f)
            try:
                process = self._spawn(command, folder / LOG_NAME)
            except OSError as error:
                lock_path.unlink(missing_ok=True)
                raise TrainingError(f"The trainer could not be started ({error}).") from error
            info = RunInfo(voice, process.pid, started_at, tuple(command), is_resume,
                           _process_token(process.pid))  # fmt: skip
            self._write_lock(info)
            (folder / EXIT_NAME).unlink(missing_ok=True)
            self._children[voice] = process
            self._readers.pop(voice, None)
        threading.Thread(
            target=self._watch, args=(info, process), name=f"train-{voice}", daemon=True
        ).start()
        log.info("training %s started: %s (pid %d)", voice, " ".join(command), process.pid)
        return self.status(voice)

    def _command(self, config_path: Path, gpus: int, device: str | None) -> list[str]:
        trainer = [*self.launcher, "--config", str(config_path), *self.extra_args]
        if device:
            trainer += ["--device", device]
        if gpus <= 1:
            return trainer
        available = _cuda_device_count()
        if available < gpus:
            raise TrainingError(
                f"The configuration asks for {gpus} GPUs, but this machine has {available}. Set GPUs "
                f"to {max(1, available)} in Generate Configuration and save it again."
            )
        if self.launcher[1:3] != ("-m", TRAINER_MODULE):
            raise TrainingError(
                "Several GPUs need the standard trainer (python -m tortoise.training)."
            )
        return [
            self.launcher[0], "-m", "torch.distributed.run", "--standalone",
            "--nproc_per_node", str(gpus), *trainer[1:],
        ]  # fmt: skip

    def _spawn(self, command: list[str], log_path: Path) -> subprocess.Popen:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(CODE_ROOT), env.get("PYTHONPATH")) if p)
        kwargs: dict[str, Any] = {"start_new_session": True}
        if os.name == "nt":
            kwargs = {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}  # type: ignore[attr-defined]
        with open(log_path, "w", encoding="utf-8") as log_file:
            log_file.write(f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] {' '.join(command)}\n")
            log_file.flush()
            return subprocess.Popen(
                command, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=CODE_ROOT, env=env, **kwargs,
            )  # fmt: skip

    def _watch(self, info: RunInfo, process: subprocess.Popen) -> None:
        """Reap our child, then record its exit code and free the lock."""
        self._finish(info, process.wait())

    def _finish(self, info: RunInfo, code: int | None) -> None:
        """Record how the run of `info` ended (once) and remove its lock if it is still the owner."""
        with self._lock:
            current = self._read_lock(info.voice)
            if current is None or current.pid != info.pid:
                return  # already finished (or a newer run holds the lock)
            self._write_exit(current, code, current.stop_requested_at)
            (self.folder(info.voice) / LOCK_NAME).unlink(missing_ok=True)
            child = self._children.get(info.voice)
            if child is not None and child.pid == info.pid:
                del self._children[info.voice]
        log.info("training %s ended with exit code %s", info.voice, code)

    def stop(self, voice: str) -> str:
        """Ask the run of `voice` to save a checkpoint and exit; kill it if it takes longer than
        `stop_timeout_s` (in the background, so this returns at once).

        Returns:
            A sentence for the user.

        Raises:
            TrainingError: no run of `voice` is going.
        """
        with self._lock:
            info = self._live_run(voice)
            if info is None or info.pid is None:
                raise TrainingError(f"No training is running for '{voice}'.")
            again = info.stop_requested_at is not None
            if not again:
                info = dataclasses.replace(info, stop_requested_at=time.time())
                self._write_lock(info)
        _send_stop(info.pid)  # a second signal interrupts the trainer at once
        timeout = SECOND_STOP_TIMEOUT_S if again else self.stop_timeout_s
        threading.Thread(target=self._kill_later, args=(info, timeout), daemon=True).start()
        if again:
            return (f"Stop pressed again: interrupting training for '{voice}' now (the newest complete "
                    f"checkpoint is kept); it is killed if it has not exited in {timeout:g} s.")
        return (
            f"Stopping training for '{voice}': it saves a checkpoint after the current step and exits "
            "(a checkpoint sample in progress is cancelled, a save in progress is abandoned). If it has "
            f"not exited in {timeout:g} s it is killed; press Stop again to interrupt it at once."
        )

    def _kill_later(self, info: RunInfo, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self._is_alive(info):
                return
            time.sleep(0.2)
        with self._lock:
            if info.pid is None or not self._is_alive(info):
                return
            current = self._read_lock(info.voice)
            if current is not None and current.pid == info.pid and current.killed_after_s is None:
                self._write_lock(dataclasses.replace(current, killed_after_s=timeout_s))
        log.warning("training %s did not stop within %.0f s; killing it", info.voice, timeout_s)
        _kill_tree(info.pid)

    # ------------------------------------------------------------------ watching

    def running_voices(self) -> list[str]:
        """Voices with a live run (found by their lock files, so also runs this app did not start)."""
        return [
            voice for voice in configured_voices(self.paths) if self._live_run(voice) is not None
        ]

    def is_running(self, voice: str) -> bool:
        return self._live_run(voice) is not None

    def reconnect(self, voice: str) -> TrainingStatus:
        """Re-attach to the live run of `voice` (after a page reload or an app restart).

        Raises:
            TrainingError: no run of `voice` is going; the message says how the last one ended.
        """
        status = self.status(voice)
        if not status.is_running:
            last = f" {status.message}" if status.state != "idle" else ""
            raise TrainingError(f"Training is not in progress for '{voice}'.{last}")
        return status

    def records(self, voice: str) -> list[dict[str, Any]]:
        """The metrics records of the current (or last) run of `voice`."""
        return self._read_records(voice)[1]

    def _read_records(self, voice: str) -> tuple[tuple[Any, ...], list[dict[str, Any]]]:
        """(a version that changes with the answer, the records), read incrementally."""
        path = self.run_dir(voice) / METRICS_NAME
        with self._lock:  # one reader per voice, shared by every page that watches it
            reader = self._readers.get(voice)
            if reader is None or reader.path != path:
                reader = self._readers[voice] = MetricsReader(path)
            records = reader.records()
            version = reader.version
        info = self._read_lock(voice) or self._last_exit_info(voice)
        if info is not None and not info.is_resume and records:
            # before a fresh run archives the old folder, metrics.jsonl still holds the old run's
            starts = [r for r in records if r.get("type") == "start"]
            if not starts or float(starts[-1].get("time", 0)) < info.started_at - 1:
                return (*version, "stale"), []
        return version, records

    def status(self, voice: str) -> TrainingStatus:
        """Where the run of `voice` stands: running, stopping or how it ended, with its progress."""
        info = self._live_run(voice)
        records = self.records(voice)
        progress = progress_from(records)
        if info is not None:
            state = "stopping" if info.stop_requested_at else "running"
            what = "Stopping" if info.stop_requested_at else "Training"
            message = f"{what} '{voice}' (process {info.pid})."
            if progress is None:
                message += " The trainer is loading the models and the dataset."
            elif progress.sampling_step is not None:
                message += (f" Rendering the checkpoint sample of step {progress.sampling_step}; "
                            "training goes on when it is written.")  # fmt: skip
            if progress is not None and progress.samples_off:
                message += f" Checkpoint samples are off for this run: {progress.samples_off}"
            if progress is not None and progress.disk_warning:
                message += f" {progress.disk_warning}"
            message += self.disk_note(voice)
            return TrainingStatus(voice, state, info.pid, None, progress, message)
        ended = _read_json(self.folder(voice) / EXIT_NAME)
        if ended is None and not self.log_path(voice).is_file():
            return TrainingStatus(voice, "idle", progress=progress, message="Not started yet.")
        ended = ended or {}
        code = ended.get("exit_code")
        was_stopped = bool(ended.get("stop_requested_at"))
        if ended.get("killed_after_s") is not None:
            return self._killed_status(voice, code, float(ended["killed_after_s"]), progress)
        if code is None and not was_stopped:  # it ended while no app of ours was its parent
            if any(r.get("type") == "end" for r in records):
                return self._ended_status(voice, 0, False, progress)
            message = (f"Training for '{voice}' is not running; it ended while the app was not "
                       f"watching. The last lines of {self.log_path(voice)}:\n"
                       + "\n".join(self._error_lines(voice)))  # fmt: skip
            return TrainingStatus(voice, "ended", None, None, progress, message)
        return self._ended_status(voice, code, was_stopped, progress)

    def disk_note(self, voice: str) -> str:
        """` The run folder holds X GB.` (each save adds its weights and its training state)."""
        size = folder_size(self.run_dir(voice))
        if not size:
            return ""
        shown = f"{size / 1024**3:.1f} GB" if size >= 1024**3 else f"{max(1, round(size / 1024**2))} MB"
        return f" The run folder holds {shown} ({self.run_dir(voice)})."

    def _ended_status(
        self, voice: str, code: int | None, was_stopped: bool, progress: TrainingProgress | None
    ) -> TrainingStatus:
        at = f" at step {progress.step} of {progress.steps}" if progress else ""
        if code == 0:
            state = "stopped" if was_stopped else "finished"
            word = "was stopped" if was_stopped else "finished"
            return TrainingStatus(
                voice, state, None, 0, progress, f"Training for '{voice}' {word}{at}.{self.disk_note(voice)}"
            )
        if was_stopped:
            how = f" (exit code {code})" if code is not None else ""
            return TrainingStatus(voice, "stopped", None, code, progress,
                                  f"Training for '{voice}' was stopped{at}{how}.")  # fmt: skip
        meaning = EXIT_MEANINGS.get(code, "ended unexpectedly") if code is not None else "ended"
        tail = "\n".join(self._error_lines(voice))
        message = (
            f"Training for '{voice}' {meaning}{at} (exit code {code}). The last lines of "
            f"{self.log_path(voice)}:\n{tail}"
        )
        return TrainingStatus(voice, "failed", None, code, progress, message)

    def _killed_status(
        self, voice: str, code: int | None, waited_s: float, progress: TrainingProgress | None
    ) -> TrainingStatus:
        saved = [ck for ck in self.checkpoints(voice) if ck.gpt_path is not None]
        newest = (f"the newest complete checkpoint is step {saved[0].step} ({saved[0].gpt_path})"
                  if saved else "no checkpoint had been saved yet")  # fmt: skip
        message = (f"Training for '{voice}' did not stop within {waited_s:g} s after Stop, so it was "
                   f"killed; {newest}. Resume from its training state to continue.")  # fmt: skip
        return TrainingStatus(voice, "stopped", None, code, progress, message)

    def _error_lines(self, voice: str, count: int = 6) -> list[str]:
        """The log's last lines that explain an end: from the line before the first error (what the
        trainer was doing) on, else the last `count`; very long lines are shortened."""
        lines = tail_lines(self.log_path(voice), 200)
        errors = [i for i, line in enumerate(lines) if " ERROR: " in line or "Traceback" in line]
        chosen = lines[max(0, errors[0] - 1) :][-count * 3 :] if errors else lines[-count:]
        return [line if len(line) <= MAX_LINE else line[: MAX_LINE - 3] + "..." for line in chosen]

    def console(self, voice: str, lines: int = 8) -> str:
        """The last `lines` lines of the run's log."""
        return "\n".join(tail_lines(self.log_path(voice), lines))

    def plot_frames(self, voice: str) -> PlotFrames:
        """Loss, LR and grad-norm frames of the run of `voice` (recomputed only when it logged more)."""
        version, records = self._read_records(voice)
        cached = self._frames.get(voice)
        if cached is None or cached[0] != version:
            cached = self._frames[voice] = (version, plot_frames(records))
        return cached[1]

    def checkpoints(self, voice: str) -> list[CheckpointInfo]:
        """Saved steps of the run of `voice`, newest first (each with its sample WAV if written)."""
        return list_checkpoints(self.run_dir(voice))

    # ------------------------------------------------------------------ lock file

    def _live_run(self, voice: str) -> RunInfo | None:
        """The lock file's run if its process is alive; a stale lock is finished and removed."""
        with self._lock:
            info = self._read_lock(voice)
            if info is None:
                return None
            if info.pid is None:
                if time.time() - info.started_at < STARTING_GRACE_S:
                    return info
                (self.folder(voice) / LOCK_NAME).unlink(missing_ok=True)
                return None
            if self._is_alive(info):
                return info
            child = self._children.get(voice)
            code = child.wait() if child is not None and child.pid == info.pid else None
            log.info("training %s: process %s is gone", voice, info.pid)
            self._finish(info, code)  # the exit code is unknown when another app started it
            return None

    def _is_alive(self, info: RunInfo) -> bool:
        if info.pid is None:
            return False
        child = self._children.get(info.voice)
        if child is not None and child.pid == info.pid:
            return child.poll() is None
        if not _process_alive(info.pid):
            return False
        return info.process_token is None or _process_token(info.pid) in (None, info.process_token)

    def _read_lock(self, voice: str) -> RunInfo | None:
        data = _read_json(self.folder(voice) / LOCK_NAME)
        if data is None:
            path = self.folder(voice) / LOCK_NAME
            if path.is_file() and time.time() - path.stat().st_mtime < STARTING_GRACE_S:
                return RunInfo(voice, None, path.stat().st_mtime)  # being written right now
            return None
        return _run_info(voice, data)

    def _write_lock(self, info: RunInfo) -> None:
        write_json_atomic(self.folder(info.voice) / LOCK_NAME, _info_dict(info))

    def _write_exit(self, info: RunInfo, code: int | None, stop_requested_at: float | None) -> None:
        data = {**_info_dict(info), "exit_code": code, "ended_at": time.time(),
                "stop_requested_at": stop_requested_at}  # fmt: skip
        write_json_atomic(self.folder(info.voice) / EXIT_NAME, data)

    def _last_exit_info(self, voice: str) -> RunInfo | None:
        data = _read_json(self.folder(voice) / EXIT_NAME)
        return _run_info(voice, data) if data else None


def _info_dict(info: RunInfo) -> dict[str, Any]:
    return {
        "voice": info.voice, "pid": info.pid, "started_at": info.started_at,
        "command": list(info.command), "is_resume": info.is_resume,
        "process_token": info.process_token, "stop_requested_at": info.stop_requested_at,
        "killed_after_s": info.killed_after_s,
    }  # fmt: skip


def _run_info(voice: str, data: Mapping[str, Any]) -> RunInfo | None:
    try:
        pid = data.get("pid")
        return RunInfo(
            voice=voice,
            pid=int(pid) if pid is not None else None,
            started_at=float(data.get("started_at") or 0.0),
            command=tuple(str(c) for c in data.get("command") or ()),
            is_resume=bool(data.get("is_resume")),
            process_token=data.get("process_token"),
            stop_requested_at=data.get("stop_requested_at"),
            killed_after_s=data.get("killed_after_s"),
        )
    except (TypeError, ValueError):
        return None


def _read_run_settings(config_path: Path) -> tuple[int, bool]:
    """(GPU count, whether it resumes) from a saved train.yaml."""
    try:
        data = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise TrainingError(
            f"{config_path} cannot be read ({error}); save the configuration again."
        ) from error
    if not isinstance(data, dict):
        raise TrainingError(f"{config_path} is not a training configuration; save it again.")
    gpus = len(data.get("gpu_ids") or [0])
    resume = (
        (data.get("path") or {}).get("resume_state") if isinstance(data.get("path"), dict) else None
    )
    return max(1, gpus), bool(resume)


def _cuda_device_count() -> int:
    from tortoise import cuda_device_count

    return cuda_device_count()
