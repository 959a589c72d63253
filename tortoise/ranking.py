"""Candidate ranking: CLVP (text vs speech codes) and optionally CVVP (voice vs speech), mixed by weight.
The text and the voice clips are encoded once per call, not once per candidate as in the official code."""

from __future__ import annotations

import torch

from tortoise.errors import InvalidInputError


@torch.inference_mode()
def score_candidates(
    codes: torch.Tensor,
    text_tokens: torch.Tensor,
    clvp: torch.nn.Module | None,
    *,
    cvvp: torch.nn.Module | None = None,
    ar_mels: torch.Tensor | None = None,
    cvvp_amount: float = 0.0,
    batch_size: int = 16,
) -> torch.Tensor:
    """Score fixed candidate codes; higher is better.

    Args:
        codes: (N, L) fixed codes (all < 8192, see fix_autoregressive_output).
        text_tokens: (1, T) text ids with their trailing stop 0 (what official CLVP sees).
        clvp: CLVP model; unused when cvvp_amount == 1.
        cvvp / ar_mels: CVVP model and (1, clips, 80, 517) voice mels; needed when cvvp_amount > 0.
        cvvp_amount: weight a of CVVP: score = a * cvvp + (1 - a) * clvp.
        batch_size: candidates encoded at once.

    Returns:
        (N,) float32 scores.
    """
    if not 0.0 <= cvvp_amount <= 1.0:
        raise InvalidInputError(f"CVVP weight must be between 0 and 1, got {cvvp_amount}.")
    n = codes.shape[0]
    total = torch.zeros(n, dtype=torch.float32, device=codes.device)
    if cvvp_amount < 1.0:
        if clvp is None:
            raise InvalidInputError("CLVP is needed to rank candidates.")
        text_latent = clvp.encode_text(text_tokens)  # (1, D): once for every candidate
        clvp_scores = torch.cat([
            clvp.score(text_latent, clvp.encode_speech(codes[i : i + batch_size]))
            for i in range(0, n, batch_size)
        ])
        total += (1.0 - cvvp_amount) * clvp_scores.float()
    if cvvp_amount > 0.0:
        if cvvp is None or ar_mels is None:
            raise InvalidInputError("CVVP ranking needs the CVVP model and the voice's clip mels.")
        clip_latents = cvvp.encode_conditioning(ar_mels.reshape(-1, *ar_mels.shape[-2:]))  # (clips, D)
        cvvp_scores = torch.cat([
            cvvp.score_over_clips(clip_latents, cvvp.encode_speech(codes[i : i + batch_size]))
            for i in range(0, n, batch_size)
        ])
        total += cvvp_amount * cvvp_scores.float()
    return total
