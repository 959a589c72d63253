"""CVVP (cvvp.pth): a contrastive model that scores how well each candidate of AR codes matches the voice of
a conditioning clip. It has a split API so each clip is encoded once, not once per candidate.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tortoise.models.layers import AttentionBlock, contrastive_loss
from tortoise.models.xtransformer import ContinuousTransformer

CVVP_FF_MULT = 1


class CollapsingTransformer(nn.Module):
    """Transformer encoder, then conv -> AttentionBlock -> conv over channels, then a mean over time.

    Args:
        model_dim: transformer width.
        output_dims: width of the collapsed vector.
        heads: heads of the transformer (64 wide each) and of the AttentionBlock.
        dropout: transformer dropout (training only).
        depth: transformer (attention, feed-forward) pairs.
    """

    def __init__(self, model_dim: int, output_dims: int, heads: int, dropout: float, depth: int):
        super().__init__()
        self.transformer = ContinuousTransformer(
            model_dim, depth, heads, ff_mult=CVVP_FF_MULT, dropout=dropout
        )
        self.pre_combiner = nn.Sequential(
            nn.Conv1d(model_dim, output_dims, 1),
            AttentionBlock(output_dims, num_heads=heads),
            nn.Conv1d(output_dims, output_dims, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Collapse x (batch, seq, model_dim) -> (batch, output_dims)."""
        h = self.transformer(x).transpose(1, 2)  # (batch, model_dim, seq)
        return self.pre_combiner(h).mean(dim=-1)


class ConvFormatEmbedding(nn.Module):
    """Embedding that returns channels-first output (batch, dim, seq); the weight sits under `emb`."""

    def __init__(self, num_embeddings: int, dim: int):
        super().__init__()
        self.emb = nn.Embedding(num_embeddings, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.emb(x).transpose(1, 2)


class CVVP(nn.Module):
    """Contrastive Voice-Voice Pretrained model: cosine similarity of a conditioning-mel encoding and a
    speech-code encoding, times exp(temperature).

    Args mirror the official constructor; the defaults are cvvp.pth's configuration as api.py builds it.

    Args:
        model_dim: transformer width of both branches.
        transformer_heads: heads of both branches.
        dropout: transformer dropout (training only).
        conditioning_enc_depth: conditioning transformer (attention, feed-forward) pairs.
        cond_mask_percentage: training-time time-step dropout; accepted for config parity, not implemented.
        mel_channels: conditioning mel bins (80, the normalised AR mel).
        mel_codes: speech-code vocabulary (8192); None makes the speech branch read a mel through a conv.
        speech_enc_depth: speech transformer pairs.
        speech_mask_percentage: as cond_mask_percentage.
        latent_multiplier: latent width as a multiple of model_dim.
    """

    def __init__(
        self,
        model_dim: int = 512,
        transformer_heads: int = 8,
        dropout: float = 0,
        conditioning_enc_depth: int = 8,
        cond_mask_percentage: float = 0,
        mel_channels: int = 80,
        mel_codes: int | None = 8192,
        speech_enc_depth: int = 8,
        speech_mask_percentage: float = 0,
        latent_multiplier: int = 1,
    ):
        super().__init__()
        latent_dim = latent_multiplier * model_dim
        self.temperature = nn.Parameter(torch.tensor(1.0))
        # two stride-2 convs, no activation between:
        # (80, T) -> (model_dim/2, ceil(T/2)) -> (model_dim, ceil(T/4))
        self.cond_emb = nn.Sequential(
            nn.Conv1d(mel_channels, model_dim // 2, kernel_size=5, stride=2, padding=2),
            nn.Conv1d(model_dim // 2, model_dim, kernel_size=3, stride=2, padding=1),
        )
        self.conditioning_transformer = CollapsingTransformer(
            model_dim, model_dim, transformer_heads, dropout, conditioning_enc_depth
        )
        self.to_conditioning_latent = nn.Linear(latent_dim, latent_dim, bias=False)
        if mel_codes is None:
            self.speech_emb = nn.Conv1d(mel_channels, model_dim, kernel_size=5, padding=2)
        else:
            self.speech_emb = ConvFormatEmbedding(mel_codes, model_dim)
        self.speech_transformer = CollapsingTransformer(
            model_dim, latent_dim, transformer_heads, dropout, speech_enc_depth
        )
        self.to_speech_latent = nn.Linear(latent_dim, latent_dim, bias=False)

    def encode_conditioning(self, mel_cond: torch.Tensor) -> torch.Tensor:
        """Encode conditioning mels into unit-length voice latents.

        Args:
            mel_cond: (batch, mel_channels, frames) normalised AR mels, one clip per row.

        Returns:
            (batch, latent_dim) L2-normalised latents.
        """
        emb = self.cond_emb(mel_cond).transpose(1, 2)  # (batch, ceil(frames / 4), model_dim)
        return F.normalize(self.to_conditioning_latent(self.conditioning_transformer(emb)), p=2, dim=-1)

    def encode_speech(self, mel_codes: torch.Tensor) -> torch.Tensor:
        """Encode AR speech codes (or mels when built with mel_codes=None) into unit-length latents.

        Args:
            mel_codes: (batch, code_len) int codes < mel_codes, or (batch, mel_channels, frames) mels.

        Returns:
            (batch, latent_dim) L2-normalised latents.
        """
        emb = self.speech_emb(mel_codes).transpose(1, 2)  # (batch, seq, model_dim)
        return F.normalize(self.to_speech_latent(self.speech_transformer(emb)), p=2, dim=-1)

    def score(self, cond_latents: torch.Tensor, speech_latents: torch.Tensor) -> torch.Tensor:
        """Similarity of paired latents: dot product times exp(temperature).

        Args:
            cond_latents: (batch, latent_dim) or (1, latent_dim), broadcast over the speech batch.
            speech_latents: (batch, latent_dim).

        Returns:
            (batch,) scores.
        """
        return (cond_latents * speech_latents).sum(dim=-1) * self.temperature.exp()

    def score_over_clips(self, cond_latents: torch.Tensor, speech_latents: torch.Tensor) -> torch.Tensor:
        """Mean score of every candidate against every clip, as api.py averages CVVP over the voice clips.

        Args:
            cond_latents: (clips, latent_dim) from encode_conditioning.
            speech_latents: (batch, latent_dim) from encode_speech.

        Returns:
            (batch,) scores averaged over the clips.
        """
        total = torch.zeros(speech_latents.shape[0], dtype=speech_latents.dtype, device=speech_latents.device)
        for clip in range(cond_latents.shape[0]):  # accumulate in clip order, as the original loop does
            total = total + self.score(cond_latents[clip : clip + 1], speech_latents)
        return total / cond_latents.shape[0]

    def forward(
        self, mel_cond: torch.Tensor, mel_codes: torch.Tensor, return_loss: bool = False
    ) -> torch.Tensor:
        """Score conditioning/speech pairs row by row, or return the symmetric contrastive loss.

        Args:
            mel_cond: (batch, mel_channels, frames) conditioning mels.
            mel_codes: (batch, code_len) speech codes.
            return_loss: return the CLIP loss over all pairs of the batch instead of the scores.

        Returns:
            (batch,) scores, or a scalar loss when return_loss is True.
        """
        cond_latents = self.encode_conditioning(mel_cond)
        speech_latents = self.encode_speech(mel_codes)
        if not return_loss:
            return self.score(cond_latents, speech_latents)
        return contrastive_loss(cond_latents, speech_latents, self.temperature)
