"""Discrete VAE (`dvae.pth`): turns normalised 80-bin AR mels into the 8192-way speech codes that the
autoregressive model is fine-tuned on (as DL-Art-School `lucidrains_dvae.DiscreteVAE`).

Only the inference side is reproduced: the codebook never updates its EMA statistics here, so
training the DVAE itself is out of scope. Fine-tuning the AR model only needs `get_codebook_indices`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from tortoise.errors import InvalidInputError

_ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "silu": nn.SiLU}
ENCODER_NORM_GROUPS = 8  # GroupNorm groups after each downsampling conv when encoder_norm=True


class Quantize(nn.Module):
    """Nearest-neighbour codebook with the buffers of DLAS `vqvae.Quantize`.

    `embed` holds one code vector per column. `cluster_size` and `embed_avg` are the EMA statistics
    the DVAE was trained with; they are kept only so the official checkpoint loads strictly.

    Args:
        dim: width of a code vector (the encoder's output channels).
        n_embed: number of codes.
    """

    def __init__(self, dim: int, n_embed: int):
        super().__init__()
        self.dim = dim
        self.n_embed = n_embed
        embed = torch.randn(dim, n_embed)
        self.register_buffer("embed", embed)  # (dim, n_embed): column j is code j
        self.register_buffer("cluster_size", torch.zeros(n_embed))
        self.register_buffer("embed_avg", embed.clone())

    def nearest(self, x: torch.Tensor) -> torch.Tensor:
        """Index of the closest code vector (squared L2) for every vector of x (..., dim).

        The distance is expanded as |x|² − 2·x·e + |e|², in the official order, so near-ties resolve
        exactly as in DLAS; an exact tie picks the lowest index.

        Returns:
            int64 tensor (...,).
        """
        flat = x.reshape(-1, self.dim)
        dist = (
            flat.pow(2).sum(1, keepdim=True)
            - 2 * flat @ self.embed
            + self.embed.pow(2).sum(0, keepdim=True)
        )  # (vectors, n_embed)
        return dist.argmin(dim=1).view(x.shape[:-1])

    def embed_code(self, codes: torch.Tensor) -> torch.Tensor:
        """Look up code vectors: int codes (...,) -> (..., dim)."""
        return F.embedding(codes, self.embed.t())

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Quantise x (..., dim).

        Returns:
            (quantized, codes, commitment): the code vectors (..., dim) passed straight through to x for
            gradients, the int64 codes (...,), and the scalar mean squared distance between them.
        """
        codes = self.nearest(x)
        quantized = self.embed_code(codes)
        commitment = (quantized.detach() - x).pow(2).mean()
        return x + (quantized - x).detach(), codes, commitment


class ResBlock(nn.Module):
    """x + conv1x1(act(conv3(act(conv3(x))))), keeping the channel count; weights under `net.{0,2,4}`."""

    def __init__(self, channels: int, activation: type[nn.Module]):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv1d(channels, channels, 3, padding=1),
            activation(),
            nn.Conv1d(channels, channels, 3, padding=1),
            activation(),
            nn.Conv1d(channels, channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x) + x


class UpsampledConv(nn.Module):
    """Nearest-neighbour upsampling by `stride`, then a stride-1 conv (weights under `conv`)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, padding: int):
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, padding=padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, in_channels, frames) -> (batch, out_channels, frames · stride)."""
        return self.conv(F.interpolate(x, scale_factor=self.stride, mode="nearest"))


class DiscreteVAE(nn.Module):
    """Convolutional VQ-VAE over mel frames; codes are 4× downsampled in time at the official size.

    The arguments keep DLAS's names and order; the defaults are `dvae.pth`'s configuration
    (`train_diffusion_vocoder_22k_level.yml`). Encoder: `num_layers` strided convs widening
    hidden_dim·2^i, `num_resnet_blocks` ResBlocks, a 1×1 conv to `codebook_dim`. The decoder mirrors it,
    upsampling with nearest-neighbour + conv (or transposed convs).

    Args:
        positional_dims: 1 for mel input (the 2-D image variant is not supported).
        num_tokens: codebook size.
        codebook_dim: code vector width.
        num_layers: strided conv stages (each halves the frames at stride 2); at least 1.
        num_resnet_blocks: ResBlocks at the innermost width, in the encoder and in the decoder.
        hidden_dim: width of the first conv stage; stage i has hidden_dim·2^i channels.
        channels: mel bins of the input.
        stride: time stride of each conv stage.
        kernel_size: kernel of the strided convs.
        use_transposed_convs: decode with ConvTranspose1d instead of upsample + conv.
        encoder_norm: add GroupNorm(8) after every encoder conv stage.
        activation: 'relu' or 'silu'.
        smooth_l1_loss: `forward` reports smooth-L1 instead of squared reconstruction error.
        normalization: optional (means, stds) per input channel, applied before encoding.

    Raises:
        ValueError: an unsupported configuration.
    """

    def __init__(
        self,
        positional_dims: int = 1,
        num_tokens: int = 8192,
        codebook_dim: int = 512,
        num_layers: int = 2,
        num_resnet_blocks: int = 3,
        hidden_dim: int = 512,
        channels: int = 80,
        stride: int = 2,
        kernel_size: int = 3,
        use_transposed_convs: bool = False,
        encoder_norm: bool = False,
        activation: str = "relu",
        smooth_l1_loss: bool = False,
        normalization: tuple[Sequence[float], Sequence[float]] | None = None,
    ):
        super().__init__()
        if positional_dims != 1:
            raise ValueError("Only the 1-D (mel) DiscreteVAE is supported: positional_dims must be 1")
        if num_layers < 1:
            raise ValueError("num_layers must be at least 1")
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
        act = _ACTIVATIONS[activation]
        self.channels = channels
        self.num_tokens = num_tokens
        self.codebook_dim = codebook_dim
        self.num_layers = num_layers
        self.stride = stride
        self.positional_dims = positional_dims

        # Widths: encoder channels -> [h, 2h, ...]; the decoder walks them back down.
        widths = [hidden_dim * 2**i for i in range(num_layers)]
        innermost = widths[-1]
        pad = (kernel_size - 1) // 2
        encoder: list[nn.Module] = []
        for c_in, c_out in zip([channels, *widths[:-1]], widths):
            down = nn.Conv1d(c_in, c_out, kernel_size, stride=stride, padding=pad)
            encoder.append(nn.Sequential(down, act()))
            if encoder_norm:
                encoder.append(nn.GroupNorm(ENCODER_NORM_GROUPS, c_out))
        encoder.extend(ResBlock(innermost, act) for _ in range(num_resnet_blocks))
        encoder.append(nn.Conv1d(innermost, codebook_dim, 1))

        decoder: list[nn.Module] = []
        if num_resnet_blocks > 0:
            decoder.append(nn.Conv1d(codebook_dim, innermost, 1))
            decoder.extend(ResBlock(innermost, act) for _ in range(num_resnet_blocks))
            first_width = innermost
        else:
            first_width = codebook_dim
        dec_widths = list(reversed(widths))
        for c_in, c_out in zip([first_width, *dec_widths[:-1]], dec_widths):
            if use_transposed_convs:
                up: nn.Module = nn.ConvTranspose1d(c_in, c_out, kernel_size, stride=stride, padding=pad)
            else:
                up = UpsampledConv(c_in, c_out, kernel_size, stride=stride, padding=pad)
            decoder.append(nn.Sequential(up, act()))
        decoder.append(nn.Conv1d(widths[0], channels, 1))

        self.encoder = nn.Sequential(*encoder)
        self.decoder = nn.Sequential(*decoder)
        self.codebook = Quantize(codebook_dim, num_tokens)
        self.loss_fn = F.smooth_l1_loss if smooth_l1_loss else F.mse_loss

        self.normalization = normalization
        if normalization is not None:
            means, stds = (torch.as_tensor(v, dtype=torch.float32).reshape(1, -1, 1) for v in normalization)
            self.register_buffer("norm_mean", means, persistent=False)
            self.register_buffer("norm_std", stds, persistent=False)

    def num_codes(self, frames: int) -> int:
        """Codes the encoder gives for `frames` mel frames: ceil(frames / stride) per conv stage."""
        for _ in range(self.num_layers):
            frames = -(-frames // self.stride)
        return frames

    def _prepare(self, mel: torch.Tensor) -> torch.Tensor:
        if mel.dim() != 3 or mel.shape[1] != self.channels:
            raise InvalidInputError(
                f"The DVAE expects mels shaped (batch, {self.channels}, frames), got {tuple(mel.shape)}"
            )
        param = self.codebook.embed
        mel = mel.to(device=param.device, dtype=param.dtype)
        if self.normalization is not None:
            mel = (mel - self.norm_mean) / self.norm_std
        return mel

    def encode(self, mel: torch.Tensor) -> torch.Tensor:
        """Continuous encoder output before quantisation.

        Args:
            mel: normalised AR mel (batch, channels, frames).

        Returns:
            (batch, num_codes(frames), codebook_dim), time before channels as the quantiser sees it.
        """
        return self.encoder(self._prepare(mel)).transpose(1, 2)

    @torch.no_grad()
    def get_codebook_indices(self, mel: torch.Tensor) -> torch.Tensor:
        """Speech codes of a batch of mels, as DLAS computes AR training targets.

        Runs without gradients. The model has no dropout or batch norm and the codebook never
        updates here, so the result is the same in train and eval mode.

        Args:
            mel: normalised AR mel (batch, channels, frames), e.g. `compute_ar_mel(wav, mel_norms)`.

        Returns:
            int64 codes (batch, num_codes(frames)) in [0, num_tokens), on the model's device.
        """
        return self.codebook.nearest(self.encode(mel))

    def decode(self, codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reconstruct mels from codes.

        Args:
            codes: int codes (batch, n).

        Returns:
            (mel, pre_final): the reconstruction (batch, channels, n · stride^num_layers) and the output of
            the last upsampling stage, activation included, (batch, hidden_dim, n · stride^num_layers).
        """
        x = self.codebook.embed_code(codes).transpose(1, 2)  # (batch, codebook_dim, n)
        for layer in self.decoder[:-1]:
            x = layer(x)
        return self.decoder[-1](x), x

    def forward(self, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Autoencode a batch of mels (the official training forward, without codebook EMA updates).

        In train mode the decoder sees the straight-through quantised vectors; in eval mode it decodes
        the codes. The two agree up to rounding.

        Args:
            mel: (batch, channels, frames) with frames a multiple of stride^num_layers.

        Returns:
            (recon_loss, commitment, out): element-wise loss (batch, channels, frames), the scalar
            commitment loss, and the reconstruction (batch, channels, frames).
        """
        mel = self._prepare(mel)
        quantized, codes, commitment = self.codebook(self.encoder(mel).transpose(1, 2))
        if self.training:
            out = self.decoder(quantized.transpose(1, 2))
        else:
            out, _ = self.decode(codes)
        return self.loss_fn(mel, out, reduction="none"), commitment, out
