"""Streaming audio from a growing sequence of GPT latents: when to decode, which window of latents to decode,
and how consecutive decodes are stitched with upstream's linear cross-fade (TORTOISE_SPEC §13.3).

Pure torch over an already-built HiFi-GAN decoder; the AR side lives in tortoise/fast.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from tortoise.errors import InvalidInputError
from tortoise.models.hifigan import LATENT_STRETCH, RATE_STRETCH, frames_for_latents

# One decoder frame reaches output samples at most this many frames away (measured; see the tests), i.e.
# about 2.8 latents. Windows keep at least this many frames left of the first new sample.
RECEPTIVE_FIELD_FRAMES = 13
# Latents decoded to the left of the first new sample: 16 (about 70 frames) leave a wide margin.
DEFAULT_CONTEXT_LATENTS = 16
MIN_CONTEXT_LATENTS = 5
MAX_OVERLAP_SAMPLES = 8192


@dataclass(frozen=True)
class StreamSettings:
    """When chunks are made and how they are joined: upstream's chunking, a bounded decode window.

    Attributes:
        first_chunk_codes: codes decoded before the first chunk. Upstream's first_buffer is 60 (2.8 s of
            audio); 20 (0.93 s) gets the first audio out three times sooner, which matters most on CPUs.
        chunk_codes: new codes per later chunk (upstream's stream_chunk_size, 40 ≈ 1.9 s).
        overlap_samples: cross-fade length between chunks at 24 kHz (upstream's overlap_wav_len, 1024).
        context_latents: latents decoded left of the new audio; None re-decodes everything each time
            (upstream, O(length) per chunk, O(length²) in all).
    """

    first_chunk_codes: int = 20
    chunk_codes: int = 40
    overlap_samples: int = 1024
    context_latents: int | None = DEFAULT_CONTEXT_LATENTS

    def check(self, max_codes: int) -> None:
        """Raise InvalidInputError for chunk sizes outside 1..max_codes or a bad overlap or context."""
        for name in ("first_chunk_codes", "chunk_codes"):
            value = getattr(self, name)
            if not 1 <= value <= max_codes:
                raise InvalidInputError(
                    f"Stream {name.replace('_', ' ')} is {value}; it must be between 1 and {max_codes} "
                    "(the most codes one line can have)."
                )
        if not 0 <= self.overlap_samples <= MAX_OVERLAP_SAMPLES:
            raise InvalidInputError(
                f"Stream overlap is {self.overlap_samples} samples; use 0 to {MAX_OVERLAP_SAMPLES}."
            )
        if self.context_latents is not None and self.context_latents < MIN_CONTEXT_LATENTS:
            raise InvalidInputError(
                f"Stream context must be at least {MIN_CONTEXT_LATENTS} latents (the decoder's reach)."
            )


class ChunkStitcher:
    """Turns successive decodes of a growing waveform into non-overlapping chunks with cross-fades.

    A decode is given as the slice `wav[start:total]` of the whole decode `wav` of that moment, so that a
    windowed decoder need not produce the samples before `start`. As upstream's handle_chunks: every
    chunk ends `overlap` samples before the decode's end; those samples are kept as a tail and faded
    linearly into the start of the next chunk. Unlike upstream, the final chunk also carries the tail.
    """

    def __init__(self, overlap: int):
        self.overlap = overlap
        self.emitted = 0  # samples handed out so far
        self._prev_total: int | None = None
        self._tail: torch.Tensor | None = None

    def next_start(self) -> int:
        """First sample index of the whole decode that the next `push` needs."""
        if self._prev_total is None:
            return 0
        return self._prev_total - self.overlap if self._tail is not None else self._prev_total

    def push(self, segment: torch.Tensor, start: int, total: int, final: bool = False) -> torch.Tensor | None:
        """Take a decode and return the next chunk (None when there is nothing to emit yet).

        Args:
            segment: (samples,) the decode's samples `start .. total - 1`.
            start: must be <= next_start().
            total: length of the whole decode.
            final: the last decode; the returned chunk then ends at `total`.
        """
        assert segment.shape[-1] == total - start and start <= self.next_start(), "segment misses samples"
        overlap, tail = self.overlap, self._tail

        def wav(a: int, b: int) -> torch.Tensor:
            return segment[a - start : b - start]

        if self._prev_total is None and total <= overlap and not final:
            return None  # too short to keep a whole tail yet
        begin = self.next_start()
        if tail is not None and total - self._prev_total < overlap:
            # upstream's short branch: too few new samples for a cross-fade, emit everything without one
            chunk, self._tail = wav(begin, total).clone(), None
        else:
            end = total if final else max(begin, total - overlap)
            chunk = wav(begin, end).clone()
            if tail is not None:
                fade = torch.linspace(0, 1, overlap, dtype=chunk.dtype, device=chunk.device)
                n = min(overlap, chunk.shape[-1])
                chunk[:n] = tail[:n] * fade.flip(0)[:n] + chunk[:n] * fade[:n]
            self._tail = None if final else wav(total - overlap, total).clone()
            if self._tail is not None and self._tail.shape[-1] == 0:
                self._tail = None
        self._prev_total = total
        self.emitted += chunk.shape[-1]
        return chunk


class StreamDecoder:
    """Decodes a growing list of GPT latents into stitched chunks, windowed so each chunk costs O(chunk).

    Args:
        decoder: HifiganGenerator (weight norm folded), on its compute device.
        cond_latent: (1, cond_channels) the voice's AR conditioning latent.
        settings: StreamSettings.
    """

    def __init__(self, decoder: torch.nn.Module, cond_latent: torch.Tensor, settings: StreamSettings):
        self.decoder = decoder
        self.settings = settings
        param = next(decoder.parameters())
        self.device, self.dtype = param.device, param.dtype
        self.cond = cond_latent.reshape(1, -1, 1).to(self.device, self.dtype)
        self.latents: list[torch.Tensor] = []
        self.stitcher = ChunkStitcher(settings.overlap_samples)
        self.hop = decoder.hop_length

    def add(self, latent: torch.Tensor) -> None:
        """Append one (dim,) latent."""
        self.latents.append(latent.reshape(-1).to(self.device, self.dtype))

    @torch.inference_mode()
    def decode(self, final: bool = False) -> torch.Tensor | None:
        """Decode what is needed for the next chunk and return it as (samples,) float32 on the CPU."""
        if not self.latents:
            return None
        need = self.stitcher.next_start()
        first = 0
        if self.settings.context_latents is not None:
            first = max(0, latent_index_of_sample(need, self.hop) - self.settings.context_latents)
        window = torch.stack(self.latents[first:]).unsqueeze(0)  # (1, n - first, dim)
        audio = decode_window(self.decoder, window, self.cond, first, len(self.latents), need)
        total = frames_for_latents(len(self.latents)) * self.hop
        chunk = self.stitcher.push(audio, need, total, final=final)
        return None if chunk is None else chunk.float().cpu()


def decode_window(
    decoder: torch.nn.Module, window: torch.Tensor, cond: torch.Tensor, first: int, total: int, start: int
) -> torch.Tensor:
    """Samples `start ..` of the decode of all `total` latents, computed from latents `first ..` only.

    Args:
        decoder: HifiganGenerator.
        window: (1, total - first, dim) the latents from index `first` on.
        cond: (1, cond_channels, 1) conditioning.
        first: index of the window's first latent.
        total: latents in the whole sequence.
        start: first output sample wanted; at least RECEPTIVE_FIELD_FRAMES frames right of the
            window's first exact frame (always true for start 0 with first 0).

    Returns:
        (frames_for_latents(total) · hop - start,) audio samples.
    """
    hop = decoder.hop_length
    frame_start, frames = decoder.upsample_latents(window, first=first, total=total)
    if first > 0 and start < (frame_start + RECEPTIVE_FIELD_FRAMES) * hop:
        raise ValueError(f"sample {start} is within the decoder's reach of the window's left edge")
    audio = decoder(frames, cond).reshape(-1)  # samples frame_start·hop .. end
    return audio[start - frame_start * hop :]


def latent_index_of_sample(sample: int, hop: int) -> int:
    """The latent whose stretched frames hold output sample `sample` (rounded down)."""
    return math.floor(sample / hop / (LATENT_STRETCH * RATE_STRETCH))
