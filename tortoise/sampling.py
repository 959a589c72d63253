"""AR sampling: the logits processors of official TorToiSe sampling (in the order it applied them), the
sampling loop over UnifiedVoice's static KV cache, and the fixing of sampled codes before ranking.

Official TorToiSe sampled through HF transformers 4.31 `generate`, which ran repetition penalty,
temperature, top-k (its default 50) and top-p in that order. Each processor here is a pure function
over a batch of rows: logits [B, V] (and input ids [B, L]) in, a new [B, V] tensor out.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch

from tortoise.errors import GenerationCancelled, InvalidInputError

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


# ----------------------------------------------------------------------------------------------------
# The sampling loop

CALM_TOKEN = 83  # the AR code of silence ("calm" audio); official fix_autoregressive_output writes it
FIXED_TAIL = (45, 45, 248)  # codes the official fix stamps on the last three positions of every row
PROMPT_FILLER_ID = 1  # HF generate saw the prompt as this id repeated; the repetition penalty hits it


def apply_repetition_penalty_seen(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """`apply_repetition_penalty` over a (rows, vocab) bool mask of the ids seen so far.

    The same arithmetic per entry, so the result is bit-identical to the gather/scatter form; the
    mask keeps a static shape while decoding, which the gather over a growing history does not.
    """
    if not penalty > 0:
        raise InvalidInputError(f"repetition_penalty must be positive, got {penalty}.")
    penalised = torch.where(logits < 0, logits * penalty, logits / penalty)
    return torch.where(seen, penalised, logits)


def sample_with_noise(probs: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """One draw per row: argmax(probs / noise) with noise ~ Exp(1) of probs' shape.

    This is how `torch.multinomial(probs, 1)` draws internally (the exponential race), so with the
    noise taken from the same generator state it picks the same ids; unlike multinomial it never
    reads a value back to the host (multinomial checks its input with a blocking `.item()`).
    """
    return (probs / noise).argmax(dim=-1)


class CodeSampler:
    """Chooses each next code like official TorToiSe sampling, entirely on the device.

    Used as `next_code` of `UnifiedVoice.inference_codes` / `decode_codes`: the loop calls
    `choose_step(logits, step)`. The repetition penalty sees what HF `generate` saw (the prompt
    filler id, the start code and the codes so far), kept as a bool mask of seen ids per row. The
    exponential noise is drawn for every row of the batch on every step, finished or retired rows
    included, so the random-number order is the official one whatever rows are still decoded.

    Args:
        repetition_penalty / temperature / top_p / top_k: see `process_logits`.
        start_token: the start-of-speech code (8192).
        generator: None: torch's default generator of the logits' device (the official draw order).
        cancel: polled every step; True raises GenerationCancelled.
    """

    def __init__(
        self,
        *,
        repetition_penalty: float,
        temperature: float,
        top_p: float,
        top_k: int,
        start_token: int,
        generator: torch.Generator | None = None,
        cancel: Callable[[], bool] | None = None,
    ):
        self.repetition_penalty = repetition_penalty
        self.temperature = temperature
        self.top_p = top_p
        self.top_k = top_k
        self.start_token = start_token
        self.generator = generator
        self.cancel = cancel
        self._seen: torch.Tensor | None = None

    def choose_step(self, logits: torch.Tensor, step) -> torch.Tensor:
        """Next code of each decoded row. `step` is a `tortoise.models.decoding.DecodeStep`."""
        if self.cancel is not None and self.cancel():
            raise GenerationCancelled("Generation was cancelled.")
        rows, vocab = step.rows, logits.shape[-1]
        if step.index == 0 or self._seen is None or self._seen.shape != (rows, vocab):
            self._seen = torch.zeros(rows, vocab, dtype=torch.bool, device=logits.device)
            self._seen[:, PROMPT_FILLER_ID] = True
            self._seen[:, self.start_token] = True
        seen = self._seen if step.running is None else self._seen[step.running]
        scores = apply_repetition_penalty_seen(logits.float(), seen, self.repetition_penalty)
        scores = apply_temperature(scores, self.temperature)
        scores = apply_top_k(scores, self.top_k)
        probs = torch.softmax(apply_top_p(scores, self.top_p), dim=-1)
        noise = torch.empty(rows, vocab, device=logits.device).exponential_(1, generator=self.generator)
        if step.running is not None:
            noise = noise[step.running]
        chosen = sample_with_noise(probs, noise)
        if step.running is None:
            self._seen.scatter_(1, chosen[:, None], True)
        else:
            self._seen[step.running, chosen] = True
        return chosen


def make_code_sampler(
    *,
    repetition_penalty: float,
    temperature: float,
    top_p: float,
    top_k: int,
    start_token: int,
    generator: torch.Generator | None = None,
    cancel: Callable[[], bool] | None = None,
) -> CodeSampler:
    """A `next_code` for `UnifiedVoice.inference_codes` that samples like official TorToiSe (CodeSampler)."""
    return CodeSampler(
        repetition_penalty=repetition_penalty,
        temperature=temperature,
        top_p=top_p,
        top_k=top_k,
        start_token=start_token,
        generator=generator,
        cancel=cancel,
    )


def sample_codes(
    ar_model: torch.nn.Module,
    cond_latent: torch.Tensor,
    text_tokens: torch.Tensor,
    *,
    num_samples: int,
    batch_size: int,
    max_mel_tokens: int,
    repetition_penalty: float,
    temperature: float,
    top_p: float,
    top_k: int,
    use_kv_mel_offset: bool = True,
    retire_finished: bool = True,
    generator: torch.Generator | None = None,
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    check_every: int = 16,
) -> torch.Tensor:
    """Sample candidate code rows, batch by batch, as official `tts()` does.

    Like the official code, floor(num_samples / batch_size) batches of batch_size rows are drawn, unless
    num_samples < batch_size, in which case one batch of num_samples. The official code drops the
    remainder (20 samples with a batch of 16 gave 16); here one last, smaller batch draws it, so exactly
    num_samples rows come back. The rows of the full batches are unchanged by this.

    Args:
        ar_model: UnifiedVoice.
        cond_latent: (1, dim) AR conditioning latent.
        text_tokens: (1, T) text ids ending in one stop 0.
        retire_finished: drop finished rows from the cache at each host check (less work on the CPU).
            The codes and the random-number order are the official ones either way: finished rows are
            masked, and the sampler draws its noise for every row of the batch.
        progress: called as (done_batches, total_batches).
        check_every: decode steps between host reads (see `tortoise.models.decoding`).

    Returns:
        (samples, max_mel_tokens) int64 codes, right-padded with the stop code.
    """
    batch_size = max(1, min(batch_size, num_samples))
    sizes = [batch_size] * (num_samples // batch_size)
    if num_samples % batch_size:
        sizes.append(num_samples % batch_size)
    batches = len(sizes)
    next_code = make_code_sampler(
        repetition_penalty=repetition_penalty,
        temperature=temperature,
        top_p=top_p,
        top_k=top_k,
        start_token=ar_model.start_mel_token,
        generator=generator,
        cancel=cancel,
    )
    out = []
    for b, size in enumerate(sizes):
        chunk = None
        for chunk in ar_model.decode_codes(
            cond_latent,
            text_tokens,
            max_mel_tokens,
            num_return_sequences=size,
            use_kv_cache=True,
            use_kv_mel_offset=use_kv_mel_offset,
            next_code=next_code,
            retire_finished=retire_finished,
            check_every=check_every,
        ):
            pass
        out.append(chunk.codes)  # already (size, max_mel_tokens), stop-padded
        if progress is not None:
            progress(b + 1, batches)
    return torch.cat(out, dim=0)


def fix_autoregressive_output(
    codes: torch.Tensor, stop_token: int, calm_token: int = CALM_TOKEN
) -> torch.Tensor:
    """The official post-fix of sampled codes (returns a new tensor).

    In every row that contains the stop code, it and everything after it become the calm code; rows
    without one are left alone (with a warning). Then, as the official code does for every row, the
    last three positions get FIXED_TAIL (45, 45, 248). CLVP/CVVP can then read every code (< 8192).

    Args:
        codes: (rows, length) int64, length >= 3.
    """
    fixed = codes.clone()
    has_stop = (fixed == stop_token).any(dim=1)
    if not bool(has_stop.all()):
        warnings.warn(
            "A candidate never produced a stop token; its speech may be cut off. "
            "Try a shorter text or a larger max_mel_tokens.",
            stacklevel=2,
        )
    after_stop = (fixed == stop_token).long().cumsum(dim=1) > 0
    fixed[after_stop] = calm_token
    fixed[:, -3:] = torch.tensor(FIXED_TAIL, dtype=fixed.dtype, device=fixed.device)
    return fixed


def calm_trim_length(codes: torch.Tensor, breathing_room: int = 8, calm_token: int = CALM_TOKEN) -> int:
    """Where the official latent trim cuts a row: the index of the first calm code that makes the run of
    consecutive calm codes longer than `breathing_room` (the "pause size"); the full length otherwise.

    Args:
        codes: (length,) one fixed candidate row.
    """
    run = 0
    for i, code in enumerate(codes.tolist()):
        run = run + 1 if code == calm_token else 0
        if run > breathing_room:
            return i
    return codes.shape[0]
