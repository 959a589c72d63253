"""Random latent generators (`rlg_auto.pth`, `rlg_diffuser.pth`): map N(0, 1) noise to a conditioning
latent for the "random" voice (as tortoise/models/random_latent_generator.py)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# StyleGAN2-style equalised learning rate multiplier of the five mapping layers.
LR_MUL = 0.1
NUM_EQUAL_LAYERS = 5


class EqualLinear(nn.Module):
    """Linear layer with equalised learning rate, followed by the "fused" leaky ReLU of StyleGAN2.

    y = leaky_relu(x (W · lr_mul / sqrt(in_dim))ᵀ + lr_mul · b, 0.2) · sqrt(2).

    Args:
        in_dim: input features.
        out_dim: output features.
        lr_mul: scale applied to the stored weight and bias at run time.
    """

    def __init__(self, in_dim: int, out_dim: int, lr_mul: float = 1.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
        self.bias = nn.Parameter(torch.zeros(out_dim))
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.linear(x, self.weight * self.scale)
        return F.leaky_relu(y + self.bias * self.lr_mul, negative_slope=0.2) * math.sqrt(2)


class RandomLatentConverter(nn.Module):
    """Five EqualLinear layers and a plain Linear, all `channels` wide.

    Args:
        channels: latent width; 1024 for the autoregressive latent, 2048 for the diffusion one.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels
        self.layers = nn.Sequential(
            *(EqualLinear(channels, channels, lr_mul=LR_MUL) for _ in range(NUM_EQUAL_LAYERS)),
            nn.Linear(channels, channels),
        )

    def forward(self, noise: torch.Tensor) -> torch.Tensor:
        """Map noise (batch, channels) to latents (batch, channels)."""
        return self.layers(noise)

    @torch.no_grad()
    def sample(self, batch_size: int = 1, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw N(0, 1) noise on the CPU and map it, as the original `forward(ref)` with `len(ref)` rows.

        Args:
            batch_size: number of latents.
            generator: CPU generator for the draw; the global CPU generator when None, which reproduces
                `torch.manual_seed(s)` followed by the original call.

        Returns:
            (batch_size, channels) latents on the model's device.
        """
        param = next(self.parameters())
        noise = torch.randn(batch_size, self.channels, generator=generator)
        return self(noise.to(device=param.device, dtype=param.dtype))
