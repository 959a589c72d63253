"""AppError and its subclasses: every failure of an app service that the user can act on.

`str(error)` is the message shown to the user, so it says what went wrong and what to do next.
`src/ui/errors.py::ui_handler` turns these into pop-ups; anything else is logged as an internal error.
"""

from __future__ import annotations

from pathlib import Path


class AppError(Exception):
    """Base class of the app services' deliberate errors; the message is user-facing."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(AppError):
    """A value the user entered cannot be used (empty prompt, negative seed, unknown emotion...)."""


class InvalidVoiceName(InvalidInput):
    """A voice name that cannot be used as a folder name."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"'{name}' cannot be used as a voice name: {reason}.")
        self.name = name


class VoiceNotFound(AppError):
    """The selected voice has no folder (or no usable audio) under voices/."""

    def __init__(self, voice: str, voices_dir: Path | str | None = None) -> None:
        where = f"{Path(voices_dir) / voice}/" if voices_dir is not None else f"voices/{voice}/"
        super().__init__(
            f"Voice '{voice}' was not found. Put its clips in {where} and press Refresh Voice List."
        )
        self.voice = voice


class ResultNotFound(AppError):
    """A result file or folder that History or Utilities asked for does not exist."""

    def __init__(self, path: Path | str) -> None:
        super().__init__(f"The result file {path} does not exist; press Refresh to update the list.")
        self.path = Path(path)


class SettingsError(AppError):
    """A setting has a value outside its type, range or choices."""


class MetadataError(AppError):
    """Generation metadata could not be read or written."""


class UnsafeLatents(MetadataError):
    """Embedded latents hold something other than plain tensors and were refused without loading."""


class DatasetEmpty(AppError):
    """A training dataset has no usable clips."""


class TrainingError(AppError):
    """Training could not be configured, started, stopped or resumed."""


class MissingRequirement(AppError):
    """Something a run needs (a model, the aligner, ffmpeg, disk space) is missing; found before any work."""
