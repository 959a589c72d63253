"""HiFi-GAN decoder of the fast mode: turns GPT latents (one per AR code) into 24 kHz audio, conditioned on
the voice's AR conditioning latent (upstream `api_fast.py`'s `HifiganGenerator`, TORTOISE_SPEC §13.1).

The latents are stretched to the decoder's frame rate by two linear interpolations; `interpolate_range`
computes any slice of that stretch from absolute indices, so a window of latents gives exactly the frames
the whole sequence would (the basis of O(length) streaming in tortoise/streaming.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from tortoise.models.vocoder import WeightNormConv1d, WeightNormConvTranspose1d, _WeightNorm

# The GPT makes one latent per 1024 samples at 22.05 kHz; the decoder makes 256 samples per frame at
# 24 kHz. So latents are stretched by 1024 / 256, then by 24000 / 22050 (as upstream's inference does).
LATENT_STRETCH = 4.0
RATE_STRETCH = 24000 / 22050
STAGE_LRELU_SLOPE = 0.1  # inside the stages and ResBlocks
# The last activation before conv_post uses PyTorch's default slope, not 0.1 (as upstream).
POST_LRELU_SLOPE = 0.01


def stretched_length(length: int, scale_factor: float) -> int:
    """Output length of `F.interpolate(scale_factor=...)`: PyTorch's floor rule, computed in double."""
    return math.floor(float(length) * scale_factor)


def frames_for_latents(latents: int) -> int:
    """Decoder frames (256 samples each) that `latents` GPT latents stretch to."""
    return stretched_length(stretched_length(latents, LATENT_STRETCH), RATE_STRETCH)


def interpolate_range(
    x: torch.Tensor, scale_factor: float, offset: int, total: int, out_start: int, out_end: int
) -> torch.Tensor:
    """Outputs `out_start:out_end` of `F.interpolate(full, scale_factor, mode="linear")`, from a window.

    The source position of output i is max(s·(i + 0.5) − 0.5, 0) with s = 1/scale_factor in float32, as
    PyTorch computes it (one rounding, as its fused multiply-add does), so a window yields the same values
    as the whole sequence would, to float rounding of the final blend.

    Args:
        x: (batch, channels, n) the source samples `offset .. offset + n - 1` of a sequence of `total`.
        scale_factor: the stretch.
        offset: absolute index of x's first sample.
        total: length of the whole source sequence (the right edge clamps to total - 1).
        out_start, out_end: absolute output indices wanted.

    Returns:
        (batch, channels, out_end - out_start) in x's dtype.

    Raises:
        ValueError: a wanted output reads a source sample outside the window.
    """
    scale = float(torch.tensor(1.0 / scale_factor, dtype=torch.float32))
    index = torch.arange(out_start, out_end, dtype=torch.float64, device=x.device)
    source = (scale * (index + 0.5) - 0.5).float().clamp_min(0)
    low = source.long()
    weight = (source - low.float()).to(x.dtype)
    high = torch.clamp(low + 1, max=total - 1)
    if out_end > out_start and (int(low[0]) < offset or int(high[-1]) >= offset + x.shape[-1]):
        raise ValueError(
            f"outputs {out_start}..{out_end} need source samples {int(low[0])}..{int(high[-1])}, "
            f"outside the window {offset}..{offset + x.shape[-1] - 1}"
        )
    return x[..., low - offset] * (1 - weight) + x[..., high - offset] * weight


class ResBlock1(nn.Module):
    """HiFi-GAN ResBlock type 1: three pairs of convolutions, the first of each pair dilated, each pair
    added back onto its input.

    Args:
        channels: width in and out.
        kernel_size: taps of every convolution.
        dilations: dilation of the first convolution of each pair.
    """

    def __init__(self, channels: int, kernel_size: int, dilations: Sequence[int]):
        super().__init__()
        self.convs1 = nn.ModuleList(
            WeightNormConv1d(channels, channels, kernel_size, dilation=d, padding=(kernel_size * d - d) // 2)
            for d in dilations
        )
        self.convs2 = nn.ModuleList(
            WeightNormConv1d(channels, channels, kernel_size, padding=(kernel_size - 1) // 2)
            for _ in dilations
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for dilated, plain in zip(self.convs1, self.convs2, strict=True):
            step = dilated(F.leaky_relu(x, STAGE_LRELU_SLOPE))
            x = x + plain(F.leaky_relu(step, STAGE_LRELU_SLOPE))
        return x


class HifiganGenerator(nn.Module):
    """The fast mode's decoder; constructor arguments are upstream's names (defaults: as api_fast builds it).

    Args:
        in_channels: GPT latent width (1024).
        out_channels: audio channels (1).
        resblock_type: only "1" (the type the official weights use).
        resblock_dilation_sizes: dilations per ResBlock kernel.
        resblock_kernel_sizes: kernels of the ResBlocks averaged in every stage.
        upsample_kernel_sizes: ConvTranspose1d kernel per stage.
        upsample_initial_channel: width after conv_pre; each stage halves it.
        upsample_factors: stride per stage (their product, 256, is the samples per frame).
        cond_channels: width of the conditioning latent (1024); 0 means unconditioned.
        inference_padding: stored by upstream, unused.
    """

    def __init__(
        self,
        in_channels: int = 1024,
        out_channels: int = 1,
        resblock_type: str = "1",
        resblock_dilation_sizes: Sequence[Sequence[int]] = ((1, 3, 5), (1, 3, 5), (1, 3, 5)),
        resblock_kernel_sizes: Sequence[int] = (3, 7, 11),
        upsample_kernel_sizes: Sequence[int] = (16, 16, 4, 4),
        upsample_initial_channel: int = 512,
        upsample_factors: Sequence[int] = (8, 8, 2, 2),
        cond_channels: int = 1024,
        inference_padding: int = 5,
    ):
        super().__init__()
        if str(resblock_type) != "1":
            raise ValueError(f"only resblock_type '1' is implemented, got {resblock_type!r}")
        self.in_channels = in_channels
        self.cond_channels = cond_channels
        self.inference_padding = inference_padding
        self.kernels_per_stage = len(resblock_kernel_sizes)
        self.hop_length = math.prod(upsample_factors)
        self.conv_pre = WeightNormConv1d(in_channels, upsample_initial_channel, 7, padding=3)
        if cond_channels > 0:
            self.cond_layer = nn.Conv1d(cond_channels, upsample_initial_channel, 1)
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        channels = upsample_initial_channel
        for factor, kernel in zip(upsample_factors, upsample_kernel_sizes, strict=True):
            pad = (kernel - factor) // 2
            self.ups.append(WeightNormConvTranspose1d(channels, channels // 2, kernel, factor, padding=pad))
            channels //= 2
            for size, dilations in zip(resblock_kernel_sizes, resblock_dilation_sizes, strict=True):
                self.resblocks.append(ResBlock1(channels, size, dilations))
        self.conv_post = WeightNormConv1d(channels, out_channels, 7, padding=3)

    def forward(self, x: torch.Tensor, g: torch.Tensor | None = None) -> torch.Tensor:
        """(batch, in_channels, frames) and g (batch or 1, cond_channels, 1) -> (batch, out, frames·256)."""
        x = self.conv_pre(x)
        if g is not None and self.cond_channels > 0:
            x = x + self.cond_layer(g)  # (batch, 512, 1) broadcast over time
        n = self.kernels_per_stage
        for stage, up in enumerate(self.ups):
            x = up(F.leaky_relu(x, STAGE_LRELU_SLOPE))
            blocks = self.resblocks[stage * n : (stage + 1) * n]
            x = sum(block(x) for block in blocks) / n
        x = self.conv_post(F.leaky_relu(x, POST_LRELU_SLOPE))
        return torch.tanh(x)

    def upsample_latents(
        self, latents: torch.Tensor, first: int = 0, total: int | None = None
    ) -> tuple[int, torch.Tensor]:
        """Stretch GPT latents to decoder frames (upstream's two linear interpolations).

        Args:
            latents: (batch, n, in_channels) latents `first .. first + n - 1` of a sequence of `total`.
            first: absolute index of the first latent (0: the window is the start of the sequence).
            total: latents in the whole sequence (default first + n).

        Returns:
            (frame_start, frames): frames (batch, in_channels, f) are the decoder frames frame_start ..
            frame_start + f - 1 of the whole sequence that this window determines exactly; with first 0 that
            is every frame, frame_start 0.
        """
        x = latents.transpose(1, 2)
        total = first + x.shape[-1] if total is None else total
        # interior of the window: a stretched sample is exact when both its source neighbours are inside
        start1 = 0 if first == 0 else math.ceil((first + 0.5) * LATENT_STRETCH - 0.5)
        end1 = stretched_length(total, LATENT_STRETCH)
        stage1 = interpolate_range(x, LATENT_STRETCH, first, total, start1, end1)
        start2 = 0 if first == 0 else math.ceil((start1 + 0.5) * RATE_STRETCH - 0.5) + 1
        end2 = stretched_length(end1, RATE_STRETCH)
        return start2, interpolate_range(stage1, RATE_STRETCH, start1, end1, start2, end2)

    def inference(self, c: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """Decode GPT latents to audio.

        Args:
            c: (batch, T, in_channels) GPT latents, one per AR code.
            g: (1, cond_channels) the voice's AR conditioning latent.

        Returns:
            (batch, 1, frames_for_latents(T) · 256) audio in [-1, 1] at 24 kHz.
        """
        _, frames = self.upsample_latents(c)
        return self.forward(frames, self.condition(g, frames))

    def condition(self, g: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """(1, cond_channels) conditioning latent -> (1, cond_channels, 1) on `like`'s device and dtype."""
        return g.reshape(1, -1, 1).to(device=like.device, dtype=like.dtype)

    def prepare_for_inference(self) -> None:
        """Fold every weight norm into a plain weight (upstream's remove_weight_norm); idempotent."""
        for module in self.modules():
            if isinstance(module, _WeightNorm):
                module.fold_weight_norm()
