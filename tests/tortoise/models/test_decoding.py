"""The sync-free decode loop (tortoise/models/decoding.py) against the per-step loop it replaced.

`reference_codes` below is the previous loop, kept here as the reference: it grew the codes with
torch.cat, read `finished` back on every step, retired finished rows right away, and sampled with
torch.multinomial over a gathered history.
"""

import copy

import pytest
import torch

from tortoise.models import load
from tortoise.models.decoding import DecodeChunk
from tortoise.sampling import PROMPT_FILLER_ID, make_code_sampler, process_logits

SAMPLING = {"repetition_penalty": 2.0, "temperature": 0.8, "top_p": 0.8, "top_k": 50}


@pytest.fixture(scope="module")
def gold(golden):
    return golden("autoregressive.pt")


@pytest.fixture(scope="module")
def model(gold):
    return load("autoregressive", gold["state_dict"], **gold["config"])


@pytest.fixture(scope="module")
def stopping_model(model):
    """The golden model with the stop code made likely, so rows finish at different steps."""
    biased = copy.deepcopy(model)
    with torch.no_grad():
        biased.mel_head.bias[biased.stop_mel_token] += 2.5
    return biased


def inputs(gold):
    return gold["inputs.generate.cond_latent"], gold["inputs.generate.text_tokens"]


@torch.no_grad()
def reference_codes(model, cond, text, max_length, rows, choose, retire):
    """The previous decode loop (KV cache, kv mel offset), verbatim in behaviour."""
    stop = model.stop_mel_token
    codes = torch.full((rows, 0), stop, dtype=torch.long)
    finished = torch.zeros(rows, dtype=torch.bool)
    running = torch.arange(rows)
    start = torch.full((rows, 1), model.start_mel_token, dtype=torch.long)
    prompt_cache = model.prefill_prompt(cond, text)
    cache = prompt_cache.expand(rows, capacity=prompt_cache.length + 1 + max_length)
    step_input = model.embed_mel(start, 0, True)
    for step in range(max_length):
        logits = model.next_mel_logits(step_input, cache)
        chosen = choose(logits, codes[running])
        new = torch.full((rows,), stop, dtype=torch.long)
        new[running] = torch.where(finished[running], stop, chosen)
        codes = torch.cat([codes, new[:, None]], dim=1)
        finished |= new == stop
        if bool(finished.all()) or step + 1 == max_length:
            break
        if retire and bool(finished[running].any()):
            keep = (~finished[running]).nonzero().squeeze(1)
            running = running[keep]
            cache.keep_rows(keep)
        step_input = model.embed_mel(codes[running, -1:], step + 1, True)
    return codes


def reference_sampler(start_token):
    """The previous make_code_sampler: multinomial over the processed scores of the whole history."""

    def next_code(logits, codes):
        prefix = torch.tensor([PROMPT_FILLER_ID, start_token]).expand(logits.shape[0], 2)
        scores = process_logits(logits.float(), torch.cat([prefix, codes], dim=1), **SAMPLING)
        return torch.multinomial(torch.softmax(scores, dim=-1), 1).squeeze(1)

    return next_code


def detour(model):
    """Greedy, except row r takes its (r+1)-th best code at step 1, so the rows differ."""

    def choose(logits, codes):
        nxt = logits.argmax(-1)
        if codes.shape[1] == 1:
            nxt = logits.topk(logits.shape[0], dim=-1).indices.diagonal()
        return nxt

    return choose


def test_greedy_decode_equals_the_previous_loop(model, gold):
    cond, text = inputs(gold)
    want = reference_codes(model, cond, text, 20, 1, lambda logits, codes: logits.argmax(-1), retire=False)
    for check_every in (1, 4, 16):
        got = model.inference_codes(cond, text, 20, check_every=check_every)
        assert got.tolist() == want.tolist()


@pytest.mark.parametrize("retire", [False, True])
@pytest.mark.parametrize("check_every", [1, 3, 16])
def test_detoured_rows_equal_the_previous_loop(stopping_model, gold, retire, check_every):
    cond, text = inputs(gold)
    model = stopping_model
    want = reference_codes(model, cond, text, 24, 4, detour(model), retire=True)
    got = model.inference_codes(
        cond, text, 24, num_return_sequences=4, next_code=detour(model), retire_finished=retire,
        check_every=check_every,
    )
    assert got.tolist() == want.tolist()
    assert (want == model.stop_mel_token).any(), "the test needs rows that finish"


def first_finish(codes, stop):
    is_stop = codes == stop
    return int(is_stop.int().argmax(dim=1)[is_stop.any(dim=1)].min())


def test_seeded_sampling_equals_the_previous_loop_in_the_official_order(stopping_model, gold):
    """Without retirement the previous loop drew from every row every step (the official order)."""
    cond, text = inputs(gold)
    model = stopping_model
    torch.manual_seed(11)
    want = reference_codes(model, cond, text, 30, 4, reference_sampler(model.start_mel_token), retire=False)
    for retire in (False, True):
        torch.manual_seed(11)
        sampler = make_code_sampler(start_token=model.start_mel_token, **SAMPLING)
        got = model.inference_codes(
            cond, text, 30, num_return_sequences=4, next_code=sampler, retire_finished=retire, check_every=5
        )
        assert got.tolist() == want.tolist()
    assert first_finish(want, model.stop_mel_token) < want.shape[1] - 2, "the test needs early stops"


def test_the_previous_retiring_loop_matches_only_until_a_row_finishes(stopping_model, gold):
    """Where the random-number order differs: the previous default retired rows at once and then
    drew noise for fewer rows, so from the step after the first finish its draws are shifted."""
    cond, text = inputs(gold)
    model = stopping_model
    torch.manual_seed(5)
    old = reference_codes(model, cond, text, 30, 4, reference_sampler(model.start_mel_token), retire=True)
    torch.manual_seed(5)
    sampler = make_code_sampler(start_token=model.start_mel_token, **SAMPLING)
    new = model.inference_codes(
        cond, text, 30, num_return_sequences=4, next_code=sampler, retire_finished=True
    )
    cut = first_finish(old, model.stop_mel_token) + 1
    assert old[:, :cut].tolist() == new[:, :cut].tolist()
    assert old.shape != new.shape or not torch.equal(old, new)


def test_sampler_reproduces_the_official_sampling_call(model, gold):
    kwargs = gold["inputs.sample.kwargs"]
    cond, text = inputs(gold)
    torch.manual_seed(gold["inputs.sample.seed"])
    sampler = make_code_sampler(
        repetition_penalty=kwargs["repetition_penalty"], temperature=kwargs["temperature"],
        top_p=kwargs["top_p"], top_k=50, start_token=model.start_mel_token,
    )
    codes = model.inference_codes(
        cond, text, kwargs["max_generate_length"], num_return_sequences=kwargs["num_return_sequences"],
        next_code=sampler,
    )
    assert codes.tolist() == gold["outputs.sample.codes"].tolist()


def test_chunks_come_at_every_check_and_end_when_all_rows_finish(stopping_model, gold):
    cond, text = inputs(gold)
    model = stopping_model
    chunks = list(model.decode_codes(cond, text, 40, num_return_sequences=3, next_code=detour(model),
                                     check_every=4))
    assert all(isinstance(c, DecodeChunk) for c in chunks)
    assert [c.length for c in chunks] == [4 * (i + 1) for i in range(len(chunks) - 1)] + [chunks[-1].length]
    assert [c.done for c in chunks] == [False] * (len(chunks) - 1) + [True]
    last = chunks[-1]
    assert all(last.finished) and last.codes.shape == (3, 40)
    trimmed = last.trimmed()
    assert trimmed.tolist() == model.inference_codes(
        cond, text, 40, num_return_sequences=3, next_code=detour(model)
    ).tolist()
    assert (last.codes[:, trimmed.shape[1]:] == model.stop_mel_token).all()


def test_zero_length_decode_returns_no_codes(model, gold):
    cond, text = inputs(gold)
    assert model.inference_codes(cond, text, 0, num_return_sequences=2).shape == (2, 0)


def test_a_consumer_between_chunks_is_not_left_in_inference_mode(stopping_model, gold):
    """Streaming code runs between chunks; the loop must not leave its inference mode switched on."""
    cond, text = inputs(gold)
    model = stopping_model
    chunks = model.decode_codes(cond, text, 12, num_return_sequences=2, next_code=detour(model),
                                min_new_tokens=12, check_every=2)
    first = next(chunks)
    assert not torch.is_inference_mode_enabled() and first.length == 2
    rest = list(chunks)
    assert rest[-1].done and not torch.is_inference_mode_enabled()
