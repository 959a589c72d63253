"""UnifiedVoice and its GPT-2 trunk against the official golden outputs, plus the static KV cache."""

import pytest
import torch

from tortoise.models import load
from tortoise.models.autoregressive import UnifiedVoice
from tortoise.models.gpt2 import KVCache

# golden/README.md: logits and latents atol 1e-4, losses 1e-5, greedy codes exact
ATOL = 1e-4
LOSS_ATOL = 1e-5
FILLER_ID = 1  # the official HF prompt is P filler ids then the start code


@pytest.fixture(scope="module")
def gold(golden):
    return golden("autoregressive.pt")


@pytest.fixture(scope="module")
def model(gold):
    return load("autoregressive", gold["state_dict"], **gold["config"])


def forward_inputs(gold):
    prefix = "inputs.forward."
    return {k[len(prefix) :]: v.clone() for k, v in gold.items() if k.startswith(prefix)}


def generate_inputs(gold):
    return gold["inputs.generate.cond_latent"], gold["inputs.generate.text_tokens"]


def test_conditioning_latent_averages_clips(model, gold):
    with torch.no_grad():
        latent = model.get_conditioning(gold["inputs.cond_mels"])
        latent_3d = model.get_conditioning(gold["inputs.cond_mels_3d"])
    torch.testing.assert_close(latent, gold["outputs.cond_latent"], atol=ATOL, rtol=ATOL)
    torch.testing.assert_close(latent_3d, gold["outputs.cond_latent_3d"], atol=ATOL, rtol=ATOL)


def test_training_forward_losses_and_logits(model, gold):
    inputs = forward_inputs(gold)
    codes_before = inputs["mel_codes"].clone()
    with torch.no_grad():
        loss_text, loss_mel, mel_logits = model(**inputs)
        aligned = model.align_inputs(
            inputs["text_inputs"], inputs["text_lengths"], inputs["mel_codes"], inputs["wav_lengths"]
        )
        cond = inputs["speech_conditioning_latent"]
        text_h, _ = model.hidden_states(cond, aligned.text_inputs, aligned.mel_inputs)
        text_logits = model.text_head(text_h).permute(0, 2, 1)
    torch.testing.assert_close(loss_text, gold["outputs.forward.loss_text"], atol=LOSS_ATOL, rtol=0)
    torch.testing.assert_close(loss_mel, gold["outputs.forward.loss_mel"], atol=LOSS_ATOL, rtol=0)
    torch.testing.assert_close(mel_logits, gold["outputs.forward.mel_logits"], atol=ATOL, rtol=ATOL)
    torch.testing.assert_close(text_logits, gold["outputs.forward.text_logits"], atol=ATOL, rtol=ATOL)
    assert torch.equal(inputs["mel_codes"], codes_before), "forward must not write into the caller's codes"


def test_mel_padding_and_alignment(model, gold):
    inputs = forward_inputs(gold)
    aligned = model.align_inputs(
        inputs["text_inputs"], inputs["text_lengths"], inputs["mel_codes"], inputs["wav_lengths"]
    )
    # row 1: 7668 samples -> 7 whole codes, one more kept, the rest become stop codes
    assert aligned.mel_inputs[1, 0] == 8192
    assert aligned.mel_inputs[1, 1:9].tolist() == inputs["mel_codes"][1, :8].tolist()
    assert (aligned.mel_inputs[1, 9:] == 8193).all()
    assert torch.equal(aligned.mel_targets[:, :-1], aligned.mel_inputs[:, 1:])
    assert aligned.text_inputs[:, 0].tolist() == [255, 255]
    assert aligned.text_targets[:, -2:].tolist() == [[0, 0], [0, 0]]


def test_training_forward_latent(model, gold):
    with torch.no_grad():
        latent = model(**forward_inputs(gold), return_latent=True)
    torch.testing.assert_close(latent, gold["outputs.forward.latent"], atol=ATOL, rtol=ATOL)


def test_api_latent_pass(model, gold):
    text = gold["inputs.api_latent.text_tokens"]
    codes = gold["outputs.api_latent.fixed_codes"]
    cond = gold["outputs.cond_latent"]
    with torch.no_grad():
        latent = model(
            cond.repeat(2, 1),
            text.repeat(2, 1),
            torch.tensor([text.shape[1]]),
            codes,
            torch.tensor([codes.shape[1] * 1024]),
            return_latent=True,
            clip_inputs=False,
        )
    torch.testing.assert_close(latent, gold["outputs.api_latent.latent"], atol=ATOL, rtol=ATOL)


@pytest.mark.parametrize("use_kv_cache", [True, False])
def test_greedy_codes_match_official(model, gold, use_kv_cache):
    cond, text = generate_inputs(gold)
    n = gold["inputs.generate.max_generate_length"]
    codes = model.inference_codes(
        cond, text, n, use_kv_cache=use_kv_cache, min_new_tokens=gold["inputs.generate.min_new_tokens"]
    )
    tag = str(use_kv_cache).lower()
    assert codes.tolist() == gold[f"outputs.generate.codes_kv_cache_{tag}"].tolist()
    if use_kv_cache:
        natural = model.inference_codes(cond, text, n, use_kv_cache=True)
        assert natural.tolist() == gold["outputs.generate.codes_natural_stop_kv_cache_true"].tolist()


@pytest.mark.parametrize("use_kv_cache", [True, False])
def test_step_logits_match_official(model, gold, use_kv_cache):
    cond, text = generate_inputs(gold)
    tag = str(use_kv_cache).lower()
    seen = []

    def record(logits, codes):
        seen.append(logits.clone())
        return logits.argmax(-1)

    model.inference_codes(cond, text, 16, use_kv_cache=use_kv_cache, next_code=record)
    got = torch.cat(seen)
    want = gold[f"outputs.generate.step_logits_kv_cache_{tag}"]
    torch.testing.assert_close(got[:4], want, atol=ATOL, rtol=ATOL)
    top = got.topk(8, dim=-1)
    want_top = gold[f"outputs.generate.step_top8_values_kv_cache_{tag}"]
    torch.testing.assert_close(top.values, want_top, atol=ATOL, rtol=0)
    assert torch.equal(top.indices, gold[f"outputs.generate.step_top8_indices_kv_cache_{tag}"])


@pytest.mark.parametrize("use_kv_mel_offset", [True, False])
def test_cached_decode_equals_full_recomputation(model, gold, use_kv_mel_offset):
    """The position convention, not the cache, decides the codes: each decodes alike with and without it."""
    cond, text = generate_inputs(gold)
    cached = model.inference_codes(cond, text, 16, use_kv_cache=True, use_kv_mel_offset=use_kv_mel_offset)
    full = model.inference_codes(cond, text, 16, use_kv_cache=False, use_kv_mel_offset=use_kv_mel_offset)
    assert torch.equal(cached, full)
    official = "true" if use_kv_mel_offset else "false"
    assert cached.tolist() == gold[f"outputs.generate.codes_kv_cache_{official}"].tolist()


def test_one_official_sampling_call(model, gold):
    from tortoise import sampling

    kwargs = gold["inputs.sample.kwargs"]
    cond, text = generate_inputs(gold)
    prompt_len = model.embed_prompt(cond, text).shape[1]
    # the ids HF saw before the codes: P filler ids, then the start code
    filler = torch.full((kwargs["num_return_sequences"], prompt_len + 1), FILLER_ID)
    filler[:, -1] = model.start_mel_token
    raw, processed = [], []

    def sample(logits, codes):
        history = torch.cat([filler, codes], dim=1)
        scores = sampling.process_logits(
            logits,
            history,
            repetition_penalty=kwargs["repetition_penalty"],
            temperature=kwargs["temperature"],
            top_p=kwargs["top_p"],
        )
        raw.append(logits.clone())
        processed.append(scores)
        return torch.multinomial(scores.softmax(dim=-1), 1).squeeze(1)

    torch.manual_seed(gold["inputs.sample.seed"])
    codes = model.inference_codes(
        cond,
        text,
        kwargs["max_generate_length"],
        num_return_sequences=kwargs["num_return_sequences"],
        use_kv_cache=kwargs["kv_cache"],
        next_code=sample,
    )
    assert codes.tolist() == gold["outputs.sample.codes"].tolist()
    assert torch.cat([filler, codes], dim=1).tolist() == gold["outputs.sample.full_sequences"].tolist()
    torch.testing.assert_close(torch.stack(raw), gold["outputs.sample.raw_step_logits"], atol=ATOL, rtol=ATOL)
    want = gold["outputs.sample.processed_step_scores"]
    got = torch.stack(processed)
    assert torch.equal(torch.isfinite(got), torch.isfinite(want))
    torch.testing.assert_close(got[torch.isfinite(want)], want[torch.isfinite(want)], atol=ATOL, rtol=ATOL)


# ---------------------------------------------------------------- static cache behaviour


def full_pass_logits(model, prompt, mel_codes, use_kv_mel_offset):
    """Mel logits at every mel position from one uncached pass. prompt (1, P, C); mel_codes (B, t)."""
    mel = model.embed_mel(mel_codes, 0, use_kv_mel_offset)
    h = model.gpt(torch.cat([prompt.expand(mel.shape[0], -1, -1), mel], dim=1))[:, prompt.shape[1] :]
    return model.mel_head(model.final_norm(h))


@torch.no_grad()
def test_multi_row_cache_with_retirement_matches_separate_rows(model, gold):
    cond, text = generate_inputs(gold)
    gen = torch.Generator().manual_seed(0)
    rows = torch.randint(0, 8192, (3, 6), generator=gen)
    rows[:, 0] = model.start_mel_token
    prompt = model.embed_prompt(cond, text)
    want = full_pass_logits(model, prompt, rows, use_kv_mel_offset=True)  # (3, 6, vocab)

    cache = model.prefill_prompt(cond, text).expand(3, capacity=prompt.shape[1] + 6)
    alive = torch.arange(3)
    for step in range(6):
        if step == 2:
            cache.keep_rows(torch.tensor([0, 2]))  # retire row 1
            alive = torch.tensor([0, 2])
        if step == 4:
            cache.keep_rows(torch.tensor([1]))  # of the rows [0, 2], keep the second: row 2
            alive = torch.tensor([2])
        step_embeds = model.embed_mel(rows[alive, step : step + 1], step, use_kv_mel_offset=True)
        logits = model.next_mel_logits(step_embeds, cache)
        torch.testing.assert_close(logits, want[alive, step], atol=1e-5, rtol=1e-5)
    assert cache.batch_size == 1 and cache.length == prompt.shape[1] + 6


@torch.no_grad()
def test_cache_chunk_after_prefill_uses_causal_mask(model, gold):
    """Several positions fed at once after the prompt see each other causally, as in a full pass."""
    cond, text = generate_inputs(gold)
    codes = torch.tensor([[8192, 5, 17, 4000, 9]])
    prompt = model.embed_prompt(cond, text)
    want = full_pass_logits(model, prompt, codes, use_kv_mel_offset=False)
    cache = model.prefill_prompt(cond, text, capacity=prompt.shape[1] + 8)
    h = model.gpt(model.embed_mel(codes[:, :3]), cache)
    torch.testing.assert_close(model.mel_head(model.final_norm(h)), want[:, :3], atol=1e-5, rtol=1e-5)
    tail = model.next_mel_logits(model.embed_mel(codes[:, 3:], first_index=3), cache)
    torch.testing.assert_close(tail, want[:, -1], atol=1e-5, rtol=1e-5)


def test_mel_position_conventions():
    assert UnifiedVoice.mel_positions(0, 5).tolist() == [0, 1, 2, 3, 4]
    assert UnifiedVoice.mel_positions(0, 5, use_kv_mel_offset=True).tolist() == [0, 2, 3, 4, 5]
    assert UnifiedVoice.mel_positions(3, 1, use_kv_mel_offset=True).tolist() == [4]


def test_cache_rejects_overflow_and_wrong_batch(model, gold):
    cond, text = generate_inputs(gold)
    cache = model.prefill_prompt(cond, text)
    with torch.no_grad(), pytest.raises(ValueError, match="positions"):
        model.next_mel_logits(model.embed_mel(torch.tensor([[8192]])), cache)
    big = cache.expand(2, capacity=cache.length + 1)
    with torch.no_grad(), pytest.raises(ValueError, match="rows"):
        model.next_mel_logits(model.embed_mel(torch.tensor([[8192]])), big)
    with pytest.raises(AssertionError):
        big.expand(4)


def test_expand_copies_the_prompt_once_into_independent_rows(model, gold):
    cond, text = generate_inputs(gold)
    prompt = model.prefill_prompt(cond, text)
    cache = prompt.expand(3, capacity=prompt.length + 4)
    assert isinstance(cache, KVCache) and cache.batch_size == 3 and cache.length == prompt.length
    filled = slice(0, prompt.length)
    assert torch.equal(cache.keys[:, 2, :, filled], prompt.keys[:, 0, :, filled])
    assert cache.keys.data_ptr() != prompt.keys.data_ptr()


@pytest.mark.parametrize("use_kv_cache", [True, False])
def test_retiring_finished_rows_keeps_the_others_unchanged(model, gold, use_kv_cache):
    """Row 1 takes the runner-up code at step 1 and stops at step 3; row 0 decodes greedily throughout."""
    cond, text = generate_inputs(gold)
    stop = model.stop_mel_token
    detour = []

    def choose(logits, codes):
        nxt = logits.argmax(-1)
        if codes.shape[1] == 1:
            nxt[1] = logits[1].topk(2).indices[1]
            detour.append(int(nxt[1]))
        elif codes.shape[1] == 3:
            nxt[codes[:, 1] == detour[-1]] = stop
        return nxt

    results = [
        model.inference_codes(
            cond, text, 8, num_return_sequences=2, use_kv_cache=use_kv_cache, next_code=choose,
            retire_finished=retire,
        )
        for retire in (False, True)
    ]
    assert torch.equal(results[0], results[1])
    codes = results[1]
    greedy = gold["outputs.generate.codes_kv_cache_" + ("true" if use_kv_cache else "false")]
    assert codes[0].tolist() == greedy[0, :8].tolist()
    assert codes[1, 1] == detour[-1] and (codes[1, 3:] == stop).all()


def test_positions_past_the_table_are_refused(model):
    rows = model.mel_pos_embedding.emb.num_embeddings  # 52 in the golden config
    model.embed_mel(torch.tensor([[5]]), first_index=rows - 2, use_kv_mel_offset=True)
    with pytest.raises(ValueError, match="mel position"):
        model.embed_mel(torch.tensor([[5]]), first_index=rows - 1, use_kv_mel_offset=True)


@torch.no_grad()
def test_half_precision_decode_runs():
    torch.manual_seed(0)
    tiny = UnifiedVoice(layers=2, model_dim=32, heads=4, max_text_tokens=20, max_mel_tokens=24)
    tiny = tiny.to(torch.bfloat16)
    cond = torch.randn(1, 32, dtype=torch.bfloat16)
    text = torch.tensor([[21, 22, 2, 0]])
    codes = tiny.inference_codes(cond, text, 8, num_return_sequences=2)
    assert codes.shape[0] == 2 and 1 <= codes.shape[1] <= 8
    cache = tiny.prefill_prompt(cond, text)
    assert cache.keys.dtype == torch.bfloat16
