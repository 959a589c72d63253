"""Voices: list the voice folders, load and check their clips, and keep each voice's conditioning
latents cached per AR model in `voices/<voice>/cond_latents_<model-hash>.pth`.

A voice is a folder of clips under `voices/` (or the legacy `tortoise/voices/`, which wins for
the same name), a folder holding only a latents file, `random`, `microphone`, or a blend `a&b`.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from src.errors import AppError, InvalidInput, VoiceNotFound
from src.paths import SPECIAL_VOICES, AppPaths, validate_voice_name
from tortoise import (
    MIN_CLIP_SAMPLES,
    VOICE_SAMPLE_RATE,
    AudioLoadError,
    ConditioningLatents,
    WeightsError,
    load_audio,
)

log = logging.getLogger(__name__)

RANDOM_VOICE, MICROPHONE_VOICE = SPECIAL_VOICES
AUDIO_EXTENSIONS = (".wav", ".mp3", ".flac", ".ogg")
BLEND_SEPARATOR = "&"
LATENTS_PREFIX = "cond_latents"
LEGACY_LATENTS_FILE = "cond_latents.pth"  # mrq's name, not keyed by model
CACHE_VERSION = 1  # bump when the cache's extra keys or the way latents are computed change
SILENT_PEAK = 1e-3  # a clip whose loudest sample is below -60 dBFS carries no voice
MIN_CLIP_S = MIN_CLIP_SAMPLES / VOICE_SAMPLE_RATE  # shortest usable clip, in seconds
PREVIEW_MAX_S = 30.0  # longest "Source Sample" preview, in seconds of reference audio

ProgressFn = Callable[[str, int, int], None]


class VoiceUnusable(VoiceNotFound):
    """The voice folder exists but holds no clip that can be used (and no latents file)."""

    def __init__(self, voice: str, folder: Path, skipped: Sequence[str] = ()) -> None:
        if skipped:
            detail = "none of its clips can be used:\n- " + "\n- ".join(skipped)
        else:
            detail = f"its folder has no audio ({', '.join(AUDIO_EXTENSIONS)})"
        AppError.__init__(
            self,
            f"Voice '{voice}' cannot be used: {detail}\nAdd clips of at least "
            f"{MIN_CLIP_S:.1f} s with speech to {folder}/ and try again.",
        )
        self.voice = voice


class LatentsSource(Protocol):
    """What the latents code needs from a TextToSpeech (tests pass a fake)."""

    model_hash: str

    def get_conditioning_latents(
        self, voice_samples: Sequence[torch.Tensor], **kwargs: Any
    ) -> ConditioningLatents: ...

    def get_random_conditioning_latents(
        self, generator: torch.Generator | None = None
    ) -> ConditioningLatents: ...


@dataclass(frozen=True)
class VoiceClips:
    """The usable clips of a voice.

    Attributes:
        voice: the voice name.
        clips: mono waveforms (1, samples) at 22.05 kHz, in file-name order.
        files: the files they came from.
        skipped: one "file: reason" line per clip left out (corrupt, silent, too short).
    """

    voice: str
    clips: tuple[torch.Tensor, ...]
    files: tuple[Path, ...]
    skipped: tuple[str, ...] = ()

    @property
    def duration_s(self) -> float:
        return sum(c.shape[-1] for c in self.clips) / VOICE_SAMPLE_RATE


@dataclass(frozen=True)
class VoiceConditioning:
    """Latents ready for generation, and what the user should know about them.

    Attributes:
        voice: the voice name as chosen.
        latents: the conditioning latents (CPU).
        source: "cache", "computed", "latents file", "random", "microphone" or "blend".
        sample: reference audio for the "Source Sample" preview, (1, samples) at 22.05 kHz, or None.
        notes: plain-language remarks (skipped clips, a recomputed cache, ...).
        embed_latents: whether the latents belong in the output's metadata (not for `random`).
    """

    voice: str
    latents: ConditioningLatents
    source: str
    sample: torch.Tensor | None = None
    notes: tuple[str, ...] = ()
    embed_latents: bool = True


def latents_cache_name(model_hash: str) -> str:
    """`cond_latents_<model-hash>.pth` (`cond_latents.pth` when the model has no hash)."""
    return f"{LATENTS_PREFIX}_{model_hash}.pth" if model_hash else LEGACY_LATENTS_FILE


def suggested_voice_chunks(clip_count: int) -> int:
    """Voice Chunks to offer for a voice with `clip_count` clips: one chunk per clip, at least 1."""
    return max(1, int(clip_count))


def chunk_seconds(total_s: float, voice_chunks: int, max_chunk_s: float) -> float:
    """Longest latents chunk in seconds: the voice cut into `voice_chunks` pieces (0 = automatic),
    never longer than the "Voice Latents Max Chunk Size" setting `max_chunk_s`."""
    if voice_chunks <= 0 or total_s <= 0:
        return max_chunk_s
    return min(max_chunk_s, total_s / voice_chunks)


class VoiceLibrary:
    """The voices of one installation and their latents caches. Holds no audio between calls."""

    def __init__(self, paths: AppPaths) -> None:
        self.paths = paths

    # ------------------------------------------------------------------ listing

    def list_voices(self) -> list[str]:
        """Voice folder names (legacy and current, sorted, hidden ones skipped), then specials."""
        names: set[str] = set()
        for root in (self.paths.legacy_voices_dir, self.paths.voices_dir):
            if not root.is_dir():
                continue
            for entry in root.iterdir():
                if entry.is_dir() and _is_plain_name(entry.name):
                    names.add(entry.name)
        return sorted(names, key=lambda n: (n.lower(), n)) + list(SPECIAL_VOICES)

    def voice_dir(self, voice: str) -> Path:
        """The folder of a voice: `tortoise/voices/<voice>/` if present, else `voices/<voice>/`.

        Raises:
            InvalidVoiceName: not a plain folder name (separators, `..`, leading dot, special name).
            VoiceNotFound: neither folder exists.
        """
        name = validate_voice_name(voice)
        for root in (self.paths.legacy_voices_dir, self.paths.voices_dir):
            folder = root / name
            if folder.is_dir():
                return folder
        raise VoiceNotFound(name, self.paths.voices_dir)

    def clip_files(self, voice: str) -> list[Path]:
        """The audio files of a voice folder, sorted by name (hidden/temporary files skipped)."""
        folder = self.voice_dir(voice)
        return sorted(
            p
            for p in folder.iterdir()
            if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS and not p.name.startswith(".")
        )

    def blend_parts(self, voice: str) -> list[str] | None:
        """The voices of a blend `a&b`, or None if `voice` is not one (a folder `a&b` wins)."""
        if BLEND_SEPARATOR not in voice:
            return None
        try:
            self.voice_dir(voice)
            return None
        except (VoiceNotFound, InvalidInput):
            pass
        parts = [p.strip() for p in voice.split(BLEND_SEPARATOR)]
        if len(parts) < 2 or not all(parts):
            raise InvalidInput(f"'{voice}' is not a valid blend: write two or more voices as a&b.")
        for part in parts:
            if part in SPECIAL_VOICES:
                raise InvalidInput(f"'{part}' cannot be part of a blend; blend voice folders only.")
        return parts

    def suggest_voice_chunks(self, voice: str) -> int:
        """Voice Chunks to offer when `voice` is picked (1 for random, microphone, unknown)."""
        if not voice or voice in SPECIAL_VOICES:
            return 1
        try:
            parts = self.blend_parts(voice) or [voice]
            return suggested_voice_chunks(max(len(self.clip_files(p)) for p in parts))
        except AppError:
            return 1

    # ------------------------------------------------------------------ clips

    def load_clips(self, voice: str) -> VoiceClips:
        """Load every usable clip of a voice folder at 22.05 kHz, skipping bad ones.

        Raises:
            VoiceNotFound / InvalidVoiceName: no such folder, or a bad name.
            VoiceUnusable: no clip is usable; the message lists each file and why.
        """
        folder = self.voice_dir(voice)
        files = self.clip_files(voice)
        clips, kept, skipped = [], [], []
        for file in files:
            clip, problem = load_checked_clip(file)
            if problem is None:
                clips.append(clip)
                kept.append(file)
            else:
                skipped.append(f"{file.name}: {problem}")
        if skipped:
            log.warning("Voice '%s': skipped clips:\n%s", voice, "\n".join(skipped))
        if not clips:
            raise VoiceUnusable(voice, folder, skipped)
        return VoiceClips(voice, tuple(clips), tuple(kept), tuple(skipped))

    def preview(self, voice: str, max_s: float = PREVIEW_MAX_S) -> torch.Tensor | None:
        """Reference audio of a voice (or blend), at most `max_s` seconds; None if it has none."""
        parts = self.blend_parts(voice) or [voice]
        pieces: list[torch.Tensor] = []
        total = 0
        limit = int(max_s * VOICE_SAMPLE_RATE)
        for part in parts:
            for file in self.clip_files(part):
                if total >= limit:
                    break
                clip, problem = load_checked_clip(file)
                if problem is None:
                    pieces.append(clip[:, : limit - total])
                    total += pieces[-1].shape[-1]
        return torch.cat(pieces, dim=-1) if pieces else None

    # ------------------------------------------------------------------ latents

    def latents_path(self, voice: str, model_hash: str) -> Path:
        """`<voice folder>/cond_latents_<model-hash>.pth`."""
        return self.voice_dir(voice) / latents_cache_name(model_hash)

    def conditioning(
        self,
        voice: str,
        tts: LatentsSource,
        *,
        voice_chunks: int = 0,
        slim: bool = True,
        max_chunk_s: float = 10.0,
        mic_audio: str | Path | None = None,
        seed: int | None = None,
        force: bool = False,
        progress: ProgressFn | None = None,
    ) -> VoiceConditioning:
        """The latents to generate with for any voice choice.

        Args:
            voice: a folder name, `random`, `microphone` or a blend `a&b`.
            tts: computes latents (a TextToSpeech); its `model_hash` keys the cache.
            voice_chunks: pieces to cut the voice into (0 = automatic; see `chunk_seconds`).
            slim: leave out the CVVP mels ("Slimmer Computed Latents").
            max_chunk_s: the "Voice Latents Max Chunk Size" setting, in seconds.
            mic_audio: the recorded clip, required for `microphone`.
            seed: makes `random` latents repeatable.
            force: recompute even when the cache is valid ((Re)Compute Voice Latents).
            progress: (stage, done, total) callback while computing.

        Raises:
            InvalidInput: no recording for `microphone`, a bad blend.
            VoiceNotFound / VoiceUnusable: no such voice, or no usable clip.
        """
        if not voice or not str(voice).strip():
            raise InvalidInput("Please provide a voice: pick one in the Voice list.")
        voice = str(voice).strip()
        if voice == RANDOM_VOICE:
            generator = torch.Generator().manual_seed(seed) if seed is not None else None
            return VoiceConditioning(
                voice, tts.get_random_conditioning_latents(generator), "random", embed_latents=False
            )
        if voice == MICROPHONE_VOICE:
            return self._microphone(tts, mic_audio, voice_chunks, slim, max_chunk_s, progress)
        parts = self.blend_parts(voice)
        if parts is None:
            return self._folder(voice, tts, voice_chunks, slim, max_chunk_s, force, progress)
        found = [
            self._folder(p, tts, voice_chunks, slim, max_chunk_s, force, progress) for p in parts
        ]
        samples = [f.sample for f in found if f.sample is not None]
        return VoiceConditioning(
            voice,
            ConditioningLatents.blend([f.latents for f in found]),
            "blend",
            torch.cat(samples, dim=-1) if samples else None,
            tuple(n for f in found for n in f.notes),
        )

    def _microphone(
        self, tts, mic_audio, voice_chunks, slim, max_chunk_s, progress
    ) -> VoiceConditioning:
        if not mic_audio:
            raise InvalidInput(
                "The voice is 'microphone' but there is no recording. Record (or upload) a clip in "
                "Microphone Source first, or pick another voice."
            )
        clip, problem = load_checked_clip(Path(mic_audio))
        if problem is not None:
            raise InvalidInput(
                f"The microphone recording cannot be used: {problem}. Record it again."
            )
        seconds = chunk_seconds(clip.shape[-1] / VOICE_SAMPLE_RATE, voice_chunks, max_chunk_s)
        latents = tts.get_conditioning_latents(
            [clip], max_chunk_s=seconds, slim=slim, progress=progress
        )
        return VoiceConditioning(MICROPHONE_VOICE, latents, "microphone", clip)

    def _folder(
        self, voice, tts, voice_chunks, slim, max_chunk_s, force, progress
    ) -> VoiceConditioning:
        folder = self.voice_dir(voice)
        files = self.clip_files(voice)
        if not files:
            return self._latents_only(voice, folder, tts.model_hash)
        cache = folder / latents_cache_name(tts.model_hash)
        wanted = {
            "cache_version": CACHE_VERSION,
            "model_hash": tts.model_hash,
            "slim": bool(slim),
            "voice_chunks": int(voice_chunks),
            "clips": _fingerprint(files),
        }
        notes: list[str] = []
        if not force:
            cached, reason = _read_cache(cache, wanted, files)
            if cached is not None:
                return VoiceConditioning(voice, cached, "cache", self.preview(voice))
            if reason:
                log.info("Voice '%s': recomputing latents (%s)", voice, reason)
        loaded = self.load_clips(voice)
        if loaded.skipped:
            notes.append(
                f"Voice '{voice}': skipped {len(loaded.skipped)} clip(s): "
                + "; ".join(loaded.skipped)
            )
        seconds = chunk_seconds(loaded.duration_s, voice_chunks, max_chunk_s)
        latents = tts.get_conditioning_latents(
            list(loaded.clips), max_chunk_s=seconds, slim=slim, progress=progress
        )
        try:
            latents.save(cache, extra=wanted)
        except OSError as error:
            log.warning("Could not write the latents cache %s: %s", cache, error)
            notes.append(
                f"The latents of '{voice}' could not be cached ({error}); "
                "they are recomputed next time."
            )
        sample = torch.cat(loaded.clips, dim=-1)[:, : int(PREVIEW_MAX_S * VOICE_SAMPLE_RATE)]
        return VoiceConditioning(voice, latents, "computed", sample, tuple(notes))

    def _latents_only(self, voice: str, folder: Path, model_hash: str) -> VoiceConditioning:
        candidates = sorted(
            folder.glob(f"{LATENTS_PREFIX}*.pth"), key=lambda p: p.stat().st_mtime, reverse=True
        )
        preferred = [folder / latents_cache_name(model_hash), folder / LEGACY_LATENTS_FILE]
        ordered = [p for p in preferred if p.is_file()] + [
            p for p in candidates if p not in preferred
        ]
        if not ordered:
            raise VoiceUnusable(voice, folder)
        problems = []
        for path in ordered:
            try:
                latents = ConditioningLatents.load(path)
            except WeightsError as error:
                problems.append(f"{path.name}: {error}")
                continue
            notes = ()
            if path.name != latents_cache_name(model_hash):
                notes = (
                    f"Voice '{voice}' has no clips; using its latents file {path.name}, which may "
                    "have been made with another model.",
                )
            return VoiceConditioning(voice, latents, "latents file", None, notes)
        raise VoiceUnusable(voice, folder, problems)


def _is_plain_name(name: str) -> bool:
    try:
        validate_voice_name(name)
    except InvalidInput:
        return False
    return True


def load_checked_clip(
    path: Path, *, use_channel_mean: bool = False, ffmpeg_path: str | None = None
) -> tuple[torch.Tensor, str | None]:
    """Load a voice clip and judge whether it can condition a voice: the one clip check of the app.

    Args:
        path: an audio file.
        use_channel_mean: average the channels (imports) instead of keeping the first (the official way).
        ffmpeg_path: ffmpeg for formats libsndfile cannot read.

    Returns:
        (clip (1, S) at 22.05 kHz, None), or (an empty clip, the reason in plain words: unreadable,
        too short, silent).
    """
    empty = torch.zeros(1, 0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # silence and bad scaling are judged below, in plain words
            clip = load_audio(
                path, VOICE_SAMPLE_RATE, use_channel_mean=use_channel_mean, ffmpeg_path=ffmpeg_path
            )
    except AudioLoadError as error:
        return empty, f"cannot be read as audio ({_reason(error)})"
    seconds = clip.shape[-1] / VOICE_SAMPLE_RATE
    if clip.shape[-1] < MIN_CLIP_SAMPLES:
        return (
            empty,
            f"too short ({seconds:.2f} s; at least {MIN_CLIP_S:.1f} s needed)",
        )
    if clip.abs().max().item() < SILENT_PEAK:
        return empty, "silent"
    return clip, None


def _reason(error: AudioLoadError) -> str:
    text = str(error)
    return text.split(": /")[0] if ": /" in text else text


def _fingerprint(files: Sequence[Path]) -> list[list[Any]]:
    """[name, size, mtime_ns] per clip: a changed, added, removed or touched clip changes it."""
    out = []
    for f in files:
        stat = f.stat()
        out.append([f.name, int(stat.st_size), int(stat.st_mtime_ns)])
    return out


def _read_cache(
    path: Path, wanted: dict[str, Any], files: Sequence[Path]
) -> tuple[ConditioningLatents | None, str]:
    """The cached latents if still valid, else (None, why). Never raises for a bad file."""
    if not path.is_file():
        return None, ""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        latents = ConditioningLatents.from_state(state, str(path))
    except Exception as error:  # any unreadable cache is simply recomputed
        log.warning("Latents cache %s is unreadable (%s); recomputing", path, error)
        return None, "unreadable cache"
    if not isinstance(state, dict):
        return None, "cache in an old format"
    cache_mtime = path.stat().st_mtime_ns
    if any(f.stat().st_mtime_ns > cache_mtime for f in files):
        return None, "a clip is newer than the cache"
    for key, value in wanted.items():
        if state.get(key) != value:
            return None, f"{key} changed"
    return latents, ""
