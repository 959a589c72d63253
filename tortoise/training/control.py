"""Stopping a run from a signal handler: what Stop means depends on what the trainer is doing.

During a step the run finishes the step, saves and ends; during a checkpoint sample the sample is
cancelled; during a save the save is abandoned (its temporary files are removed, so the previous
checkpoint stays the newest complete one). A second request interrupts whatever is running.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

TRAINING, SAVING, SAMPLING = "training", "saving", "sampling"


class SaveAbandoned(BaseException):  # noqa: N818 -- like KeyboardInterrupt, not an error to catch broadly
    """Raised inside a save when Stop arrives during it; the run then ends without that checkpoint."""


class StopControl:
    """A stop flag the trainer polls, plus the phase it is in (set with `during`).

    Call the object to ask whether a stop was requested (it is a `should_stop` callable).
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self.phase = TRAINING

    def __call__(self) -> bool:
        return self._event.is_set()

    def request(self) -> None:
        """Ask the run to stop (from a signal handler in the main thread).

        Raises:
            KeyboardInterrupt: on a second request.
            SaveAbandoned: when a save is in progress.
        """
        if self._event.is_set():
            raise KeyboardInterrupt
        self._event.set()
        if self.phase == SAVING:
            raise SaveAbandoned

    @contextlib.contextmanager
    def during(self, phase: str) -> Iterator[None]:
        """Mark a phase of the run for the length of a `with` block."""
        previous, self.phase = self.phase, phase
        try:
            yield
        finally:
            self.phase = previous
