"""GenerationMetadata: the versioned record of how a clip was made, as JSON in a WAV tag or a sidecar.

Keys match mrq's web UI (`prompt` = custom emotion text, `time` = seconds taken), so its files load here
and ours load there. Embedded latents are base64 of a `torch.save` file and are only ever loaded with
`weights_only=True`.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import io
import json
import logging
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import music_tag
import mutagen
import torch

from src.atomic import write_json_atomic
from src.config_file import coerce_fields
from src.errors import MetadataError, SettingsError, UnsafeLatents
from src.prompting import strip_emotion_prefix
from src.settings import EXPERIMENTAL_FLAGS, GenerateDefaults, update_setting

log = logging.getLogger(__name__)

METADATA_VERSION = 1
LYRICS_TAG = "lyrics"  # the tag mrq's UI used; music-tag maps it to ID3 USLT inside the WAV
# Field name -> JSON key, where mrq's key differs from our field name.
_JSON_KEYS = {"custom_emotion": "prompt", "time_taken_s": "time"}
_FIELD_NAMES = {key: name for name, key in _JSON_KEYS.items()}
# TorToiSe's own spellings, accepted on read.
_ALIASES = {"cvvp_amount": "cvvp_weight", "sampler": "diffusion_sampler"}


@dataclass(frozen=True)
class GenerationMetadata:
    """Everything needed to repeat a generation. None means "not recorded" (History shows `?`).

    Attributes:
        schema_version: format version; files without one are mrq's (version 0).
        text: the text of this file (a line, or the whole prompt for combined clips), without prefix.
        delimiter: the Line Delimiter as typed (a newline is stored as the two characters `\\n`).
        emotion / custom_emotion: the Emotion radio and its custom text (JSON key `prompt`).
        voice: the voice name (`random`, `microphone` included).
        seed: the seed actually used.
        candidates ... cond_free_k: the Generate tab's values, with TorToiSe's names.
        experimentals: labels of the Experimental Flags that were on ("Half Precision", ...).
        time_taken_s: seconds the clip took (JSON key `time`).
        datetime: ISO local time of the generation.
        model / model_hash: the AR checkpoint path and its MD5.
        latents: base64 of the conditioning latents file, embedded in WAVs only.
        generation_mode / partial: Standard or Fast; partial marks a stopped stream's audio so far.
        extra: keys this version does not know, kept so that re-saving loses nothing.
    """

    schema_version: int = METADATA_VERSION
    text: str = ""
    delimiter: str = ""
    emotion: str | None = None
    custom_emotion: str | None = None
    voice: str | None = None
    seed: int | None = None
    candidates: int | None = None
    num_autoregressive_samples: int | None = None
    diffusion_iterations: int | None = None
    temperature: float | None = None
    diffusion_sampler: str | None = None
    breathing_room: int | None = None
    cvvp_weight: float | None = None
    top_p: float | None = None
    diffusion_temperature: float | None = None
    length_penalty: float | None = None
    repetition_penalty: float | None = None
    cond_free_k: float | None = None
    experimentals: tuple[str, ...] | None = None
    time_taken_s: float | None = None
    datetime: str | None = None
    model: str | None = None
    model_hash: str | None = None
    preset: str | None = None
    voice_chunks: int | None = None
    latents: str | None = None
    generation_mode: str | None = None  # "Standard" or "Fast" (absent before fast mode existed)
    partial: bool | None = None  # True: a stream stopped before its end; the audio so far
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GenerationMetadata:
        """Read a metadata object: missing keys take defaults, wrong types are dropped (and logged),
        unknown keys go to `extra`. Version 0 (mrq) text loses its emotion prefix."""
        data = dict(data)
        version = data.pop("schema_version", 0)
        renamed: dict[str, Any] = {}
        for key, value in data.items():
            name = _FIELD_NAMES.get(key, _ALIASES.get(key, key))
            if name not in renamed or key == name:
                renamed[name] = value
        renamed.pop("extra", None)
        values, problems, unknown = coerce_fields(cls, renamed)
        for problem in problems:
            log.warning("metadata: %s", problem)
        if version == 0 and isinstance(values.get("text"), str):
            # mrq stored single-line texts with the hidden emotion prefix.
            values["text"] = strip_emotion_prefix(
                values["text"], values.get("emotion"), values.get("custom_emotion")
            )
        return cls(**values, extra=unknown)

    def to_dict(self, *, include_latents: bool = True) -> dict[str, Any]:
        """The JSON object (mrq's key names, then `extra`); `latents` only when asked and present."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name == "extra":
                continue
            value = getattr(self, f.name)
            if f.name == "latents" and (value is None or not include_latents):
                continue
            out[_JSON_KEYS.get(f.name, f.name)] = list(value) if isinstance(value, tuple) else value
        for key, value in self.extra.items():
            out.setdefault(key, value)
        return out

    def to_json(self, *, include_latents: bool = True, indent: str | None = None) -> str:
        """Compact JSON by default (for tags); pass indent="\\t" for sidecars."""
        return json.dumps(self.to_dict(include_latents=include_latents), indent=indent, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> GenerationMetadata:
        """Parse JSON text. Raises MetadataError when it is not a JSON object."""
        try:
            data = json.loads(text)
        except ValueError as error:
            raise MetadataError(f"The metadata is not valid JSON ({error}).") from None
        if not isinstance(data, dict):
            raise MetadataError("The metadata is not a JSON object.")
        return cls.from_dict(data)

    def to_display_dict(self) -> dict[str, Any]:
        """For the Utilities tab: no latents, `time` as a 3-decimal string."""
        out = self.to_dict(include_latents=False)
        if self.time_taken_s is not None:
            out["time"] = f"{self.time_taken_s:.3f}"
        return out

    @property
    def half_precision(self) -> bool | None:
        return None if self.experimentals is None else EXPERIMENTAL_FLAGS[0] in self.experimentals

    @property
    def cond_free(self) -> bool | None:
        return None if self.experimentals is None else EXPERIMENTAL_FLAGS[1] in self.experimentals

    @classmethod
    def from_generate_defaults(cls, values: GenerateDefaults, **recorded: Any) -> GenerationMetadata:
        """Metadata for a run made with the Generate tab's `values`; `recorded` adds or overrides
        fields such as seed (the actual one), time_taken_s, datetime, model, model_hash, latents."""
        shared = {f.name for f in dataclasses.fields(cls)} & {f.name for f in dataclasses.fields(values)}
        data = {name: getattr(values, name) for name in shared}
        flags = [EXPERIMENTAL_FLAGS[0]] * values.half_precision + [EXPERIMENTAL_FLAGS[1]] * values.cond_free
        data["experimentals"] = tuple(flags)
        data.update(recorded)
        return cls(**data)

    def to_generate_defaults(self, base: GenerateDefaults | None = None) -> GenerateDefaults:
        """The Generate tab's values from this record (Copy Settings). Values that are missing or out
        of the tab's ranges keep those of `base` (default: the tab's defaults)."""
        result = base or GenerateDefaults()
        updates: dict[str, Any] = {"half_precision": self.half_precision, "cond_free": self.cond_free}
        for f in dataclasses.fields(GenerateDefaults):
            if f.name not in updates and hasattr(self, f.name):
                updates[f.name] = getattr(self, f.name)
        for name, value in updates.items():
            if value is None:
                continue
            try:
                result = update_setting(result, name, value)
            except SettingsError as error:
                log.warning("Copy Settings: %s", error)
        return result


def sidecar_path(wav_path: str | os.PathLike[str]) -> Path:
    """`<name>.json` beside `<name>.wav`."""
    return Path(wav_path).with_suffix(".json")


def embed_metadata(wav_path: str | os.PathLike[str], metadata: GenerationMetadata) -> None:
    """Write the metadata (with its latents, if any) as compact JSON into the file's `lyrics` tag.

    Raises:
        MetadataError: the file cannot be tagged.
    """
    try:
        tags = music_tag.load_file(str(wav_path))
        tags[LYRICS_TAG] = metadata.to_json()
        tags.save()
    except (mutagen.MutagenError, NotImplementedError, OSError) as error:
        raise MetadataError(f"Could not write metadata into {wav_path}: {error}") from error


def write_sidecar(wav_path: str | os.PathLike[str], metadata: GenerationMetadata) -> Path:
    """Write the metadata, without latents, as tab-indented JSON beside the clip; returns its path."""
    path = sidecar_path(wav_path)
    write_json_atomic(path, metadata.to_dict(include_latents=False))
    return path


def save_metadata(wav_path: str | os.PathLike[str], metadata: GenerationMetadata, *, embed: bool) -> Path:
    """Embed into the WAV ("Embed Output Metadata" on) or write a sidecar (off, latents dropped).

    Returns:
        The file that now holds the metadata.
    """
    if embed:
        embed_metadata(wav_path, metadata)
        return Path(wav_path)
    return write_sidecar(wav_path, metadata)


def read_embedded_metadata(path: str | os.PathLike[str]) -> GenerationMetadata | None:
    """The metadata in an audio file's `lyrics` tag, or None (no tag, not JSON, unreadable file)."""
    try:
        tags = music_tag.load_file(str(path), err="ignore")
        text = str(tags[LYRICS_TAG].value) if tags is not None else ""
    except (mutagen.MutagenError, NotImplementedError, OSError, KeyError, ValueError) as error:
        log.warning("Could not read tags of %s: %s", path, error)
        return None
    if not text.strip():
        return None
    try:
        return GenerationMetadata.from_json(text)
    except MetadataError as error:
        log.warning("Ignoring the lyrics tag of %s: %s", path, error)
        return None


def read_metadata(path: str | os.PathLike[str]) -> GenerationMetadata | None:
    """Metadata of a clip: its embedded tag, else its `.json` sidecar, else None.

    A `.json` path is read as a sidecar itself. A WAV without either gives None, never an error.

    Raises:
        MetadataError: `path` does not exist, or is a `.json` file that is not a metadata object.
    """
    path = Path(path)
    if not path.is_file():
        raise MetadataError(f"The file {path} does not exist.")
    if path.suffix.lower() == ".json":
        return GenerationMetadata.from_json(path.read_text(encoding="utf-8"))
    found = read_embedded_metadata(path)
    return found if found is not None else read_sidecar(path)


def read_sidecar(wav_path: str | os.PathLike[str]) -> GenerationMetadata | None:
    """The metadata in the `.json` beside a clip, or None when it is missing or unreadable (logged)."""
    sidecar = sidecar_path(wav_path)
    if not sidecar.is_file():
        return None
    try:
        return GenerationMetadata.from_json(sidecar.read_text(encoding="utf-8"))
    except (MetadataError, OSError, UnicodeDecodeError) as error:
        log.warning("Ignoring the sidecar %s: %s", sidecar, error)
        return None


def encode_latents(data: bytes) -> str:
    """Base64 (ASCII) of a latents file's bytes, for `GenerationMetadata.latents`."""
    return base64.b64encode(data).decode("ascii")


def encode_latents_file(path: str | os.PathLike[str]) -> str:
    """Base64 of the file at `path` (e.g. `voices/<voice>/cond_latents.pth`)."""
    return encode_latents(Path(path).read_bytes())


def decode_latents_bytes(b64: str) -> bytes:
    """The raw bytes of embedded latents after checking they load safely (see decode_embedded_latents)."""
    data = _b64_bytes(b64)
    _safe_load(data)
    return data


def decode_embedded_latents(b64: str) -> Any:
    """Load embedded latents with `torch.load(weights_only=True)`: tensors and plain data only.

    Returns:
        What was saved: our dict format or mrq's tuple (pass it to
        `tortoise.latents.ConditioningLatents.from_state`).

    Raises:
        UnsafeLatents: the data holds objects other than tensors (it could run code); nothing ran.
        MetadataError: not base64, not a torch file, or not latents.
    """
    return _safe_load(_b64_bytes(b64))


def _b64_bytes(b64: str) -> bytes:
    try:
        return base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError, TypeError) as error:
        raise MetadataError(f"The embedded latents are not valid base64 ({error}).") from None


def _safe_load(data: bytes) -> Any:
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise UnsafeLatents(
            "The embedded latents were refused: they are not a plain tensor file, and loading them "
            "could run code. Recompute the latents from the voice's audio instead."
        ) from None
    except Exception as error:  # damaged data makes torch.load raise many different types
        log.warning("Embedded latents could not be read", exc_info=True)
        raise MetadataError(f"The embedded latents could not be read ({error!r}).") from None
    if isinstance(state, dict) or (isinstance(state, (tuple, list)) and len(state) >= 2):
        return state
    raise MetadataError("The embedded data does not hold conditioning latents.")
