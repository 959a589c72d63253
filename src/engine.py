"""TTSEngine: owns the one TextToSpeech of the app. Loads it lazily (or in the background at start),
runs one job at a time under a lock, carries the Stop flag, and unloads/reloads it when the model or
device setting changes, without a restart.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from src.paths import AppPaths
from src.settings import AppSettings
from tortoise import GenerationCancelled, release_memory

log = logging.getLogger(__name__)

Loader = Callable[[], Any]  # returns a TextToSpeech (or a test double with the same methods)
WaitFn = Callable[[int], None]  # told the queue position (1 = next) while a job waits for the engine
WAIT_REPORT_S = 1.0  # how often a waiting job reports its position


class TTSEngine:
    """The TextToSpeech, its job lock and its cancel flag.

    Args:
        loader: builds the TextToSpeech; called on first use (`get`). Tests inject one that
            returns a tiny model.
        default_options: GenerationOptions fields passed to every `tts()` call (e.g.
            max_mel_tokens); request values win.
    """

    def __init__(self, loader: Loader, *, default_options: Mapping[str, Any] | None = None) -> None:
        self._loader = loader
        self.default_options = dict(default_options or {})
        self._tts: Any | None = None
        self._load_lock = threading.Lock()  # one load at a time
        self._job_lock = threading.Lock()  # one generation / latents job at a time
        self._waiting_lock = threading.Lock()
        self._waiting: set[int] = set()  # tickets of the calls waiting for the job lock, in arrival order
        self._next_ticket = 0
        self._cancel = threading.Event()
        self._busy = threading.Event()
        self._loading = threading.Event()
        self.last_load_error: str | None = None

    # ------------------------------------------------------------------ state

    @property
    def is_loaded(self) -> bool:
        return self._tts is not None

    @property
    def is_busy(self) -> bool:
        """True while a job holds the engine."""
        return self._busy.is_set()

    @property
    def model_name(self) -> str | None:
        return getattr(self._tts, "model_name", None)

    @property
    def model_hash(self) -> str | None:
        return getattr(self._tts, "model_hash", None)

    def status(self) -> str:
        """One line for the UI: loading, loaded (which model), failed, or not loaded yet."""
        if self._loading.is_set():
            return "Loading TorToiSe..."
        if self._tts is not None:
            return f"TorToiSe loaded: {self.model_name} ({self.model_hash or 'no hash'})"
        if self.last_load_error:
            return f"TorToiSe failed to load: {self.last_load_error}"
        return "TorToiSe is not loaded yet; it loads on the first generation."

    # ------------------------------------------------------------------ loading

    def get(self) -> Any:
        """The TextToSpeech, loading it first if needed (thread-safe; a concurrent load is awaited).

        Raises:
            TortoiseError / AppError: the models cannot be loaded (message says why).
        """
        tts = self._tts
        if tts is not None:
            return tts
        with self._load_lock:
            if self._tts is None:
                self._loading.set()
                try:
                    log.info("Loading TorToiSe...")
                    self._tts = self._loader()
                    self.last_load_error = None
                    log.info("TorToiSe loaded: %s", self.model_name)
                except Exception as error:
                    self.last_load_error = str(error)
                    raise
                finally:
                    self._loading.clear()
            return self._tts

    def load_in_background(self) -> threading.Thread:
        """Load in a daemon thread (start-up); failures are logged and retried on first use."""

        def run() -> None:
            try:
                self.get()
            except Exception:  # boundary: a background thread has nobody to raise to
                log.exception(
                    "Loading TorToiSe at start-up failed; it will be retried on first use"
                )

        thread = threading.Thread(target=run, name="tts-load", daemon=True)
        thread.start()
        return thread

    def set_loader(self, loader: Loader) -> None:
        """Use `loader` for the next load (e.g. after a settings change); the loaded model stays."""
        self._loader = loader

    def unload(self, on_wait: WaitFn | None = None) -> bool:
        """Drop the model and free its memory, after any running job. True if one was loaded.

        Args:
            on_wait: while a job runs, called about once a second with this call's queue position.
        """
        with self._queued(on_wait), self._load_lock:
            tts, self._tts = self._tts, None
        if tts is None:
            return False
        plan = getattr(tts, "plan", None)
        release = getattr(tts, "release", None)
        if callable(release):
            release()  # captured decode graphs hold device memory of their own
        del tts
        if plan is not None and hasattr(plan, "empty_cache"):
            plan.empty_cache()
        release_memory()  # without it the process keeps the freed weights (glibc holds on to the pages)
        log.info("TorToiSe unloaded")
        return True

    def reload(self, loader: Loader | None = None) -> Any:
        """Unload, switch to `loader` if given, and load again (model/device change, no restart)."""
        self.unload()
        if loader is not None:
            self._loader = loader
        return self.get()

    # ------------------------------------------------------------------ jobs and cancelling

    @property
    def queue_length(self) -> int:
        """Jobs running or waiting for the engine."""
        with self._waiting_lock:
            return len(self._waiting) + (1 if self.is_busy else 0)

    @contextlib.contextmanager
    def _queued(self, on_wait: WaitFn | None) -> Iterator[None]:
        """Hold the job lock; while waiting for it, tell `on_wait` the position in the queue (1 = next)."""
        with self._waiting_lock:
            ticket = self._next_ticket
            self._next_ticket += 1
            self._waiting.add(ticket)
        try:
            while not self._job_lock.acquire(timeout=WAIT_REPORT_S if on_wait else -1):
                if on_wait is not None:
                    with self._waiting_lock:
                        ahead = sum(1 for other in self._waiting if other < ticket)
                    on_wait(ahead + 1)
        finally:
            with self._waiting_lock:
                self._waiting.discard(ticket)
        try:
            yield
        finally:
            self._job_lock.release()

    @contextlib.contextmanager
    def job(
        self, *, half: bool | None = None, few_rows: bool = False, on_wait: WaitFn | None = None
    ) -> Iterator[Any]:
        """Hold the engine for one job and yield the loaded TextToSpeech.

        Jobs queue behind each other. The Stop flag is cleared when the job starts, so a Stop meant
        for an earlier job does not cancel this one.

        Args:
            half: use half precision (fp16 weights on CUDA, bf16 weights on CPUs that support it);
                None keeps the current setting. A TextToSpeech converts its weights in place
                (`set_half`) and keeps the setting for later jobs, since converting back costs a reload;
                other engines' objects get a half-precision plan for this job only.
            few_rows: the job decodes one row at a time (fast mode), where bf16 pays on every CPU.
            on_wait: while another job runs, called about once a second with the queue position.
        """
        with self._queued(on_wait):
            self._cancel.clear()
            self._busy.set()
            try:
                tts = self.get()
                original = getattr(tts, "plan", None)
                persistent = half is not None and callable(getattr(tts, "set_half", None))
                if persistent:
                    tts.set_half(half, few_rows=few_rows)
                elif half is not None and original is not None:
                    tts.plan = _plan_with_half(original, half, few_rows)
                try:
                    yield tts
                finally:
                    if original is not None and not persistent:
                        tts.plan = original
            finally:
                self._busy.clear()
                self._cancel.clear()

    def cancel(self) -> bool:
        """Ask the running job to stop at its next check. Returns whether a job was running."""
        if not self.is_busy:
            return False
        self._cancel.set()
        log.info("Stop requested")
        return True

    def is_cancelled(self) -> bool:
        """The flag TextToSpeech polls (`cancel=engine.is_cancelled`)."""
        return self._cancel.is_set()

    def check_cancelled(self) -> None:
        """Raise GenerationCancelled if Stop was pressed (between steps of a job)."""
        if self._cancel.is_set():
            raise GenerationCancelled("Generation stopped.")

    @contextlib.contextmanager
    def latents_on_cpu(self, tts: Any, enabled: bool) -> Iterator[None]:
        """Compute latents on the CPU meanwhile ("Force CPU for Conditioning Latents")."""
        plan = getattr(tts, "plan", None)
        if not enabled or plan is None or getattr(plan, "kind", "cpu") == "cpu":
            yield
            return
        import torch

        tts.plan = dataclasses.replace(
            plan, device=torch.device("cpu"), kind="cpu", half=False, low_vram=False
        )
        try:
            yield
        finally:
            tts.plan = plan


def _plan_with_half(plan: Any, half: bool, few_rows: bool = False) -> Any:
    """The plan with half precision on or off where the device supports it (not DirectML/MPS)."""
    with_half = getattr(plan, "with_half", None)
    return with_half(half, few_rows=few_rows) if callable(with_half) else plan


def loader_from_settings(paths: AppPaths, settings: AppSettings) -> Loader:
    """A loader for the official models in `models/tortoise/` with the device, Low VRAM, AR model
    and offline settings as they are now (call again after a settings change, then `reload`)."""
    device = settings.device_override or "auto"
    low_vram = settings.low_vram
    ar_path = settings.autoregressive_model or None
    if ar_path is not None and not Path(ar_path).is_absolute():
        ar_path = paths.root / ar_path  # mrq stored ./training/... paths relative to the app folder
    offline = True if settings.models_local_only else None

    def load() -> Any:
        from tortoise import TextToSpeech

        return TextToSpeech.from_dir(
            paths.tortoise_models_dir,
            device=device,
            low_vram=low_vram,
            autoregressive_path=ar_path,
            offline=offline,
        )

    return load
