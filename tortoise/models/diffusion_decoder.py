"""DiffusionTts: the denoiser that turns AR latents plus a voice's conditioning latent into a 100-bin mel.

Parameter names follow the official `diffusion_decoder.pth` exactly, so the checkpoint loads strictly.
"""

from __future__ import annotations

import itertools
import math
import random

import torch
import torch.nn.functional as F
from torch import nn

from tortoise.models.layers import AttentionBlock, normalization

TIMESTEP_MAX_PERIOD = 10000  # lowest sinusoid frequency of the timestep embedding is 1/10000
NUM_INTEGRATOR_LAYERS = 3  # DiffusionLayers that mix the time embedding into the aligned conditioning
NUM_TRAILING_RESBLOCKS = 3  # plain ResBlocks after the `num_layers` DiffusionLayers
NUM_CODE_CONVERTER_BLOCKS = 3
NUM_LATENT_CONDITIONER_BLOCKS = 4
NUM_CONTEXTUAL_EMBEDDER_BLOCKS = 5


def timestep_embedding(
    timesteps: torch.Tensor, dim: int, max_period: int = TIMESTEP_MAX_PERIOD
) -> torch.Tensor:
    """Sinusoidal embedding of diffusion timesteps, laid out [cos | sin] (official order), in float32.

    Args:
        timesteps: (batch,) timesteps on the original 0..3999 scale; may be fractional.
        dim: embedding width; an odd width gets one trailing zero column.
        max_period: controls the lowest frequency.

    Returns:
        (batch, dim) float32 embedding.
    """
    half = dim // 2
    # same operation order as the official code, so the float32 frequencies match it bit for bit on CPU
    steps = torch.arange(half, dtype=torch.float32, device=timesteps.device)
    exponents = -math.log(max_period) * steps / half
    args = timesteps[:, None].float() * torch.exp(exponents)[None]  # (batch, half)
    embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        embedding = F.pad(embedding, (0, 1))
    return embedding


class ResBlock(nn.Module):
    """Time-conditioned residual block, the "efficient" scale-shift flavour used throughout DiffusionTts.

    h = Conv1d_k1(SiLU(GN(x))); (scale, shift) = Linear(SiLU(emb));
    out = x + Conv1d_k3(Dropout(SiLU(GN(h) * (1 + scale) + shift))).

    Args:
        channels: width C of input and output.
        emb_channels: width of the time embedding.
        dropout: dropout probability before the last conv (0 at inference).
    """

    def __init__(self, channels: int, emb_channels: int, dropout: float = 0.0):
        super().__init__()
        # Sequential indices count the parameter-free SiLU/Dropout, as in the checkpoint keys
        self.in_layers = nn.Sequential(normalization(channels), nn.SiLU(), nn.Conv1d(channels, channels, 1))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, 2 * channels))
        self.out_layers = nn.Sequential(
            normalization(channels),
            nn.SiLU(),
            nn.Dropout(p=dropout),
            nn.Conv1d(channels, channels, 3, padding=1),
        )

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """Args: x (batch, C, T); emb (batch, emb_channels). Returns (batch, C, T)."""
        h = self.in_layers(x)
        scale, shift = self.emb_layers(emb).type(h.dtype).unsqueeze(-1).chunk(2, dim=1)  # each (batch, C, 1)
        h = self.out_layers[0](h) * (1 + scale) + shift
        for layer in itertools.islice(self.out_layers, 1, None):  # SiLU, Dropout, Conv1d
            h = layer(h)
        return x + h


class DiffusionLayer(nn.Module):
    """A ResBlock conditioned on the time embedding, then relative-position self-attention."""

    def __init__(self, channels: int, dropout: float, num_heads: int):
        super().__init__()
        self.resblk = ResBlock(channels, channels, dropout)
        self.attn = AttentionBlock(channels, num_heads, relative_pos_embeddings=True)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """Args: x (batch, C, T); emb (batch, C). Returns (batch, C, T)."""
        return self.attn(self.resblk(x, emb))


def _attention_stack(channels: int, num_heads: int, count: int) -> list[nn.Module]:
    return [AttentionBlock(channels, num_heads, relative_pos_embeddings=True) for _ in range(count)]


class DiffusionTts(nn.Module):
    """TorToiSe's mel diffusion decoder (epsilon and learned-range variance prediction).

    Inference uses it in two stages: `get_conditioning` once per voice, `timestep_independent` once per
    candidate, then `forward(..., precomputed_aligned_embeddings=...)` at every sampler step.

    Args:
        model_channels: main width (1024 in the checkpoint).
        num_layers: DiffusionLayers in the main stack (followed by 3 ResBlocks).
        in_channels: mel bins of the noisy input and of the conditioning clips.
        in_latent_channels: width of the AR latents fed as aligned conditioning.
        in_tokens: size of the code-token table (code conditioning; unused by tts).
        out_channels: output width: epsilon (in_channels) then variance values (in_channels).
        dropout: dropout probability in the ResBlocks.
        use_fp16: run every main layer except the first under autocast.
        num_heads: attention heads in every AttentionBlock.
        layer_drop: training only: chance of skipping a main layer other than the first and last.
        unconditioned_percentage: training only: chance of replacing a batch element's aligned
            conditioning by the learned unconditioned embedding (classifier-free training).
    """

    def __init__(
        self,
        model_channels: int = 1024,
        num_layers: int = 10,
        in_channels: int = 100,
        in_latent_channels: int = 1024,
        in_tokens: int = 8193,
        out_channels: int = 200,
        dropout: float = 0,
        use_fp16: bool = False,
        num_heads: int = 16,
        layer_drop: float = 0,
        unconditioned_percentage: float = 0,
    ):
        super().__init__()
        self.in_channels = in_channels
        self.model_channels = model_channels
        self.out_channels = out_channels
        self.use_fp16 = use_fp16
        self.layer_drop = layer_drop
        self.unconditioned_percentage = unconditioned_percentage

        # attribute creation order follows the official module so state_dict() lists keys in checkpoint order
        self.inp_block = nn.Conv1d(in_channels, model_channels, 3, padding=1)
        self.time_embed = nn.Sequential(
            nn.Linear(model_channels, model_channels), nn.SiLU(), nn.Linear(model_channels, model_channels)
        )
        # code-token conditioning (training on DVAE codes); kept so the checkpoint loads strictly
        self.code_embedding = nn.Embedding(in_tokens, model_channels)
        self.code_converter = nn.Sequential(
            *_attention_stack(model_channels, num_heads, NUM_CODE_CONVERTER_BLOCKS)
        )
        self.code_norm = normalization(model_channels)
        self.latent_conditioner = nn.Sequential(
            nn.Conv1d(in_latent_channels, model_channels, 3, padding=1),
            *_attention_stack(model_channels, num_heads, NUM_LATENT_CONDITIONER_BLOCKS),
        )
        # voice conditioning: two stride-2 convs (4x shorter in time) with no activation between them
        self.contextual_embedder = nn.Sequential(
            nn.Conv1d(in_channels, model_channels, 3, padding=1, stride=2),
            nn.Conv1d(model_channels, model_channels * 2, 3, padding=1, stride=2),
            *_attention_stack(model_channels * 2, num_heads, NUM_CONTEXTUAL_EMBEDDER_BLOCKS),
        )
        self.unconditioned_embedding = nn.Parameter(torch.randn(1, model_channels, 1))
        self.conditioning_timestep_integrator = nn.ModuleList(
            DiffusionLayer(model_channels, dropout, num_heads) for _ in range(NUM_INTEGRATOR_LAYERS)
        )
        self.integrating_conv = nn.Conv1d(model_channels * 2, model_channels, 1)
        self.mel_head = nn.Conv1d(model_channels, in_channels, 3, padding=1)
        self.layers = nn.ModuleList(
            [DiffusionLayer(model_channels, dropout, num_heads) for _ in range(num_layers)]
            + [ResBlock(model_channels, model_channels, dropout) for _ in range(NUM_TRAILING_RESBLOCKS)]
        )
        self.out = nn.Sequential(
            normalization(model_channels), nn.SiLU(), nn.Conv1d(model_channels, out_channels, 3, padding=1)
        )

    @property
    def dtype(self) -> torch.dtype:
        """Parameter dtype; inputs are cast to it so a .half()/.bfloat16() model takes float32 inputs."""
        return self.inp_block.weight.dtype

    def get_conditioning(self, mels: torch.Tensor) -> torch.Tensor:
        """Voice conditioning latent from un-normalised 24 kHz mels of one or more clips.

        Args:
            mels: (batch, clips, in_channels, frames), or (batch, in_channels, frames) for one clip.

        Returns:
            (batch, 2 * model_channels): the contextual embedding averaged over every clip's frames.
        """
        if mels.dim() == 3:
            mels = mels.unsqueeze(1)
        b, n, c, t = mels.shape
        # all clips share one length, so they go through the embedder as one batch
        emb = self.contextual_embedder(mels.reshape(b * n, c, t).to(self.dtype))  # (b*n, 2C, t/4)
        emb = emb.reshape(b, n, emb.shape[1], -1).transpose(1, 2)  # (b, 2C, n, t/4)
        # clips concatenated along time, then one mean over the joined frames (as the official code)
        return emb.reshape(b, emb.shape[1], -1).mean(dim=-1)

    def timestep_independent(
        self,
        aligned_conditioning: torch.Tensor,
        conditioning_latent: torch.Tensor,
        expected_seq_len: int,
        return_code_pred: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Aligned conditioning embedding E, computed once per candidate and reused at every step.

        Args:
            aligned_conditioning: AR latents (batch, L, in_latent_channels), any float dtype; or integer
                code tokens (batch, L) for the code-conditioned path that tts never uses.
            conditioning_latent: (batch, 2 * model_channels) from `get_conditioning`.
            expected_seq_len: output frames T; E is stretched to it by nearest-neighbour interpolation.
            return_code_pred: also return the auxiliary mel prediction.

        Returns:
            E (batch, model_channels, T); with return_code_pred, (E, mel_pred (batch, in_channels, T)).
        """
        # The official check is `dtype == float32`; any float is treated as latents here, so a half
        # model also accepts half latents (official code would feed those to the embedding and fail).
        if aligned_conditioning.is_floating_point():
            code_emb = self.latent_conditioner(aligned_conditioning.to(self.dtype).transpose(1, 2))
        else:
            code_emb = self.code_converter(self.code_embedding(aligned_conditioning).transpose(1, 2))
        cond_scale, cond_shift = conditioning_latent.to(code_emb.dtype).unsqueeze(-1).chunk(2, dim=1)
        code_emb = self.code_norm(code_emb) * (1 + cond_scale) + cond_shift  # (batch, C, L)

        is_unconditioned = None
        if self.training and self.unconditioned_percentage > 0:
            is_unconditioned = torch.rand(code_emb.shape[0], 1, 1, device=code_emb.device)
            is_unconditioned = is_unconditioned < self.unconditioned_percentage
            code_emb = torch.where(is_unconditioned, self.unconditioned_embedding, code_emb)
        code_emb = F.interpolate(code_emb, size=expected_seq_len, mode="nearest")  # (batch, C, T)

        if not return_code_pred:
            return code_emb
        mel_pred = self.mel_head(code_emb)
        if is_unconditioned is not None:
            # no mel-prediction gradient through elements that saw no conditioning
            mel_pred = mel_pred * is_unconditioned.logical_not()
        return code_emb, mel_pred

    def forward(
        self,
        x: torch.Tensor,
        timesteps: torch.Tensor,
        aligned_conditioning: torch.Tensor | None = None,
        conditioning_latent: torch.Tensor | None = None,
        precomputed_aligned_embeddings: torch.Tensor | None = None,
        conditioning_free: bool | torch.Tensor = False,
        return_code_pred: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Predict epsilon and the variance values for noisy mels at the given timesteps.

        The conditioning is chosen in the official order: `conditioning_free` (the learned unconditioned
        embedding), else `precomputed_aligned_embeddings`, else `timestep_independent` on
        `aligned_conditioning` and `conditioning_latent`.

        Args:
            x: (batch, in_channels, T) noisy normalised mel.
            timesteps: (batch,) timesteps on the original 0..3999 scale.
            aligned_conditioning: AR latents (batch, L, in_latent_channels) or code tokens (batch, L).
            conditioning_latent: (batch, 2 * model_channels) from `get_conditioning`.
            precomputed_aligned_embeddings: (batch, model_channels, T) from `timestep_independent`.
            conditioning_free: ignore all conditioning (for classifier-free guidance). A (batch,) bool
                tensor chooses per row: True rows are unconditioned, the others use
                `precomputed_aligned_embeddings` (batch 1, broadcast, or one per row), so guidance
                runs both predictions as one batch.
            return_code_pred: also return the auxiliary mel prediction (direct conditioned path only).

        Returns:
            (batch, out_channels, T): epsilon in the first in_channels, variance values in [-1, 1] terms
            in the rest; with return_code_pred, (output, mel_pred (batch, in_channels, T)).

        Raises:
            ValueError: no usable conditioning was given, or return_code_pred without the direct path.
        """
        has_direct = aligned_conditioning is not None and conditioning_latent is not None
        per_row = isinstance(conditioning_free, torch.Tensor)
        if per_row and precomputed_aligned_embeddings is None:
            raise ValueError("a per-row conditioning_free needs precomputed_aligned_embeddings")
        unconditioned_only = not per_row and bool(conditioning_free)
        if not unconditioned_only and precomputed_aligned_embeddings is None and not has_direct:
            raise ValueError(
                "DiffusionTts needs precomputed_aligned_embeddings, or aligned_conditioning together with "
                "conditioning_latent, unless conditioning_free=True."
            )
        if return_code_pred and (per_row or unconditioned_only or precomputed_aligned_embeddings is not None):
            raise ValueError("return_code_pred needs the direct aligned_conditioning path.")

        x = x.to(self.dtype)
        mel_pred = None
        if per_row:
            code_emb = self._mixed_conditioning(conditioning_free, precomputed_aligned_embeddings, x)
        elif conditioning_free:
            # broadcast view, never materialised: the first ResBlock's GroupNorm makes a new tensor
            code_emb = self.unconditioned_embedding.expand(x.shape[0], -1, x.shape[-1])
        elif precomputed_aligned_embeddings is not None:
            code_emb = precomputed_aligned_embeddings.to(self.dtype)
        elif return_code_pred:
            code_emb, mel_pred = self.timestep_independent(
                aligned_conditioning, conditioning_latent, x.shape[-1], True
            )
        else:
            code_emb = self.timestep_independent(aligned_conditioning, conditioning_latent, x.shape[-1])

        time_emb = self.time_embed(timestep_embedding(timesteps, self.model_channels).to(self.dtype))
        for layer in self.conditioning_timestep_integrator:
            code_emb = layer(code_emb, time_emb)
        h = self.integrating_conv(torch.cat([self.inp_block(x), code_emb], dim=1))  # (batch, C, T)
        for i, layer in enumerate(self.layers):
            if self._is_dropped(i):
                continue
            # the first layer always runs at full precision (as the official model)
            with torch.autocast(h.device.type, enabled=self.use_fp16 and i != 0):
                h = layer(h, time_emb)
        out = self.out(h.to(self.dtype))
        return (out, mel_pred) if return_code_pred else out

    def _mixed_conditioning(
        self, unconditioned: torch.Tensor, embeddings: torch.Tensor, x: torch.Tensor
    ) -> torch.Tensor:
        """(batch, C, T) aligned embeddings: the unconditioned embedding where `unconditioned` is True,
        the precomputed embeddings (in order) in the other rows."""
        batch, frames = x.shape[0], x.shape[-1]
        uncond = self.unconditioned_embedding.to(self.dtype).expand(batch, -1, frames)
        embeddings = embeddings.to(self.dtype).expand(batch, -1, -1)
        return torch.where(unconditioned[:, None, None], uncond, embeddings)

    def _is_dropped(self, index: int) -> bool:
        """Training-time layer drop; the first and last main layers always run."""
        if not self.training or self.layer_drop <= 0 or index in (0, len(self.layers) - 1):
            return False
        return random.random() < self.layer_drop
