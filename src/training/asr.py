"""Whisper speech recognition for dataset preparation: load/unload a model, transcribe into timed segments.

Two interchangeable backends, openai-whisper and faster-whisper (CTranslate2), chosen by a setting. Models
load on first use and can be unloaded to free memory before training or generation.
"""

from __future__ import annotations

import importlib
import logging
import os
import pickle
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from src.errors import AppError, InvalidInput

log = logging.getLogger(__name__)

ASR_SAMPLE_RATE = 16000  # Hz; Whisper's input rate
OPENAI_WHISPER = "openai-whisper"
FASTER_WHISPER = "faster-whisper"
ASR_BACKENDS = (OPENAI_WHISPER, FASTER_WHISPER)
# The model names offered in Settings (both backends know them); a local file or folder path also works.
WHISPER_MODELS = ("tiny", "tiny.en", "base", "base.en", "small", "small.en", "medium", "medium.en", "large")
DEFAULT_WHISPER_MODEL = "base"
DEFAULT_LANGUAGE = "en"  # an empty Language box means English, as in the original web UI
_AUTO_LANGUAGE = ("auto", "detect")
# Language names people type, for when openai-whisper (which has the full table) is not installed.
_LANGUAGE_NAMES = {
    "english": "en", "german": "de", "french": "fr", "spanish": "es", "italian": "it", "portuguese": "pt",
    "dutch": "nl", "polish": "pl", "russian": "ru", "ukrainian": "uk", "japanese": "ja", "chinese": "zh",
    "korean": "ko", "swedish": "sv", "turkish": "tr", "czech": "cs", "finnish": "fi", "greek": "el",
}  # fmt: skip
_MODEL_LOAD_ERRORS = (OSError, RuntimeError, ValueError, KeyError, pickle.UnpicklingError)


class AsrUnavailable(AppError):
    """The chosen speech-recognition backend is not installed, or its model cannot be loaded."""


@dataclass(frozen=True)
class Segment:
    """One timed piece of a transcript.

    Attributes:
        start_s: start time in seconds from the beginning of the audio.
        end_s: end time in seconds.
        text: the recognised text, without surrounding whitespace.
    """

    start_s: float
    end_s: float
    text: str

    @property
    def duration_s(self) -> float:
        """Length of the segment in seconds."""
        return self.end_s - self.start_s


@dataclass(frozen=True)
class Transcription:
    """What one audio file was transcribed into.

    Attributes:
        segments: timed segments in time order (empty when no speech was found).
        raw: the backend's full result in openai-whisper's shape (`text`, `segments` with `id`, `start`,
            `end`, `text`, ..., and `language`), JSON-serialisable; stored in `whisper.json`.
        language: the language code the audio was transcribed as.
    """

    segments: list[Segment]
    raw: dict[str, Any] = field(repr=False)
    language: str

    @property
    def text(self) -> str:
        """The whole transcript: segment texts joined by single spaces."""
        return " ".join(s.text for s in self.segments if s.text)


def normalize_language(language: str | None) -> str | None:
    """Turn what the user typed in the Language box into a Whisper language code.

    Args:
        language: a code (`en`), a name (`English`), empty or None (English), or `auto` (detect).

    Returns:
        A lower-case language code, or None to let Whisper detect the language.

    Raises:
        InvalidInput: a name that is not a known language.
    """
    value = (language or "").strip().lower()
    if not value:
        return DEFAULT_LANGUAGE
    if value in _AUTO_LANGUAGE:
        return None
    if len(value) <= 3 or value in ("haw", "yue"):
        return value
    names = dict(_LANGUAGE_NAMES)
    try:
        from whisper.tokenizer import TO_LANGUAGE_CODE

        names.update(TO_LANGUAGE_CODE)
    except ImportError:
        pass
    if value in names:
        return names[value]
    raise InvalidInput(
        f"'{language}' is not a language Whisper knows; type its code instead, e.g. 'en' or 'de'."
    )


def _import_backend(module: str, package: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise AsrUnavailable(
            f"The speech-recognition backend '{package}' is not installed ({error}). Install it with "
            f"`pip install {package}` (the setup scripts do this), or choose the other Whisper backend "
            "in Settings."
        ) from error


def _empty_device_cache() -> None:
    from tortoise import release_accelerator_memory  # the core (and torch) load only when a model did

    release_accelerator_memory()


class Transcriber(ABC):
    """A lazily loaded Whisper model. `transcribe` loads it on first use; `unload` frees it.

    Args:
        model: a model name from WHISPER_MODELS (downloaded into `download_root` on first use) or the path
            of a local model (an openai-whisper `.pt` checkpoint, or a CTranslate2 model folder).
        download_root: the folder that caches downloaded models (the app uses `models/whisper/`); None means
            the backend's own cache.
        device: `cpu`, `cuda` or None for automatic (CUDA when available).
    """

    backend: str = ""

    def __init__(
        self, model: str, download_root: str | os.PathLike[str] | None = None, device: str | None = None
    ):
        if not (model or "").strip():
            raise InvalidInput("No Whisper model is selected; choose one in Settings.")
        self.model_name = model.strip()
        self.download_root = Path(download_root) if download_root is not None else None
        self.device = device
        self._model: Any = None
        self._lock = threading.RLock()

    @property
    def is_loaded(self) -> bool:
        """Whether the model is in memory."""
        return self._model is not None

    def load(self) -> None:
        """Load the model now if it is not loaded yet.

        Raises:
            AsrUnavailable: the backend package is missing, or the model is neither on disk nor downloadable.
        """
        with self._lock:
            if self._model is None:
                log.info("loading %s model %s", self.backend, self.model_name)
                self._model = self._load()

    def unload(self) -> None:
        """Drop the model and free its memory (CPU and GPU); the next `transcribe` loads it again."""
        with self._lock:
            if self._model is not None:
                log.info("unloading %s model %s", self.backend, self.model_name)
                self._model = None
                _empty_device_cache()

    def transcribe(
        self, audio: str | os.PathLike[str] | np.ndarray, language: str | None = "en"
    ) -> Transcription:
        """Transcribe one recording.

        Args:
            audio: a float32 mono waveform at 16 kHz (ASR_SAMPLE_RATE) in [-1, 1], or a file path (decoded by
                the backend, which needs ffmpeg on PATH for openai-whisper).
            language: a code or name (see `normalize_language`); None or `auto` detects it.

        Returns:
            The timed segments and the full result.

        Raises:
            AsrUnavailable: the model could not be loaded.
            InvalidInput: the language is unknown.
        """
        code = normalize_language(language) if language is not None else None
        if isinstance(audio, np.ndarray):
            audio = np.ascontiguousarray(audio, dtype=np.float32).reshape(-1)
        else:
            audio = os.fspath(audio)
        with self._lock:
            self.load()
            raw = self._transcribe(audio, code)
        segments = [
            Segment(float(s["start"]), float(s["end"]), str(s["text"]).strip())
            for s in raw.get("segments", [])
        ]
        return Transcription(segments=segments, raw=raw, language=str(raw.get("language") or code or ""))

    def _missing_model(self, error: Exception, how: str) -> AsrUnavailable:
        where = self.download_root or "the backend's cache folder"
        return AsrUnavailable(
            f"The {self.backend} model '{self.model_name}' could not be loaded ({type(error).__name__}: "
            f"{error}). {how} It is looked for in {where}."
        )

    @abstractmethod
    def _load(self) -> Any:
        """Import the backend and return its model object."""

    @abstractmethod
    def _transcribe(self, audio: str | np.ndarray, language: str | None) -> dict[str, Any]:
        """Run the model; return the result in openai-whisper's shape."""


class OpenAIWhisperTranscriber(Transcriber):
    """openai-whisper (PyTorch). Models are `.pt` checkpoints; names download from OpenAI's servers."""

    backend = OPENAI_WHISPER

    def _load(self) -> Any:
        whisper = _import_backend("whisper", OPENAI_WHISPER)
        is_file = Path(self.model_name).expanduser().is_file()
        name = str(Path(self.model_name).expanduser()) if is_file else self.model_name
        if not is_file and name not in whisper.available_models():
            raise AsrUnavailable(
                f"'{self.model_name}' is neither an openai-whisper model name "
                f"({', '.join(WHISPER_MODELS)}, ...) nor an existing checkpoint file."
            )
        root = str(self.download_root) if self.download_root is not None else None
        try:
            return whisper.load_model(name, device=self.device, download_root=root)
        except _MODEL_LOAD_ERRORS as error:
            how = (
                "If it is a checkpoint path, check that the file is an openai-whisper .pt checkpoint."
                if is_file
                else f"It is downloaded on first use, which needs an internet connection; or put {name}.pt "
                "into that folder, or set a local checkpoint path as the Whisper model."
            )
            raise self._missing_model(error, how) from error

    def _transcribe(self, audio: str | np.ndarray, language: str | None) -> dict[str, Any]:
        use_fp16 = str(next(self._model.parameters()).device) != "cpu"  # fp16 only helps (and works) on GPU
        result = self._model.transcribe(audio, language=language, fp16=use_fp16, verbose=None)
        return _to_jsonable(result)


class FasterWhisperTranscriber(Transcriber):
    """faster-whisper (CTranslate2). Models are CTranslate2 folders; names download from the Hugging Face Hub.

    Args:
        compute_type: CTranslate2 compute type (`default`, `int8`, `float16`, ...).
        beam_size: beam width; 5 matches openai-whisper's command line.
        (other arguments as `Transcriber`)
    """

    backend = FASTER_WHISPER

    def __init__(
        self,
        model: str,
        download_root: str | os.PathLike[str] | None = None,
        device: str | None = None,
        compute_type: str = "default",
        beam_size: int = 5,
    ):
        super().__init__(model, download_root, device)
        self.compute_type = compute_type
        self.beam_size = beam_size

    def _load(self) -> Any:
        faster_whisper = _import_backend("faster_whisper", FASTER_WHISPER)
        path = Path(self.model_name).expanduser()
        is_dir = path.is_dir()
        name = str(path) if is_dir else self.model_name
        root = str(self.download_root) if self.download_root is not None else None
        kwargs = {"device": self.device or "auto", "compute_type": self.compute_type, "download_root": root}
        try:
            if is_dir:
                return faster_whisper.WhisperModel(name, **kwargs)
            try:  # a cached copy first, so an offline machine never waits for the network
                return faster_whisper.WhisperModel(name, local_files_only=True, **kwargs)
            except OSError:
                return faster_whisper.WhisperModel(name, local_files_only=False, **kwargs)
        except _MODEL_LOAD_ERRORS as error:
            how = (
                "Check that the folder is a CTranslate2 Whisper model (model.bin, config.json, "
                "tokenizer.json)."
                if is_dir
                else "It is downloaded from the Hugging Face Hub on first use, which needs an internet "
                "connection; or set the path of a local CTranslate2 model folder as the Whisper model."
            )
            raise self._missing_model(error, how) from error

    def _transcribe(self, audio: str | np.ndarray, language: str | None) -> dict[str, Any]:
        segments, info = self._model.transcribe(audio, language=language, beam_size=self.beam_size)
        rows = []
        for index, s in enumerate(segments):  # a generator: decoding happens here
            rows.append({
                "id": index, "seek": s.seek, "start": s.start, "end": s.end, "text": s.text,
                "tokens": list(s.tokens), "temperature": s.temperature, "avg_logprob": s.avg_logprob,
                "compression_ratio": s.compression_ratio, "no_speech_prob": s.no_speech_prob,
            })  # fmt: skip
        result = {"text": "".join(r["text"] for r in rows), "segments": rows, "language": info.language}
        return _to_jsonable(result)


def create_transcriber(
    backend: str,
    model: str = DEFAULT_WHISPER_MODEL,
    download_root: str | os.PathLike[str] | None = None,
    device: str | None = None,
) -> Transcriber:
    """Build the transcriber the settings ask for; nothing is loaded yet.

    Args:
        backend: one of ASR_BACKENDS (`openai-whisper` or `faster-whisper`).
        model: a name from WHISPER_MODELS or a local model path (see `Transcriber`).
        download_root: where downloaded models are cached, e.g. `models/whisper/`.
        device: `cpu`, `cuda` or None (automatic).

    Raises:
        InvalidInput: an unknown backend or an empty model name.
    """
    classes: dict[str, type[Transcriber]] = {
        OPENAI_WHISPER: OpenAIWhisperTranscriber,
        FASTER_WHISPER: FasterWhisperTranscriber,
    }
    if backend not in classes:
        raise InvalidInput(f"Unknown Whisper backend '{backend}'; choose one of: {', '.join(ASR_BACKENDS)}.")
    return classes[backend](model, download_root=download_root, device=device)


def _to_jsonable(value: Any) -> Any:
    """Recursively turn numpy scalars/arrays and tuples into plain JSON types."""
    if isinstance(value, dict):
        return {str(k): _to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def check_whisper_model(value: str, root: str | os.PathLike[str] | None = None) -> str:
    """The Whisper Model setting for what the user typed: a model name as it is, a local model as its
    absolute path (relative paths are taken from `root`, the app folder).

    A local model is an openai-whisper `.pt` checkpoint (a dict with `dims` and `model_state_dict`) or a
    faster-whisper (CTranslate2) folder with `model.bin`.

    Raises:
        InvalidInput: empty, a path that does not exist, or a file or folder that holds another kind of model.
    """
    text = (value or "").strip()
    if not text:
        raise InvalidInput("Whisper Model is empty; choose a size (tiny, base, ...) or give a model path.")
    looks_like_path = any(sep in text for sep in ("/", "\\")) or text.endswith(".pt") or text.startswith("~")
    from src.settings import WHISPER_MODELS as KNOWN_SIZES  # the Settings list (with large-v1..v3)

    if text in KNOWN_SIZES or text in WHISPER_MODELS:
        return text
    if not looks_like_path:
        raise InvalidInput(f"'{text}' is not a Whisper size ({', '.join(KNOWN_SIZES)}) nor a model path.")
    path = Path(text).expanduser()
    if not path.is_absolute() and root is not None:
        path = Path(root) / path
    kinds = "an openai-whisper .pt checkpoint or a faster-whisper (CTranslate2) folder with model.bin"
    if not path.exists():
        raise InvalidInput(f"The Whisper model {text} does not exist. Give a size (tiny, base, ...) or the "
                           f"path of a downloaded model: {kinds}.")
    if path.is_dir():
        if not (path / "model.bin").is_file():
            raise InvalidInput(f"The folder {text} holds no faster-whisper model (no model.bin). "
                               f"Give {kinds}.")
        return str(path.resolve())
    _check_whisper_checkpoint(path, text, kinds)
    return str(path.resolve())


def _check_whisper_checkpoint(path: Path, text: str, kinds: str) -> None:
    import torch

    try:
        data = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:  # boundary: any unreadable file gets the same answer
        raise InvalidInput(f"{text} is not a Whisper checkpoint ({type(error).__name__}). "
                           f"Give {kinds}.") from None
    if not isinstance(data, dict) or not {"dims", "model_state_dict"} <= set(data):
        raise InvalidInput(f"{text} holds another kind of model, not an openai-whisper checkpoint (it has no "
                           f"'dims' and 'model_state_dict'). Give {kinds}.")
