"""Speech codes for AR fine-tuning: batched clip -> mel -> DVAE codes, exactly as DL-Art-School made its
training targets, with a per-clip on-disk cache that is rebuilt when the clip, the DVAE or the front-end
changes.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from tortoise.audio import VOICE_SAMPLE_RATE, load_audio, pad_or_truncate
from tortoise.download import sha256_of
from tortoise.errors import AudioLoadError, InvalidInputError
from tortoise.mel import compute_ar_mel, mel_frames

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int], None]

# DLAS zero-pads every training wav to this many samples (11.61 s at 22.05 kHz) before the mel, so the
# codes of a clip's last second depend on that padding. Encoding each clip padded the same way gives the
# codes DLAS trained on: 1000 mel frames -> 250 codes.
DLAS_PADDED_SAMPLES = 255995
DVAE_DOWNSAMPLING = 4  # two stride-2 conv stages: one code per 4 mel frames, 1024 samples
DEFAULT_BATCH_SIZE = 8
CACHE_FORMAT_VERSION = 1
CACHE_SUFFIX = ".codes.pt"
_HASH_CHARS = 24  # hex digits of sha256 kept in cache file names and front-end ids


def num_codes(samples: int) -> int:
    """Codes the official DVAE gives for a wav of `samples` samples: ceil(ceil(frames / 2) / 2)."""
    return -(-mel_frames(samples) // DVAE_DOWNSAMPLING)


@torch.no_grad()
def codes_for_wavs(dvae: torch.nn.Module, wavs: torch.Tensor, mel_norms: torch.Tensor) -> torch.Tensor:
    """DVAE codes of a batch of equally long waveforms (no padding, no cache).

    Args:
        dvae: a `DiscreteVAE` (anything with its `get_codebook_indices` and parameters).
        wavs: (batch, samples) at 22.05 kHz in [-1, 1], any device; the mel runs on the DVAE's device.
        mel_norms: AR mel divisors [80] (`tortoise.mel.load_mel_norms`).

    Returns:
        int64 CPU tensor (batch, num_codes(samples)).
    """
    device = next(dvae.parameters()).device
    mel = compute_ar_mel(wavs.to(device=device, dtype=torch.float32), mel_norms)  # (batch, 80, frames)
    return dvae.get_codebook_indices(mel).cpu()


@dataclass(frozen=True)
class _CacheKey:
    """Everything the codes of one clip depend on; a cached file is used only if all fields match."""

    clip: str  # the clip's path relative to the cache folder (absolute when on another drive)
    clip_sha256: str
    dvae_hash: str
    frontend: str  # mel norms and padding

    def as_dict(self) -> dict[str, object]:
        return {
            "format_version": CACHE_FORMAT_VERSION,
            "clip": self.clip,
            "clip_sha256": self.clip_sha256,
            "dvae_hash": self.dvae_hash,
            "frontend": self.frontend,
        }


def encode_clips(
    dvae: torch.nn.Module,
    clip_paths: Sequence[str | os.PathLike],
    cache_dir: str | os.PathLike,
    dvae_hash: str,
    mel_norms: torch.Tensor,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    padded_samples: int = DLAS_PADDED_SAMPLES,
    progress: ProgressFn | None = None,
    use_tqdm: bool = False,
) -> dict[str, torch.Tensor]:
    """DVAE codes of dataset clips, read from the cache where it is still valid and computed otherwise.

    Each clip is loaded as `load_audio` does (first channel, resampled to 22.05 kHz, clipped to
    [-1, 1]), zero-padded at the end to `padded_samples` as DLAS padded its batches, and encoded in
    batches of `batch_size`. One cache file per clip lives in `cache_dir`; it is used only when the clip's
    content (sha256), `dvae_hash`, the mel norms and `padded_samples` all match what it was made with.
    Unreadable or stale cache files are rebuilt, and new ones are written atomically (temp file + rename),
    so an interrupted run keeps every finished batch. A cache that cannot be written only costs a warning.

    Args:
        dvae: a `DiscreteVAE` in eval mode on the device to encode on.
        clip_paths: audio files; duplicates are encoded once.
        cache_dir: cache folder inside the dataset folder (created when missing).
        dvae_hash: identifies the DVAE weights, e.g. the sha256 of `dvae.pth`.
        mel_norms: AR mel divisors [80] (`tortoise.mel.load_mel_norms`).
        batch_size: clips per DVAE call, >= 1.
        padded_samples: length every clip is padded to; the default is DLAS's maximum training clip.
        progress: called as `progress(done_clips, total_clips)`, once after the cache lookup and after
            every batch.
        use_tqdm: show a tqdm bar over the clips that need encoding.

    Returns:
        {os.fspath(path): int64 CPU codes (num_codes(padded_samples),)} in the order of `clip_paths`.

    Raises:
        InvalidInputError: `batch_size` < 1, or a clip is longer than `padded_samples`.
        AudioLoadError: a clip cannot be read (the message names it).
    """
    if batch_size < 1:
        raise InvalidInputError(f"batch_size must be at least 1, got {batch_size}")
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    frontend = _frontend_id(mel_norms, padded_samples)
    names = list(dict.fromkeys(os.fspath(p) for p in clip_paths))

    codes: dict[str, torch.Tensor] = {}
    pending: list[tuple[str, _CacheKey]] = []
    for name in names:
        key = _CacheKey(_clip_id(name, cache), _content_hash(name), dvae_hash, frontend)
        cached = _read_cache(_cache_file(cache, key), key)
        if cached is None:
            pending.append((name, key))
        else:
            codes[name] = cached
    log.info("DVAE codes: %d of %d clips cached, %d to encode", len(codes), len(names), len(pending))

    done = len(codes)
    if progress is not None:
        progress(done, len(names))
    with tqdm(total=len(pending), disable=not use_tqdm, desc="DVAE codes") as bar:
        for start in range(0, len(pending), batch_size):
            batch = pending[start : start + batch_size]
            wavs = torch.cat([_load_padded(name, padded_samples) for name, _ in batch])  # (batch, samples)
            for (name, key), clip_codes in zip(batch, codes_for_wavs(dvae, wavs, mel_norms)):
                codes[name] = clip_codes.clone()  # a row of its own, so the saved file holds just this clip
                _write_cache(_cache_file(cache, key), key, codes[name])
            done += len(batch)
            bar.update(len(batch))
            if progress is not None:
                progress(done, len(names))
    return {name: codes[name] for name in names}


def _load_padded(path: str, padded_samples: int) -> torch.Tensor:
    """(1, padded_samples) clip at 22.05 kHz, zero-padded at the end."""
    wav = load_audio(path, VOICE_SAMPLE_RATE)
    if wav.shape[-1] > padded_samples:
        raise InvalidInputError(
            f"{path} is {wav.shape[-1] / VOICE_SAMPLE_RATE:.2f} s long; training clips may be at most "
            f"{padded_samples / VOICE_SAMPLE_RATE:.2f} s. Remove it from the dataset or slice it shorter."
        )
    return pad_or_truncate(wav, padded_samples)


def _content_hash(path: str) -> str:
    try:
        return sha256_of(Path(path))
    except OSError as e:
        raise AudioLoadError(f"Cannot read audio file {path}: {e.strerror or e}") from e


def _frontend_id(mel_norms: torch.Tensor, padded_samples: int) -> str:
    norms = mel_norms.detach().to("cpu", torch.float32).contiguous().numpy().tobytes()
    return f"ar_mel:norms={hashlib.sha256(norms).hexdigest()[:_HASH_CHARS]}:padded={padded_samples}"


def _clip_id(path: str, cache: Path) -> str:
    """The clip's path relative to the cache folder, so moving the whole dataset keeps the cache valid."""
    absolute = os.path.abspath(path)
    try:
        return Path(os.path.relpath(absolute, os.path.abspath(cache))).as_posix()
    except ValueError:  # Windows: clip and cache on different drives
        return Path(absolute).as_posix()


def _cache_file(cache: Path, key: _CacheKey) -> Path:
    return cache / f"{hashlib.sha256(key.clip.encode('utf-8')).hexdigest()[:_HASH_CHARS]}{CACHE_SUFFIX}"


def _read_cache(path: Path, key: _CacheKey) -> torch.Tensor | None:
    """The cached codes if `path` holds a readable entry made for exactly `key`, else None."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # boundary: whatever a damaged file raises, the entry is simply rebuilt
        log.warning("Unreadable DVAE code cache %s; recomputing it", path, exc_info=True)
        return None
    if not isinstance(state, dict) or not all(
        type(state.get(k)) is type(v) and state.get(k) == v for k, v in key.as_dict().items()
    ):
        return None  # made for another clip content, DVAE or front-end
    codes = state.get("codes")
    is_valid = (
        isinstance(codes, torch.Tensor) and codes.dtype == torch.int64 and codes.dim() == 1
        and codes.numel() > 0 and int(codes.min()) >= 0
    )
    if not is_valid:
        log.warning("DVAE code cache %s holds no valid codes; recomputing it", path)
        return None
    return codes


def _write_cache(path: Path, key: _CacheKey, codes: torch.Tensor) -> None:
    """Write atomically: a temp file in the same folder, then a rename over `path`."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save({**key.as_dict(), "codes": codes}, tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:  # torch.save reports some file errors as RuntimeError
        log.warning("Could not write DVAE code cache %s (%s); the codes are still used", path, e)
    finally:
        Path(tmp).unlink(missing_ok=True)
