"""Conditioning latents: the ConditioningLatents type (save/load/blend) and computing it from voice clips,
either the official way (one 6 s window per clip) or mrq's whole-clip way (every sample, in chunks)."""

from __future__ import annotations

import io
import math
import os
import random
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from tortoise.audio import OUTPUT_SAMPLE_RATE, VOICE_SAMPLE_RATE, pad_or_truncate, resample
from tortoise.errors import InvalidInputError, WeightsError
from tortoise.mel import (
    DIFFUSION_CONDITIONING_SAMPLES,
    compute_ar_mel,
    compute_univnet_mel,
    format_conditioning,
)

LATENTS_FORMAT_VERSION = 1
LATENT_METHODS = ("whole", "official")
MIN_CLIP_SAMPLES = VOICE_SAMPLE_RATE // 2  # 0.5 s: shorter clips carry too little voice to condition on
DEFAULT_MAX_CHUNK_S = 10.0  # attention cost grows with the square of the chunk length
CHUNK_BATCH = 4  # chunks encoded at once; bounds memory for hour-long clips
CVVP_MAX_CLIPS = 16  # AR mels kept for CVVP ranking (one 6 s window per clip)


@dataclass(frozen=True)
class ConditioningLatents:
    """What the models need to speak in one voice.

    Attributes:
        autoregressive: (1, 1024) AR conditioning latent.
        diffusion: (1, 2048) diffusion conditioning latent.
        ar_mels: (1, clips, 80, 517) normalised AR mels for CVVP ranking, or None ("slim" latents).
        method: how they were computed ('whole', 'official', 'random', 'blend' or 'imported').
    """

    autoregressive: torch.Tensor
    diffusion: torch.Tensor
    ar_mels: torch.Tensor | None = None
    method: str = "whole"

    @property
    def is_slim(self) -> bool:
        return self.ar_mels is None

    def slim(self) -> ConditioningLatents:
        return replace(self, ar_mels=None)

    def to(self, device: torch.device | str) -> ConditioningLatents:
        mels = None if self.ar_mels is None else self.ar_mels.to(device)
        return replace(
            self,
            autoregressive=self.autoregressive.to(device),
            diffusion=self.diffusion.to(device),
            ar_mels=mels,
        )

    def to_state(self) -> dict:
        state = {
            "format_version": LATENTS_FORMAT_VERSION,
            "method": self.method,
            "autoregressive": self.autoregressive.detach().float().cpu(),
            "diffusion": self.diffusion.detach().float().cpu(),
        }
        if self.ar_mels is not None:
            state["ar_mels"] = self.ar_mels.detach().float().cpu()
        return state

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        torch.save(self.to_state(), buf)
        return buf.getvalue()

    def save(self, path: str | os.PathLike, extra: dict | None = None) -> None:
        """Write atomically (temp file + rename); `extra` adds plain entries such as a model hash."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        os.close(fd)
        try:
            torch.save({**self.to_state(), **(extra or {})}, tmp)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def from_state(cls, state: object, source: str = "latents") -> ConditioningLatents:
        """Accept our dict format and the official/mrq tuples (ar, diffusion[, mels, None])."""
        if isinstance(state, (tuple, list)) and len(state) >= 2:
            ar, diff = state[0], state[1]
            mels = state[2] if len(state) > 2 and isinstance(state[2], torch.Tensor) else None
            state = {"autoregressive": ar, "diffusion": diff, "method": "imported"}
            if mels is not None:
                state["ar_mels"] = mels
        if not isinstance(state, dict):
            raise WeightsError(f"{source} does not hold conditioning latents")
        ar, diff = state.get("autoregressive"), state.get("diffusion")
        if not isinstance(ar, torch.Tensor) or not isinstance(diff, torch.Tensor):
            raise WeightsError(f"{source} does not hold conditioning latents")
        ar, diff = ar.float().reshape(1, -1), diff.float().reshape(1, -1)
        mels = state.get("ar_mels")
        if mels is not None and (not isinstance(mels, torch.Tensor) or mels.dim() not in (3, 4)):
            mels = None
        elif mels is not None and mels.dim() == 3:
            mels = mels.unsqueeze(0)
        return cls(ar, diff, None if mels is None else mels.float(), str(state.get("method", "imported")))

    @classmethod
    def load(cls, path: str | os.PathLike) -> ConditioningLatents:
        """Load with weights_only=True (a file holding code is refused), onto the CPU.

        Raises:
            WeightsError: unreadable, not latents, or not a plain tensor file.
        """
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # pickle, zip and IO errors all mean the same to the caller
            raise WeightsError(f"Cannot read latents file {path}: {e}") from e
        return cls.from_state(state, str(path))

    @classmethod
    def from_bytes(cls, data: bytes, source: str = "embedded latents") -> ConditioningLatents:
        try:
            state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except Exception as e:
            raise WeightsError(f"Cannot read {source}: {e}") from e
        return cls.from_state(state, source)

    @staticmethod
    def blend(parts: Sequence[ConditioningLatents]) -> ConditioningLatents:
        """Average several voices (`a&b`): latents averaged; CVVP mels kept only if every part has them."""
        if not parts:
            raise InvalidInputError("No voices to blend.")
        ar = torch.stack([p.autoregressive for p in parts]).mean(0)
        diff = torch.stack([p.diffusion for p in parts]).mean(0)
        mels = None
        if all(p.ar_mels is not None for p in parts):
            mels = torch.cat([p.ar_mels for p in parts], dim=1)
        return ConditioningLatents(ar, diff, mels, "blend")


def check_clips(clips: Sequence[torch.Tensor]) -> None:
    """Raise InvalidInputError unless there is at least one clip and each is long enough."""
    if not clips:
        raise InvalidInputError("The voice has no usable clips. Add WAV/MP3/FLAC/OGG files to its folder.")
    for i, clip in enumerate(clips):
        if clip.shape[-1] < MIN_CLIP_SAMPLES:
            raise InvalidInputError(
                f"Clip {i + 1} is {clip.shape[-1] / VOICE_SAMPLE_RATE:.2f} s long; conditioning needs "
                f"at least {MIN_CLIP_SAMPLES / VOICE_SAMPLE_RATE:.1f} s per clip. "
                "Remove it or use a longer one."
            )


def _chunks(wave: torch.Tensor, max_samples: int) -> list[torch.Tensor]:
    """Cut (1, S) into near-equal pieces of at most max_samples."""
    count = max(1, math.ceil(wave.shape[-1] / max_samples))
    size = math.ceil(wave.shape[-1] / count)
    return [wave[..., i : i + size] for i in range(0, wave.shape[-1], size)]


def _batches_by_length(chunks: list[torch.Tensor], batch: int) -> list[torch.Tensor]:
    """Group equal-length chunks into (n, S) batches of at most `batch` rows."""
    by_len: dict[int, list[torch.Tensor]] = {}
    for c in chunks:
        by_len.setdefault(c.shape[-1], []).append(c.reshape(-1))
    out = []
    for same in by_len.values():
        for i in range(0, len(same), batch):
            out.append(torch.stack(same[i : i + batch]))
    return out


@torch.inference_mode()
def compute_latents(
    clips: Sequence[torch.Tensor],
    ar_model: torch.nn.Module,
    diffusion_model: torch.nn.Module,
    mel_norms: torch.Tensor,
    *,
    method: str = "whole",
    max_chunk_s: float = DEFAULT_MAX_CHUNK_S,
    slim: bool = False,
    rng: random.Random | None = None,
    device: torch.device | str = "cpu",
    progress: Callable[[int, int], None] | None = None,
) -> ConditioningLatents:
    """Conditioning latents of a voice from its clips.

    Args:
        clips: waveforms (1, samples) at 22.05 kHz, mono, in [-1, 1].
        ar_model / diffusion_model: UnifiedVoice and DiffusionTts (only their conditioning encoders run).
        mel_norms: (80,) AR mel divisors.
        method: 'whole' (default; mrq): every clip in full, cut into chunks of at most max_chunk_s and
            averaged. 'official': one 6 s window per clip for the AR latent (random crop of longer clips
            drawn from `rng`, default Python `random`) and the first 4.27 s at 24 kHz for diffusion.
        max_chunk_s: longest chunk in seconds ('whole' only). Longer chunks use more memory.
        slim: leave out the AR mels that CVVP ranking needs.
        device: where the encoders run.
        progress: callback (done, total) over encoded chunks.

    Raises:
        InvalidInputError: no clips, a clip shorter than 0.5 s, or an unknown method.
    """
    if method not in LATENT_METHODS:
        raise InvalidInputError(
            f"Unknown latents method '{method}'. Choose one of: {', '.join(LATENT_METHODS)}."
        )
    check_clips(clips)
    clips = [c.reshape(1, -1).float() for c in clips]
    norms = mel_norms.to(device)
    ar_mels = None
    if method == "official" or not slim:
        windows = clips if method == "official" else clips[:CVVP_MAX_CLIPS]
        ar_mels = torch.stack([format_conditioning(c.to(device), norms, rng) for c in windows], dim=1)
    if method == "official":
        ar_latent = ar_model.get_conditioning(ar_mels)
        diff_mels = [
            compute_univnet_mel(
                pad_or_truncate(
                    resample(c, VOICE_SAMPLE_RATE, OUTPUT_SAMPLE_RATE).to(device),
                    DIFFUSION_CONDITIONING_SAMPLES,
                )
            )
            for c in clips
        ]
        diff_latent = diffusion_model.get_conditioning(torch.stack(diff_mels, dim=1))
        if progress:
            progress(1, 1)
    else:
        ar_latent, diff_latent = _whole_clip_latents(
            clips, ar_model, diffusion_model, norms, max_chunk_s, device, progress
        )
    return ConditioningLatents(ar_latent.float(), diff_latent.float(), None if slim else ar_mels, method)


def _whole_clip_latents(clips, ar_model, diffusion_model, norms, max_chunk_s, device, progress):
    """Every sample of every clip: AR latent = mean over chunks; diffusion latent = mean over all frames."""
    wave = torch.cat(clips, dim=-1)
    max_samples = max(MIN_CLIP_SAMPLES, int(max_chunk_s * VOICE_SAMPLE_RATE))
    chunks = _chunks(wave, max_samples)
    batches = _batches_by_length(chunks, CHUNK_BATCH)
    ar_sum = None
    diff_sum = None
    diff_frames = 0
    for done, batch in enumerate(batches, start=1):
        batch = batch.to(device)  # (n, samples)
        ar_latents = ar_model.get_conditioning(compute_ar_mel(batch, norms).unsqueeze(1))  # (n, 1024)
        ar_part = ar_latents.sum(0, keepdim=True)
        ar_sum = ar_part if ar_sum is None else ar_sum + ar_part
        mel24 = compute_univnet_mel(resample(batch, VOICE_SAMPLE_RATE, OUTPUT_SAMPLE_RATE))  # (n, 100, T)
        emb = diffusion_model.contextual_embedder(mel24.to(diffusion_model.dtype))  # (n, 2048, T')
        diff_part = emb.float().sum(dim=(0, 2)).unsqueeze(0)
        diff_sum = diff_part if diff_sum is None else diff_sum + diff_part
        diff_frames += emb.shape[0] * emb.shape[2]
        if progress:
            progress(done, len(batches))
    return ar_sum / len(chunks), diff_sum / diff_frames
