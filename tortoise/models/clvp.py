"""CLVP (clvp2.pth): a CLIP-style text/speech-code contrastive model that scores how well each candidate
of AR codes matches the text. It has a split API so the text is encoded once per batch of candidates.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tortoise.models.layers import contrastive_loss
from tortoise.models.xtransformer import ContinuousTransformer

CLVP_FF_MULT = 2
CLVP_DROPOUT = 0.1  # attention and feed-forward dropout during training, as the original hard-codes


class ClvpEncoder(nn.Module):
    """One CLVP branch's transformer; the `transformer` attribute and `.wrap.` segments give clvp2.pth keys.

    Args:
        dim: width.
        depth: number of (attention, feed-forward) pairs.
        heads: attention heads, 64 wide each.
    """

    def __init__(self, dim: int, depth: int, heads: int):
        super().__init__()
        self.transformer = ContinuousTransformer(
            dim, depth, heads, ff_mult=CLVP_FF_MULT, dropout=CLVP_DROPOUT, wrap_blocks=True
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Encode embeddings (batch, seq, dim) -> (batch, seq, dim)."""
        return self.transformer(x)


class CLVP(nn.Module):
    """Contrastive Language-Voice Pretrained model: cosine similarity of text and speech-code encodings,
    times exp(temperature).

    Args mirror the official constructor; the defaults are clvp2.pth's configuration.

    Args:
        dim_text: text encoder width.
        dim_speech: speech encoder width.
        dim_latent: width of the shared latent space.
        num_text_tokens: text vocabulary size (256).
        text_enc_depth: text encoder (attention, feed-forward) pairs.
        text_seq_len: unused with use_xformers=True (no learned position table); kept for config parity.
        text_heads: text encoder heads.
        num_speech_tokens: speech-code vocabulary (8192; the AR start/stop codes are not representable).
        speech_enc_depth: speech encoder pairs.
        speech_heads: speech encoder heads.
        speech_seq_len: unused, as text_seq_len.
        text_mask_percentage: training-time token dropout; accepted for config parity, not implemented.
        voice_mask_percentage: as text_mask_percentage.
        wav_token_compression: unused by the model; kept for config parity.
        use_xformers: must be True (the x-transformers encoders of clvp2.pth).

    Raises:
        ValueError: use_xformers is False (the older encoder is not part of this re-implementation).
    """

    def __init__(
        self,
        *,
        dim_text: int = 768,
        dim_speech: int = 768,
        dim_latent: int = 768,
        num_text_tokens: int = 256,
        text_enc_depth: int = 20,
        text_seq_len: int = 350,
        text_heads: int = 12,
        num_speech_tokens: int = 8192,
        speech_enc_depth: int = 20,
        speech_heads: int = 12,
        speech_seq_len: int = 430,
        text_mask_percentage: float = 0,
        voice_mask_percentage: float = 0,
        wav_token_compression: int = 1024,
        use_xformers: bool = True,
    ):
        super().__init__()
        if not use_xformers:
            raise ValueError(
                "CLVP with use_xformers=False is not supported; clvp2.pth uses use_xformers=True"
            )
        self.text_emb = nn.Embedding(num_text_tokens, dim_text)
        self.to_text_latent = nn.Linear(dim_text, dim_latent, bias=False)
        self.speech_emb = nn.Embedding(num_speech_tokens, dim_speech)
        self.to_speech_latent = nn.Linear(dim_speech, dim_latent, bias=False)
        self.text_transformer = ClvpEncoder(dim_text, text_enc_depth, text_heads)
        self.speech_transformer = ClvpEncoder(dim_speech, speech_enc_depth, speech_heads)
        self.temperature = nn.Parameter(torch.tensor(1.0))

    def encode_text(self, text: torch.Tensor) -> torch.Tensor:
        """Embed text token ids into unit-length latents.

        Args:
            text: (batch, text_len) int ids; padding zeros are not masked and take part in the mean,
                as in the original at inference.

        Returns:
            (batch, dim_latent) L2-normalised latents.
        """
        encoded = self.text_transformer(self.text_emb(text))  # (batch, text_len, dim_text)
        return F.normalize(self.to_text_latent(encoded.mean(dim=1)), p=2, dim=-1)

    def encode_speech(self, speech_tokens: torch.Tensor) -> torch.Tensor:
        """Embed AR speech codes into unit-length latents.

        Args:
            speech_tokens: (batch, code_len) int codes, each < num_speech_tokens (tts passes the fixed,
                padded rows of fix_autoregressive_output).

        Returns:
            (batch, dim_latent) L2-normalised latents.
        """
        encoded = self.speech_transformer(self.speech_emb(speech_tokens))  # (batch, code_len, dim_speech)
        return F.normalize(self.to_speech_latent(encoded.mean(dim=1)), p=2, dim=-1)

    def score(self, text_latents: torch.Tensor, speech_latents: torch.Tensor) -> torch.Tensor:
        """Similarity of paired latents: dot product times exp(temperature).

        Args:
            text_latents: (batch, dim_latent) or (1, dim_latent), broadcast over the speech batch, so one
                text can be encoded once and scored against many candidates.
            speech_latents: (batch, dim_latent).

        Returns:
            (batch,) scores.
        """
        return (text_latents * speech_latents).sum(dim=-1) * self.temperature.exp()

    def forward(
        self, text: torch.Tensor, speech_tokens: torch.Tensor, return_loss: bool = False
    ) -> torch.Tensor:
        """Score text/speech pairs row by row, or return the symmetric contrastive loss.

        Args:
            text: (batch, text_len) int ids.
            speech_tokens: (batch, code_len) int codes.
            return_loss: return the CLIP loss over all pairs of the batch instead of the scores.

        Returns:
            (batch,) scores, or a scalar loss when return_loss is True.
        """
        text_latents = self.encode_text(text)
        speech_latents = self.encode_speech(speech_tokens)
        if not return_loss:
            return self.score(text_latents, speech_latents)
        return contrastive_loss(text_latents, speech_latents, self.temperature)
