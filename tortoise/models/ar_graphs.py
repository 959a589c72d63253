"""CUDA-graph decode steps for UnifiedVoice, behind one switch: `UnifiedVoice.cuda_graphs`.

A decode step is one embedding lookup, the GPT on one new position per row, and the mel head: some 450
small kernels, and on a GPU their launches cost far more than their work. Here the step is written with
static shapes (`GPT2.static_step`: the write position is a device tensor, attention covers a fixed
window of the cache with the later positions masked) and captured once per loaded model, batch size and
window (multiples of WINDOW positions); a decode then replays one graph per step.

Everything except the capture itself also runs on the CPU (the static step called directly), which is
how the tests cover this path on machines without a GPU. Any failure while capturing (out of memory
included) logs a note and falls back to eager decoding; moving, converting or dropping the model makes
the graphs stale, and they are released and captured again on the next decode.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import torch

from tortoise.models.decoding import DecodeStep
from tortoise.models.gpt2 import KVCache

log = logging.getLogger(__name__)

WINDOW = 128  # attention windows are multiples of this many cache positions
MAX_BATCH_SIZES = 2  # batch sizes kept captured at once (each holds its own full-size cache)


@dataclass
class RowState:
    """The static buffers of one batch size; every graph of that size reads and writes these."""

    cache: KVCache
    last: torch.Tensor  # (rows,) int64: the codes fed at this step
    position: torch.Tensor  # (1,) int64: cache position written at this step
    mel_position: torch.Tensor  # (1,) int64: mel position-table index of this step
    logits: torch.Tensor  # (rows, vocab): the step's output
    graphs: dict[int, Any] = field(default_factory=dict)  # window -> torch.cuda.CUDAGraph


def capacity_of(model: Any) -> int:
    """Cache positions the graph path allocates: the longest prompt plus the longest decode, rounded up
    to whole windows (aligned attention masks suit the fused kernels)."""
    positions = (model.max_text_tokens + 3) + (model.max_mel_tokens + 2)
    return -(-positions // WINDOW) * WINDOW


def _fingerprint(model: Any) -> tuple:
    weight = model.mel_head.weight
    return (weight.device, weight.dtype, weight.data_ptr(), model.gpt.h[0].attn.c_attn.weight.data_ptr())


def _static_step(model: Any, state: RowState, window: int) -> None:
    """One decode step on the static buffers; advances both positions on the device."""
    x = model.mel_embedding(state.last[:, None]) + model.mel_pos_embedding(state.mel_position)[None]
    h = model.gpt.static_step(x, state.cache, state.position, window)[:, -1]
    state.logits.copy_(model.mel_head(model.final_norm(h)))
    state.position.add_(1)
    state.mel_position.add_(1)


class GraphRunner:
    """The captured steps of one model (kept on it as `_graph_runner`)."""

    def __init__(self, model: Any):
        self.model = model
        self.fingerprint = _fingerprint(model)
        self.capture = model.mel_head.weight.device.type == "cuda"
        self.capacity = capacity_of(model)
        self.states: OrderedDict[int, RowState] = OrderedDict()
        self.pool: Any = None
        self.capture_seconds = 0.0

    def windows(self) -> list[int]:
        return sorted({min(self.capacity, w) for w in range(WINDOW, self.capacity + WINDOW, WINDOW)})

    def window_for(self, position: int) -> int:
        return next(w for w in self.windows() if w > position)

    def state_for(self, rows: int) -> RowState:
        """The buffers (and, on CUDA, the graphs of every window) for `rows`, made on first use."""
        if rows in self.states:
            self.states.move_to_end(rows)
            return self.states[rows]
        while len(self.states) >= MAX_BATCH_SIZES:
            self.states.popitem(last=False)
        model = self.model
        weight = model.mel_head.weight
        device, dtype = weight.device, weight.dtype
        cache = model.new_cache(rows, self.capacity, device=device, dtype=dtype)
        cache.keys.zero_()  # masked positions must hold finite values: 0 * NaN would poison the sum
        cache.values.zero_()
        state = RowState(
            cache=cache,
            last=torch.full((rows,), model.start_mel_token, dtype=torch.long, device=device),
            position=torch.zeros(1, dtype=torch.long, device=device),
            mel_position=torch.zeros(1, dtype=torch.long, device=device),
            logits=torch.empty(rows, model.number_mel_codes, dtype=dtype, device=device),
        )
        if self.capture:
            started = time.perf_counter()
            for i, window in enumerate(self.windows()):
                state.graphs[window] = self._capture(state, window, warm_up_steps=2 if i == 0 else 1)
            self.capture_seconds += time.perf_counter() - started
            log.info("captured %d decode graphs for %d rows in %.2f s", len(state.graphs), rows,
                     time.perf_counter() - started)
        self.states[rows] = state
        return state

    def _capture(self, state: RowState, window: int, warm_up_steps: int = 1) -> Any:
        state.position.zero_()  # warm-up writes land at the start of the cache, before any prompt
        state.mel_position.zero_()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(warm_up_steps):
                _static_step(self.model, state, window)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            _static_step(self.model, state, window)
        self.pool = graph.pool()
        return graph

    def run(self, state: RowState, window: int) -> None:
        graph = state.graphs.get(window)
        if graph is None:
            _static_step(self.model, state, window)
        else:
            graph.replay()

    def __deepcopy__(self, memo: dict) -> None:
        return None  # a copied model captures its own graphs (CUDA graphs cannot be copied)

    def release(self) -> None:
        for state in self.states.values():
            state.graphs.clear()
        self.states.clear()
        self.pool = None


class GraphSteps:
    """`Steps` for `decode_codes` over a RowState: the prompt and the start token eagerly, then one
    replay per step. Rows are masked, never retired (the graphs have a fixed batch)."""

    can_retire = False

    def __init__(self, runner: GraphRunner, state: RowState, cond_latent, text_tokens, mel_offset: bool):
        model = runner.model
        self.runner, self.state, self.model, self.mel_offset = runner, state, model, mel_offset
        prompt = model.prefill_prompt(cond_latent, text_tokens)
        n = prompt.length
        state.cache.keys[:, :, :, :n] = prompt.keys[:, :, :, :n]
        state.cache.values[:, :, :, :n] = prompt.values[:, :, :, :n]
        state.cache.length = n
        self.prompt_length = n

    def logits(self, index: int, last: torch.Tensor | None, step: DecodeStep) -> torch.Tensor:
        model, state = self.model, self.state
        if index == 0:
            start = torch.full_like(state.last, model.start_mel_token)[:, None]
            logits = model.next_mel_logits(model.embed_mel(start, 0, self.mel_offset), state.cache)
            state.position.fill_(self.prompt_length + 1)
            state.mel_position.fill_(2 if self.mel_offset else 1)  # see UnifiedVoice.mel_positions
            return logits
        state.last.copy_(last)
        self.runner.run(state, self.runner.window_for(self.prompt_length + index))
        return state.logits

    def keep_rows(self, positions: torch.Tensor) -> None:
        raise NotImplementedError("graph-captured decoding masks finished rows; it cannot retire them")


def graph_runner(model: Any) -> GraphRunner:
    """The model's runner; a stale one (weights moved or converted since capture) is released first."""
    runner = getattr(model, "_graph_runner", None)
    if runner is not None and runner.fingerprint != _fingerprint(model):
        runner.release()
        runner = None
    if runner is None:
        runner = GraphRunner(model)
        model._graph_runner = runner
    return runner


def release_graphs(model: Any) -> None:
    """Drop the model's graphs and static buffers (before unloading, moving or converting it)."""
    runner = getattr(model, "_graph_runner", None)
    if runner is not None:
        runner.release()
        model._graph_runner = None


def graph_steps(model: Any, cond_latent, text_tokens, rows: int, max_length: int, mel_offset: bool):
    """GraphSteps for one decode, or None (eager decoding) when this decode cannot use graphs.

    None when the decode is longer than the static cache, or when capturing failed (logged once;
    graphs stay off for this model until it is reloaded).
    """
    if getattr(model, "_graphs_failed", False):
        return None
    runner = graph_runner(model)
    prompt_length = text_tokens.shape[1] + 3
    if prompt_length + max_length + 1 > runner.capacity:
        return None
    last = max_length - 1
    model.mel_pos_embedding.check_range(last + 1 if mel_offset and last > 0 else last, "mel")
    try:
        state = runner.state_for(rows)
    except Exception as error:  # out of memory or an unsupported op while capturing: decode eagerly
        log.warning("CUDA graph capture failed (%s); decoding without graphs", error)
        release_graphs(model)
        model._graphs_failed = True
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return None
    return GraphSteps(runner, state, cond_latent, text_tokens, mel_offset)
