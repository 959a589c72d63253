"""The AR decode loop: static shapes, finished rows masked, and one host read every few steps.

`decode_codes` is a generator: it yields a `DecodeChunk` each time it looks at the host (every
`check_every` steps and at the end), so progress, cancelling and streaming sit on it without adding
reads of their own. Between those points nothing is read back from the device: the codes buffer is
preallocated, finished rows keep being decoded and are masked to the stop code, and the sampler (see
`tortoise.sampling.CodeSampler`) works on device tensors only.

How a step's logits are computed is the `steps` object's business: `EagerSteps` here (the CPU path and
the reference), or the graph-captured steps of `tortoise.models.ar_graphs` on CUDA.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import torch

DEFAULT_CHECK_EVERY = 16


@dataclass(frozen=True)
class DecodeStep:
    """What a code chooser sees at one step.

    Attributes:
        index: the code being chosen (0 = the first code after the start token).
        rows: rows of the whole batch (finished and retired ones included).
        running: indices of the rows whose logits are passed, in logits order; None means all rows.
        codes: the (rows, max_length) codes buffer; columns [:index] are filled.
    """

    index: int
    rows: int
    running: torch.Tensor | None
    codes: torch.Tensor

    def history(self) -> torch.Tensor:
        """(running rows, index) codes chosen so far."""
        so_far = self.codes[:, : self.index]
        return so_far if self.running is None else so_far[self.running]


@dataclass(frozen=True)
class DecodeChunk:
    """Yielded at every host check.

    Attributes:
        length: columns of `codes` decoded so far.
        codes: (rows, max_length) buffer; columns [:length] are decoded, finished rows hold stop codes
            from their stop on, the rest is the stop code.
        finished: per row, whether it has emitted the stop code (read from the device at this check).
        done: the last chunk (every row finished, or max_length reached).
    """

    length: int
    codes: torch.Tensor
    finished: list[bool]
    done: bool
    stop_token: int

    def trimmed(self) -> torch.Tensor:
        """The codes up to the step where the last row finished (all `length` columns if one never did).

        This is what a loop that stops as soon as every row has finished returns (one host read).
        """
        if not all(self.finished):
            return self.codes[:, : self.length].clone()
        is_stop = self.codes[:, : self.length] == self.stop_token
        first_stop = is_stop.int().argmax(dim=1)  # every row has one
        return self.codes[:, : int(first_stop.max()) + 1].clone()


class Steps(Protocol):
    """Computes the logits of each step; `keep_rows` exists where rows can be retired."""

    can_retire: bool

    def logits(self, index: int, last: torch.Tensor | None, step: DecodeStep) -> torch.Tensor: ...

    def keep_rows(self, positions: torch.Tensor) -> None: ...


class EagerSteps:
    """Step logits through the model's modules, one call per step (any device).

    With the KV cache the prompt is prefilled once at batch 1 and copied to every row; without it,
    every step re-runs the whole sequence (the official kv_cache=False path).
    """

    can_retire = True

    def __init__(self, model: Any, cond_latent, text_tokens, rows, max_length, use_kv_cache, mel_offset):
        self.model = model
        self.use_kv_cache = use_kv_cache
        self.mel_offset = mel_offset
        self.start = torch.full((rows, 1), model.start_mel_token, dtype=torch.long, device=cond_latent.device)
        if use_kv_cache:
            prompt_cache = model.prefill_prompt(cond_latent, text_tokens)
            self.cache = prompt_cache.expand(rows, capacity=prompt_cache.length + 1 + max_length)
        else:
            self.prompt = model.embed_prompt(cond_latent, text_tokens)

    def logits(self, index: int, last: torch.Tensor | None, step: DecodeStep) -> torch.Tensor:
        model = self.model
        if self.use_kv_cache:
            codes = self.start[: self.cache.batch_size] if last is None else last[:, None]
            self.latent = model.next_mel_latent(model.embed_mel(codes, index, self.mel_offset), self.cache)
        else:
            history = step.history()
            start = self.start[: history.shape[0]]
            mel = model.embed_mel(torch.cat([start, history], dim=1), 0, self.mel_offset)
            prompt = self.prompt.expand(history.shape[0], -1, -1)
            self.latent = model.next_mel_latent(torch.cat([prompt, mel], dim=1))
        return model.mel_head(self.latent)  # the latent stays for a streaming `on_step`

    def keep_rows(self, positions: torch.Tensor) -> None:
        if self.use_kv_cache:
            self.cache.keep_rows(positions)


NextCode = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _choose(next_code: Any, logits: torch.Tensor, step: DecodeStep) -> torch.Tensor:
    if next_code is None:
        return logits.argmax(dim=-1)
    if hasattr(next_code, "choose_step"):
        return next_code.choose_step(logits, step)
    return next_code(logits, step.history())


def decode_codes(
    model: Any,
    steps: Steps,
    rows: int,
    max_length: int,
    *,
    device: torch.device,
    next_code: Any = None,
    min_new_tokens: int = 0,
    retire_finished: bool = False,
    check_every: int = DEFAULT_CHECK_EVERY,
    on_step: Callable[[torch.Tensor, torch.Tensor], None] | None = None,
) -> Iterator[DecodeChunk]:
    """Decode up to `max_length` codes for `rows` rows, yielding a DecodeChunk at every host check.

    Args:
        model: the UnifiedVoice (its stop and start codes).
        steps: computes each step's logits (EagerSteps, or graph-captured steps).
        next_code: None (greedy), a chooser with `choose_step(logits, DecodeStep)`, or a function
            `(logits (running, vocab), codes so far (running, n)) -> (running,)`.
        min_new_tokens: the stop code's logit is -inf for the first this many steps.
        retire_finished: at each check, drop finished rows from later steps (where `steps` can).
            Finished rows are masked either way, so the codes are the same; a chooser that draws for
            every row (CodeSampler) keeps the same random-number order too.
        check_every: steps between host checks (the only device reads of the loop).
        on_step: streaming hook, called after every step with that step's codes (rows,) and the latents
            the steps computed for them (`steps.latent`, EagerSteps only). It must not read the device
            if the loop is to stay sync-free.
    """
    stop = model.stop_mel_token
    check_every = max(1, int(check_every))
    with torch.inference_mode():  # entered per stretch of steps, never held across a yield
        codes = torch.full((rows, max_length), stop, dtype=torch.long, device=device)
        finished = torch.zeros(rows, dtype=torch.bool, device=device)
    state = _LoopState(running_rows=list(range(rows)))
    length = 0
    while length < max_length:
        with torch.inference_mode():
            length = _run_steps(model, steps, state, codes, finished, length, max_length, check_every,
                                next_code, min_new_tokens, on_step)
            flags = finished.tolist()  # the loop's one host read per check
        done = all(flags) or length == max_length
        yield DecodeChunk(length, codes, flags, done, stop)
        if done:
            return
        if retire_finished and steps.can_retire and any(flags[r] for r in state.running_rows):
            with torch.inference_mode():
                state.retire(flags, steps, device)


@dataclass
class _LoopState:
    running_rows: list[int]  # rows still decoded, in the order of the logits
    running: torch.Tensor | None = None  # the same on the device; None while every row runs
    last: torch.Tensor | None = None  # the codes written at the previous step, running rows

    def retire(self, flags: list[bool], steps: Steps, device: torch.device) -> None:
        keep = [i for i, r in enumerate(self.running_rows) if not flags[r]]
        self.running_rows = [self.running_rows[i] for i in keep]
        positions = torch.tensor(keep, dtype=torch.long, device=device)
        steps.keep_rows(positions)
        self.last = self.last[positions]
        self.running = torch.tensor(self.running_rows, dtype=torch.long, device=device)


def _run_steps(model, steps, state, codes, finished, length, max_length, check_every, next_code,
               min_new_tokens, on_step=None) -> int:
    """Decode from column `length` up to the next check; returns the new length. No host reads."""
    stop = model.stop_mel_token
    rows = codes.shape[0]
    for index in range(length, max_length):
        running = state.running
        step = DecodeStep(index, rows, running, codes)
        logits = steps.logits(index, state.last, step)
        if index < min_new_tokens:
            logits[:, stop] = -float("inf")
        chosen = _choose(next_code, logits, step).to(codes.device)
        if running is None:
            last = torch.where(finished, stop, chosen)
            codes[:, index] = last
            finished |= last == stop
        else:
            last = torch.where(finished[running], stop, chosen)
            codes[running, index] = last
            finished[running] = finished[running] | (last == stop)
        state.last = last
        if on_step is not None:
            on_step(codes[:, index], steps.latent)
        if (index + 1) % check_every == 0:
            return index + 1
    return max_length
