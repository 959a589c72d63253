"""UnivNet "c32" vocoder: turns a 24 kHz, 100-bin log-mel into a waveform with location-variable
convolutions whose kernels are predicted from the mel (as tortoise/models/vocoder.py, after
mindslab-ai/univnet). Weights live in the checkpoint in weight-norm form and are folded for inference."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

# Official inference appends this many frames of silence to the mel and drops their samples afterwards,
# to keep the edge artefact out of the kept audio (seungwonpark/melgan issue 8).
MEL_PAD_FRAMES = 10
# The fill value of those frames: the literal from the original code (close to, but not, ln 1e-5).
MEL_PAD_VALUE = -11.5129
# The kernel predictor's width is fixed in the original class, not a constructor argument.
KPNET_HIDDEN_CHANNELS = 64
# Taps of every location-variable convolution.
LVC_KERNEL_SIZE = 3


def _norm_except_dim0(v: torch.Tensor) -> torch.Tensor:
    """L2 norm over every axis but the first, shaped to broadcast against `v`."""
    return v.flatten(1).norm(dim=1).view(-1, *([1] * (v.dim() - 1)))


class _WeightNorm:
    """Mixin for a conv layer that keeps its weight as `weight_g` (magnitude) and `weight_v` (direction).

    This is the parameter layout of the deprecated `torch.nn.utils.weight_norm(module, dim=0)`, which
    the checkpoint uses: weight = g * v / ||v||, the norm taken over all axes except axis 0 (for a
    ConvTranspose1d, axis 0 is the input-channel axis). `fold_weight_norm` replaces the pair by a plain
    `weight`, as the original `remove_weight_norm`.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        weight = self.weight.detach()
        del self.weight
        self.weight_g = nn.Parameter(_norm_except_dim0(weight))
        self.weight_v = nn.Parameter(weight)
        self.is_weight_norm_folded = False

    def effective_weight(self) -> torch.Tensor:
        """The convolution weight the layer applies, whichever form it is stored in."""
        if self.is_weight_norm_folded:
            return self.weight
        return self.weight_v * (self.weight_g / _norm_except_dim0(self.weight_v))

    def fold_weight_norm(self) -> None:
        """Replace `weight_g`/`weight_v` by the equivalent plain `weight` (no-op if already folded)."""
        if self.is_weight_norm_folded:
            return
        weight = self.effective_weight().detach()
        del self.weight_g, self.weight_v
        self.weight = nn.Parameter(weight)
        self.is_weight_norm_folded = True


class WeightNormConv1d(_WeightNorm, nn.Conv1d):
    """nn.Conv1d with old-style weight norm on dim 0 (checkpoint keys `weight_g`, `weight_v`, `bias`)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.effective_weight(), self.bias)


class WeightNormConvTranspose1d(_WeightNorm, nn.ConvTranspose1d):
    """nn.ConvTranspose1d with old-style weight norm on dim 0, the input-channel axis."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv_transpose1d(
            x, self.effective_weight(), self.bias, self.stride, self.padding, self.output_padding,
            self.groups, self.dilation,
        )


class KernelPredictor(nn.Module):
    """Predicts, for every mel frame, the kernels and biases of a block's location-variable convolutions.

    Args:
        cond_channels: mel bins of the conditioning input.
        conv_in_channels: input channels of each predicted convolution.
        conv_out_channels: output channels of each predicted convolution.
        conv_layers: how many convolutions (one per dilation) to predict kernels for.
        lrelu_slope: negative slope of the LeakyReLUs.
        kpnet_conv_size: kernel size of the predictor's own residual, kernel and bias convolutions.
    """

    def __init__(
        self,
        cond_channels: int,
        conv_in_channels: int,
        conv_out_channels: int,
        conv_layers: int,
        lrelu_slope: float = 0.2,
        kpnet_conv_size: int = 3,
    ):
        super().__init__()
        self.conv_in_channels = conv_in_channels
        self.conv_out_channels = conv_out_channels
        self.conv_layers = conv_layers
        hidden = KPNET_HIDDEN_CHANNELS
        padding = (kpnet_conv_size - 1) // 2
        self.input_conv = nn.Sequential(
            WeightNormConv1d(cond_channels, hidden, 5, padding=2),
            nn.LeakyReLU(lrelu_slope),
        )
        self.residual_convs = nn.ModuleList(
            nn.Sequential(
                nn.Identity(),  # the original's Dropout(0.0) sits here; it keeps the conv indices at 1 and 3
                WeightNormConv1d(hidden, hidden, kpnet_conv_size, padding=padding),
                nn.LeakyReLU(lrelu_slope),
                WeightNormConv1d(hidden, hidden, kpnet_conv_size, padding=padding),
                nn.LeakyReLU(lrelu_slope),
            )
            for _ in range(3)
        )
        kernel_channels = conv_layers * conv_in_channels * conv_out_channels * LVC_KERNEL_SIZE
        bias_channels = conv_layers * conv_out_channels
        self.kernel_conv = WeightNormConv1d(hidden, kernel_channels, kpnet_conv_size, padding=padding)
        self.bias_conv = WeightNormConv1d(hidden, bias_channels, kpnet_conv_size, padding=padding)

    def forward(self, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Predict kernels and biases from the mel.

        Args:
            mel: (batch, mel bins, frames).

        Returns:
            kernels (batch, layers, in, out, taps, frames) and biases (batch, layers, out, frames).
        """
        batch, _, frames = mel.shape
        h = self.input_conv(mel)
        for block in self.residual_convs:
            h = h + block(h)
        kernels = self.kernel_conv(h).view(
            batch, self.conv_layers, self.conv_in_channels, self.conv_out_channels, LVC_KERNEL_SIZE, frames
        )
        bias = self.bias_conv(h).view(batch, self.conv_layers, self.conv_out_channels, frames)
        return kernels, bias


def location_variable_conv(
    x: torch.Tensor, kernels: torch.Tensor, bias: torch.Tensor, hop_length: int
) -> torch.Tensor:
    """Convolve each frame's stretch of `x` with that frame's own kernel (dilation 1, a cross-correlation).

    The signal is zero-padded once at its two ends, so a frame's edge taps read the neighbouring frame's
    samples with the current frame's kernel, as in the original.

    Args:
        x: (batch, in, frames * hop_length).
        kernels: (batch, in, out, taps, frames).
        bias: (batch, out, frames).
        hop_length: samples per frame at this resolution.

    Returns:
        (batch, out, frames * hop_length).
    """
    batch, _, length = x.shape
    taps, frames = kernels.shape[-2:]
    assert length == frames * hop_length, f"signal of {length} samples does not fit {frames} frames"
    pad = (taps - 1) // 2
    x = F.pad(x, (pad, pad))
    # (batch, in, frames, hop + 2 pad): each frame's samples plus its neighbours' edge samples
    x = x.unfold(2, hop_length + 2 * pad, hop_length)
    # (batch, in, frames, hop, taps): the window every output sample sees
    x = x.unfold(3, taps, 1)
    out = torch.einsum("bifsk,biokf->bofs", x, kernels) + bias.unsqueeze(-1)
    return out.reshape(batch, -1, length)


class LVCBlock(nn.Module):
    """Upsample by `stride`, then a gated residual location-variable convolution per dilation.

    Args:
        in_channels: channels of the signal path.
        cond_channels: mel bins.
        stride: upsampling factor of this block.
        cond_hop_length: samples per mel frame after this block's upsampling.
        dilations: dilation of each layer's ordinary convolution (the LVC itself always uses dilation 1).
        lrelu_slope: negative slope of the LeakyReLUs.
        kpnet_conv_size: kernel size inside the kernel predictor.
    """

    def __init__(
        self,
        in_channels: int,
        cond_channels: int,
        stride: int,
        cond_hop_length: int,
        dilations: Sequence[int] = (1, 3, 9, 27),
        lrelu_slope: float = 0.2,
        kpnet_conv_size: int = 3,
    ):
        super().__init__()
        self.cond_hop_length = cond_hop_length
        self.kernel_predictor = KernelPredictor(
            cond_channels, in_channels, 2 * in_channels, len(dilations), lrelu_slope, kpnet_conv_size
        )
        # kernel 2s, padding s/2 + s%2, output padding s%2: exactly s times longer
        self.convt_pre = nn.Sequential(
            nn.LeakyReLU(lrelu_slope),
            WeightNormConvTranspose1d(
                in_channels, in_channels, 2 * stride, stride=stride,
                padding=stride // 2 + stride % 2, output_padding=stride % 2,
            ),
        )
        self.conv_blocks = nn.ModuleList(
            nn.Sequential(
                nn.LeakyReLU(lrelu_slope),
                WeightNormConv1d(
                    in_channels, in_channels, LVC_KERNEL_SIZE,
                    padding=dilation * (LVC_KERNEL_SIZE - 1) // 2, dilation=dilation,
                ),
                nn.LeakyReLU(lrelu_slope),
            )
            for dilation in dilations
        )

    def forward(self, x: torch.Tensor, mel: torch.Tensor) -> torch.Tensor:
        """Upsample `x` and apply the mel-conditioned layers.

        Args:
            x: (batch, channels, length) signal.
            mel: (batch, mel bins, frames) with frames * cond_hop_length = length * stride.

        Returns:
            (batch, channels, length * stride).
        """
        channels = x.shape[1]
        x = self.convt_pre(x)
        kernels, bias = self.kernel_predictor(mel)
        for i, conv in enumerate(self.conv_blocks):
            y = location_variable_conv(conv(x), kernels[:, i], bias[:, i], self.cond_hop_length)
            # gated activation unit: the first half of the channels gates the second
            x = x + torch.sigmoid(y[:, :channels]) * torch.tanh(y[:, channels:])
        return x


class UnivNetGenerator(nn.Module):
    """The UnivNet generator TorToiSe uses as its vocoder (checkpoint `vocoder.pth`, key `model_g`).

    Defaults are the official "c32" configuration; argument names follow the original constructor.

    Args:
        noise_dim: channels of the input noise.
        channel_size: channels of the signal path.
        dilations: dilations of the layers in each LVC block.
        strides: upsampling factor of each LVC block; their product is the samples per mel frame.
        lReLU_slope: negative slope of the LeakyReLUs.
        kpnet_conv_size: kernel size inside the kernel predictors.
        hop_length: samples per mel frame (used to trim the padding in `inference`).
        n_mel_channels: mel bins.
    """

    def __init__(
        self,
        noise_dim: int = 64,
        channel_size: int = 32,
        dilations: Sequence[int] = (1, 3, 9, 27),
        strides: Sequence[int] = (8, 8, 4),
        lReLU_slope: float = 0.2,  # noqa: N803 (official argument name)
        kpnet_conv_size: int = 3,
        hop_length: int = 256,
        n_mel_channels: int = 100,
    ):
        super().__init__()
        self.noise_dim = noise_dim
        self.hop_length = hop_length
        self.n_mel_channels = n_mel_channels
        self.res_stack = nn.ModuleList()
        cumulative_hop = 1
        for stride in strides:
            cumulative_hop *= stride
            block = LVCBlock(
                channel_size, n_mel_channels, stride, cumulative_hop, dilations, lReLU_slope, kpnet_conv_size
            )
            self.res_stack.append(block)
        self.conv_pre = WeightNormConv1d(noise_dim, channel_size, 7, padding=3, padding_mode="reflect")
        self.conv_post = nn.Sequential(
            nn.LeakyReLU(lReLU_slope),
            WeightNormConv1d(channel_size, 1, 7, padding=3, padding_mode="reflect"),
            nn.Tanh(),
        )

    def forward(self, mel: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Generate audio for every frame of `mel`, without padding or trimming.

        Args:
            mel: (batch, n_mel_channels, frames) un-normalised log-mel.
            z: (batch, noise_dim, frames) noise.

        Returns:
            (batch, 1, frames * prod(strides)) waveform in [-1, 1].
        """
        x = self.conv_pre(z)
        for block in self.res_stack:
            x = block(x, mel)
        return self.conv_post(x)

    @torch.no_grad()
    def inference(
        self,
        mel: torch.Tensor,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Vocode a mel as the official `inference`: pad, generate, trim the padding, clamp.

        Args:
            mel: (batch, n_mel_channels, frames) un-normalised 24 kHz log-mel.
            noise: (batch, noise_dim, frames + 10); drawn from N(0, 1) when omitted.
            generator: CPU generator for that draw; the global CPU generator when None. The noise is drawn
                on the CPU and then moved to the mel's device, as the original does.

        Returns:
            (batch, 1, frames * hop_length) waveform at 24 kHz, clamped to [-1, 1].

        Raises:
            ValueError: `noise` has the wrong shape.
        """
        batch, _, frames = mel.shape
        pad = torch.full((batch, self.n_mel_channels, MEL_PAD_FRAMES), MEL_PAD_VALUE, dtype=mel.dtype)
        mel = torch.cat((mel, pad.to(mel.device)), dim=2)
        shape = (batch, self.noise_dim, frames + MEL_PAD_FRAMES)
        if noise is None:
            noise = torch.randn(shape, generator=generator)
        elif tuple(noise.shape) != shape:
            raise ValueError(f"noise must have shape {list(shape)}, got {list(noise.shape)}")
        audio = self.forward(mel, noise.to(device=mel.device, dtype=mel.dtype))
        audio = audio[:, :, : audio.shape[-1] - MEL_PAD_FRAMES * self.hop_length]
        return audio.clamp(-1, 1)

    def prepare_for_inference(self) -> None:
        """Fold every weight norm into a plain weight (the original `eval(inference=True)`); idempotent.

        The output is unchanged; the state dict then has `weight` in place of `weight_g`/`weight_v`.
        """
        for module in self.modules():
            if isinstance(module, _WeightNorm):
                module.fold_weight_norm()
