"""Building blocks shared by several TorToiSe models: fp32 GroupNorm, the channels-first
AttentionBlock (per-head [q|k|v] layout) and the T5-style relative position bias."""

import math

import torch
import torch.nn.functional as F
from torch import nn


class GroupNorm32(nn.GroupNorm):
    """GroupNorm that always computes in float32 and casts back (as the official `normalization`)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # parameters are upcast too, so a .half()/.bfloat16() model still normalises in float32
        weight = None if self.weight is None else self.weight.float()
        bias = None if self.bias is None else self.bias.float()
        return F.group_norm(x.float(), self.num_groups, weight, bias, self.eps).type(x.dtype)


def normalization(channels: int) -> GroupNorm32:
    """GroupNorm with TorToiSe's group rule: 32 groups (8 up to 16 channels, 16 up to 64),
    halved until the channel count divides evenly."""
    groups = 32
    if channels <= 16:
        groups = 8
    elif channels <= 64:
        groups = 16
    while channels % groups != 0:
        groups //= 2
    assert groups > 2, f"cannot find a group count for {channels} channels"
    return GroupNorm32(groups, channels)


def relative_position_bucket(
    relative_position: torch.Tensor, num_buckets: int, max_distance: int
) -> torch.Tensor:
    """Bidirectional T5 bucketing of key_pos - query_pos: half the buckets per direction,
    exact up to a quarter of the buckets, log-spaced beyond, capped at the last bucket."""
    n = -relative_position
    num_buckets //= 2
    ret = (n < 0).long() * num_buckets
    n = n.abs()
    max_exact = num_buckets // 2
    is_small = n < max_exact
    # clamp to 1 inside the log only to avoid log(0); those entries take the `is_small` branch
    val_if_large = (
        max_exact
        + (
            torch.log(n.float().clamp(min=1) / max_exact)
            / math.log(max_distance / max_exact)
            * (num_buckets - max_exact)
        ).long()
    )
    val_if_large = torch.minimum(val_if_large, torch.full_like(val_if_large, num_buckets - 1))
    return ret + torch.where(is_small, n, val_if_large)


class RelativePositionBias(nn.Module):
    """Learned per-head bias added to attention logits, looked up by bucketed relative distance."""

    def __init__(self, scale: float, heads: int, num_buckets: int = 32, max_distance: int = 128):
        super().__init__()
        self.scale = scale
        self.num_buckets = num_buckets
        self.max_distance = max_distance
        self.relative_attention_bias = nn.Embedding(num_buckets, heads)

    def forward(self, qk_dots: torch.Tensor) -> torch.Tensor:
        # qk_dots: (batch, heads, query, key)
        i, j = qk_dots.shape[-2:]
        q_pos = torch.arange(i, device=qk_dots.device)
        k_pos = torch.arange(j, device=qk_dots.device)
        buckets = relative_position_bucket(
            k_pos[None, :] - q_pos[:, None], self.num_buckets, self.max_distance
        )
        bias = self.relative_attention_bias(buckets).permute(2, 0, 1).unsqueeze(0)  # (1, heads, i, j)
        return qk_dots + bias * self.scale


class AttentionBlock(nn.Module):
    """Residual self-attention over a channels-first sequence: x + proj_out(attn(qkv(norm(x)))).

    Args:
        channels: width C; must divide by num_heads.
        num_heads: attention heads; each head owns a contiguous [q|k|v] block of 3*C/H qkv channels.
        relative_pos_embeddings: add a T5 relative bias (32 buckets, max distance 64) scaled by sqrt(C/H).
    """

    def __init__(self, channels: int, num_heads: int = 1, relative_pos_embeddings: bool = False):
        super().__init__()
        assert channels % num_heads == 0, "channels must divide by num_heads"
        self.channels = channels
        self.num_heads = num_heads
        self.norm = normalization(channels)
        self.qkv = nn.Conv1d(channels, channels * 3, 1)
        self.proj_out = nn.Conv1d(channels, channels, 1)
        if relative_pos_embeddings:
            self.relative_pos_embeddings = RelativePositionBias(
                scale=(channels // num_heads) ** 0.5, heads=num_heads, num_buckets=32, max_distance=64
            )
        else:
            self.relative_pos_embeddings = None

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        b, c, *spatial = x.shape
        x = x.reshape(b, c, -1)
        qkv = self.qkv(self.norm(x))  # (b, 3C, T)
        t = qkv.shape[-1]
        d = c // self.num_heads
        q, k, v = qkv.reshape(b * self.num_heads, 3 * d, t).split(d, dim=1)  # each (bH, d, T)
        scale = 1.0 / math.sqrt(math.sqrt(d))
        weight = torch.einsum("bct,bcs->bts", q * scale, k * scale)  # (bH, T, T)
        if self.relative_pos_embeddings is not None:
            weight = self.relative_pos_embeddings(weight.reshape(b, self.num_heads, t, t)).reshape(-1, t, t)
        weight = torch.softmax(weight.float(), dim=-1).type(weight.dtype)
        if mask is not None:
            # the official block multiplies the probabilities by the mask (no renormalisation)
            weight = weight * mask.repeat(self.num_heads, 1).unsqueeze(1)
        h = torch.einsum("bts,bcs->bct", weight, v).reshape(b, c, t)
        return (x + self.proj_out(h)).reshape(b, c, *spatial)


def contrastive_loss(a: torch.Tensor, b: torch.Tensor, temperature: torch.Tensor) -> torch.Tensor:
    """Symmetric CLIP loss of paired unit latents a, b (batch, dim): row i of a belongs with row i of b."""
    logits = a @ b.t() * temperature.exp()  # (batch, batch)
    labels = torch.arange(logits.shape[0], device=logits.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2
