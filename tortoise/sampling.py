"""AR sampling: the logits processors of official TorToiSe sampling, in the order it applied them.

Official TorToiSe sampled through HF transformers 4.31 `generate`, which ran repetition penalty,
temperature, top-k (its default 50) and top-p in that order. Each processor here is a pure function
over a batch of rows: logits [B, V] (and input ids [B, L]) in, a new [B, V] tensor out.
"""

from __future__ import annotations

import torch

from tortoise.errors import InvalidInputError

# HF generate's default top_k; official TorToiSe never overrode it, so it is always active.
DEFAULT_TOP_K = 50


def apply_repetition_penalty(logits: torch.Tensor, input_ids: torch.Tensor, penalty: float) -> torch.Tensor:
    """Penalise every id that occurs in `input_ids`: negative logits are multiplied, positive divided.

    Each distinct id is penalised once per row, however often it occurs. The ids include everything
    fed so far, so in TorToiSe the prompt's filler id 1 and start code 8192 are penalised too.

    Args:
        logits: scores of the next token, [B, V].
        input_ids: ids fed so far, [B, L] (int64), values in 0..V-1.
        penalty: strictly positive; 1.0 leaves the logits unchanged, above 1 discourages repeats.

    Returns:
        New logits [B, V].

    Raises:
        InvalidInputError: if `penalty` is not positive.
    """
    if not penalty > 0:
        raise InvalidInputError(f"repetition_penalty must be positive, got {penalty}.")
    seen = logits.gather(-1, input_ids)
    seen = torch.where(seen < 0, seen * penalty, seen / penalty)
    # Duplicated ids gather the same value and scatter the same result back, so each counts once.
    return logits.scatter(-1, input_ids, seen)


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Divide logits by `temperature` (>0); below 1 sharpens the distribution, above 1 flattens it.

    Raises:
        InvalidInputError: if `temperature` is not positive.
    """
    if not temperature > 0:
        raise InvalidInputError(f"temperature must be positive, got {temperature}.")
    return logits / temperature


def apply_top_k(logits: torch.Tensor, top_k: int = DEFAULT_TOP_K) -> torch.Tensor:
    """Keep the `top_k` largest logits of each row and set the rest to -inf.

    Every logit equal to the k-th largest is kept, so ties can leave more than `top_k` entries.

    Args:
        logits: [B, V].
        top_k: entries to keep per row (default 50, HF's default); 0 disables the filter.

    Returns:
        New logits [B, V] with removed entries at -inf.
    """
    if top_k < 0:
        raise InvalidInputError(f"top_k must be 0 (off) or positive, got {top_k}.")
    if top_k == 0:
        return logits
    k = min(top_k, logits.shape[-1])
    kth_largest = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth_largest, float("-inf"))


def apply_top_p(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Nucleus filter: drop the least likely tokens whose total probability is at most 1 - `top_p`.

    Follows HF exactly: sort each row ascending, softmax, cumulative sum, and remove every token whose
    cumulative probability is <= 1 - top_p (a sum landing exactly on the boundary is removed). The
    most likely token is always kept.

    Args:
        logits: [B, V]; -inf entries (from top-k) have probability 0.
        top_p: in [0, 1]; 1.0 disables the filter, 0 keeps only the most likely token.

    Returns:
        New logits [B, V] with removed entries at -inf.

    Raises:
        InvalidInputError: if `top_p` is outside [0, 1].
    """
    if not 0.0 <= top_p <= 1.0:
        raise InvalidInputError(f"top_p must be between 0 and 1, got {top_p}.")
    if top_p == 1.0:
        # HF skips the filter here; running it could still drop tokens whose probability underflows to 0.
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=False)
    cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    drop_sorted = cumulative <= 1 - top_p
    drop_sorted[..., -1] = False
    drop = drop_sorted.scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def process_logits(
    logits: torch.Tensor,
    input_ids: torch.Tensor,
    *,
    repetition_penalty: float,
    temperature: float,
    top_p: float,
    top_k: int = DEFAULT_TOP_K,
) -> torch.Tensor:
    """Apply the official chain: repetition penalty, temperature, top-k, then top-p.

    Args:
        logits: scores of the next token, [B, V] (V = 8194 mel codes for the AR model).
        input_ids: every id fed so far, prompt fillers and start code included, [B, L].
        repetition_penalty: see `apply_repetition_penalty` (official default 2.0).
        temperature: see `apply_temperature` (official default 0.8).
        top_p: see `apply_top_p` (official default 0.8).
        top_k: see `apply_top_k` (default 50, as in official sampling).

    Returns:
        Scores [B, V] ready for softmax and multinomial sampling; removed entries are -inf.
    """
    # HF adds the penalty and temperature processors only when they are not 1.0; both are exact
    # no-ops then (x * 1 and x / 1), so applying them always gives identical scores.
    scores = apply_repetition_penalty(logits, input_ids, repetition_penalty)
    scores = apply_temperature(scores, temperature)
    scores = apply_top_k(scores, top_k)
    return apply_top_p(scores, top_p)
