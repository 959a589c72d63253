"""Error types of the TTS core: every failure a caller can act on has its own class and a plain message."""


class TortoiseError(Exception):
    """Base class for every error the TTS core raises on purpose."""


class WeightsError(TortoiseError):
    """A checkpoint is missing keys, has unexpected keys or shapes, or cannot be read."""


class AudioLoadError(TortoiseError):
    """An audio file is missing, empty, corrupt or not audio. The message names the file."""


class TextTooLongError(TortoiseError):
    """The text needs more tokens than one generation pass allows; the caller must split it."""


class InvalidInputError(TortoiseError):
    """An argument (text, preset, sampler, device, voice) is not usable; the message says why."""


class ModelDownloadError(TortoiseError):
    """A model file could not be fetched or verified; the message lists the files and where to put them."""


class GenerationCancelled(TortoiseError):
    """Raised inside a long job when its cancel flag is set."""
