"""The pre-norm transformer encoder that CLVP and CVVP share, written to load the key layout of the
x-transformers version vendored by TorToiSe (RMSNorm, rotary on q/k/v, GLU feed-forward, final LayerNorm).

Only what the two checkpoints use is here: bidirectional self-attention with 64-wide heads, no memory,
no cross-attention, no absolute positions. Key layout per block `l` (attention and feed-forward alternate):
`attn_layers.layers.{l}.0.0.g` for the pre-norm gain and `attn_layers.layers.{l}.1.[wrap.]<params>`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

DIM_HEAD = 64  # fixed in both checkpoints (the x-transformers default)
MIN_ROTARY_DIM = 32  # rotary width is max(dim_head // 2, 32)
ROTARY_BASE = 10000.0
RMS_NORM_EPS = 1e-8


class RMSNorm(nn.Module):
    """x / max(||x||_2 / sqrt(dim), eps) * g over the last axis (x-transformers' RMSNorm).

    Args:
        dim: feature width.
        eps: lower clamp of the root-mean-square, 1e-8 as in the checkpoints.
    """

    def __init__(self, dim: int, eps: float = RMS_NORM_EPS):
        super().__init__()
        self.scale = dim**-0.5
        self.eps = eps
        self.g = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rms = torch.linalg.vector_norm(x, dim=-1, keepdim=True) * self.scale
        return x / rms.clamp(min=self.eps) * self.g


class RotaryEmbedding(nn.Module):
    """Rotary angles for positions 0..n-1; `inv_freq` is a persistent buffer, so it is in the state dict.

    Args:
        dim: rotary width (32 here); angles are built for dim // 2 frequencies and duplicated.
    """

    def __init__(self, dim: int):
        super().__init__()
        inv_freq = 1.0 / (ROTARY_BASE ** (torch.arange(0, dim, 2).float() / dim))
        self.register_buffer("inv_freq", inv_freq)

    def forward(self, seq_len: int) -> torch.Tensor:
        """Return angles of shape (seq_len, dim): [t * inv_freq, t * inv_freq] (halves, not interleaved)."""
        t = torch.arange(seq_len, device=self.inv_freq.device).type_as(self.inv_freq)
        freqs = torch.outer(t, self.inv_freq)
        return torch.cat((freqs, freqs), dim=-1)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    first, second = x.chunk(2, dim=-1)
    return torch.cat((-second, first), dim=-1)


def apply_rotary(x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Rotate the first `angles.shape[-1]` channels of every head; the rest pass through unchanged.

    Args:
        x: (..., seq, dim_head).
        angles: (seq, rotary_dim) from RotaryEmbedding.

    Returns:
        Tensor shaped like x.
    """
    rot_dim = angles.shape[-1]
    rotated, passed = x[..., :rot_dim], x[..., rot_dim:]
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    rotated = rotated * cos + _rotate_half(rotated) * sin
    return torch.cat((rotated, passed), dim=-1)


class Attention(nn.Module):
    """Bidirectional multi-head self-attention with rotary positions on q, k **and** v.

    Rotating v as well is a quirk of the vendored x-transformers; the checkpoints were trained with it.

    Args:
        dim: model width.
        heads: number of heads, each DIM_HEAD wide (so the inner width is heads * 64, whatever `dim` is).
        dropout: dropout on the attention probabilities (training only).
    """

    def __init__(self, dim: int, heads: int, dropout: float = 0.0):
        super().__init__()
        inner = heads * DIM_HEAD
        self.heads = heads
        self.dropout = dropout
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(dim, inner, bias=False)
        self.to_v = nn.Linear(dim, inner, bias=False)
        self.to_out = nn.Linear(inner, dim)

    def forward(self, x: torch.Tensor, rotary_angles: torch.Tensor | None = None) -> torch.Tensor:
        """Attend over x (batch, seq, dim) and return (batch, seq, dim)."""
        b, n, _ = x.shape
        # (3, batch, heads, seq, 64): q, k and v get the same rotation, so do them in one go
        qkv = torch.stack((self.to_q(x), self.to_k(x), self.to_v(x)))
        qkv = qkv.view(3, b, n, self.heads, DIM_HEAD).transpose(2, 3)
        if rotary_angles is not None:
            qkv = apply_rotary(qkv, rotary_angles)
        q, k, v = qkv.unbind(0)
        out = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0, scale=DIM_HEAD**-0.5
        )  # (batch, heads, seq, 64)
        return self.to_out(out.transpose(1, 2).reshape(b, n, self.heads * DIM_HEAD))


class GLU(nn.Module):
    """value * GELU(gate), with value and gate the two halves of one projection (`proj`)."""

    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = self.proj(x).chunk(2, dim=-1)
        return value * F.gelu(gate)  # exact (erf) GELU, as nn.GELU() in the original


class FeedForward(nn.Module):
    """GLU feed-forward: `net` = [GLU(dim -> dim*mult), Identity, Dropout, Linear(dim*mult -> dim)].

    The Identity stands where x-transformers puts an optional post-activation LayerNorm; it keeps the
    output projection at index 3 (`net.3.*`) as in the checkpoints.
    """

    def __init__(self, dim: int, mult: float, dropout: float = 0.0):
        super().__init__()
        inner = int(dim * mult)
        self.net = nn.Sequential(GLU(dim, inner), nn.Identity(), nn.Dropout(dropout), nn.Linear(inner, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class CheckpointedBlock(nn.Module):
    """Pass-through holder whose only job is the `.wrap.` key segment that clvp2.pth carries
    (the original wrapped each block for gradient checkpointing)."""

    def __init__(self, wrap: nn.Module):
        super().__init__()
        self.wrap = wrap

    def forward(self, x: torch.Tensor, **kwargs) -> torch.Tensor:
        return self.wrap(x, **kwargs)


class Encoder(nn.Module):
    """`depth` pairs of pre-norm residual blocks (attention, then feed-forward) with shared rotary angles.

    Args:
        dim: model width.
        depth: number of (attention, feed-forward) pairs; `layers` holds 2 * depth entries.
        heads: attention heads (64 wide each).
        ff_mult: feed-forward inner width as a multiple of dim.
        dropout: attention and feed-forward dropout (training only).
        wrap_blocks: put each block under a `.wrap` attribute (CLVP's key layout).
    """

    def __init__(
        self,
        dim: int,
        depth: int,
        heads: int,
        ff_mult: float,
        dropout: float = 0.0,
        wrap_blocks: bool = False,
    ):
        super().__init__()
        self.dim = dim
        self.rotary_pos_emb = RotaryEmbedding(max(DIM_HEAD // 2, MIN_ROTARY_DIM))
        self.layers = nn.ModuleList()
        for _ in range(depth):
            for block in (Attention(dim, heads, dropout), FeedForward(dim, ff_mult, dropout)):
                if wrap_blocks:
                    block = CheckpointedBlock(block)
                # the inner ModuleList mirrors x-transformers' (pre, post-branch, post-main) norm triple,
                # of which only the pre-norm exists in a pre-norm encoder
                self.layers.append(nn.ModuleList([nn.ModuleList([RMSNorm(dim)]), block]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Encode x (batch, seq, dim) -> (batch, seq, dim), before the final LayerNorm."""
        angles = self.rotary_pos_emb(x.shape[1])
        for index, (norms, block) in enumerate(self.layers):
            is_attention = index % 2 == 0
            h = norms[0](x)
            h = block(h, rotary_angles=angles) if is_attention else block(h)
            x = h + x
        return x


class ContinuousTransformer(nn.Module):
    """Encoder over continuous inputs followed by a LayerNorm (x-transformers' ContinuousTransformerWrapper
    as CLVP and CVVP configure it: no absolute positions, identity input/output projections).

    Args:
        dim: model width.
        depth: number of (attention, feed-forward) pairs.
        heads: attention heads (64 wide each).
        ff_mult: feed-forward inner width as a multiple of dim.
        dropout: attention and feed-forward dropout (training only).
        wrap_blocks: put each block under a `.wrap` attribute (CLVP's key layout).
    """

    def __init__(
        self,
        dim: int,
        depth: int,
        heads: int,
        ff_mult: float,
        dropout: float = 0.0,
        wrap_blocks: bool = False,
    ):
        super().__init__()
        self.attn_layers = Encoder(dim, depth, heads, ff_mult, dropout, wrap_blocks)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Encode x (batch, seq, dim) -> (batch, seq, dim)."""
        return self.norm(self.attn_layers(x))
