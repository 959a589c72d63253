"""tortoise/sampling.py processors reproduce the HF 4.31 chain of official TorToiSe (golden processors.pt)."""

import pytest
import torch

from tortoise.errors import InvalidInputError, TortoiseError
from tortoise.sampling import (
    DEFAULT_TOP_K,
    apply_repetition_penalty,
    apply_temperature,
    apply_top_k,
    apply_top_p,
    process_logits,
)

# Finite values may differ by this much; which entries are -inf must match exactly (golden README).
ATOL = 1e-6
TOP_P = 0.8
# Golden case prefix -> (repetition penalty, temperature); "rep1_temp1" reruns a case's scores.
CASES = {
    "random": (2.0, 0.8),
    "ties_at_k": (2.0, 0.8),
    "top_p_boundary": (2.0, 0.8),
    "top_p_boundary.rep1_temp1": (1.0, 1.0),
}
STAGES = ("after_repetition", "after_temperature", "after_top_k", "after_top_p")


def source(case: str) -> str:
    return case.split(".")[0]


def stage_input(gold: dict, case: str, stage: str) -> torch.Tensor:
    """The golden scores a stage starts from, so that each stage is checked on its own."""
    index = STAGES.index(stage)
    if index == 0:
        return gold[f"{source(case)}.scores"]
    return gold[f"{case}.{STAGES[index - 1]}"]


def run_stage(gold: dict, case: str, stage: str) -> torch.Tensor:
    penalty, temperature = CASES[case]
    scores = stage_input(gold, case, stage)
    if stage == "after_repetition":
        return apply_repetition_penalty(scores, gold[f"{source(case)}.input_ids"], penalty)
    if stage == "after_temperature":
        return apply_temperature(scores, temperature)
    if stage == "after_top_k":
        return apply_top_k(scores)
    return apply_top_p(scores, TOP_P)


def assert_matches_golden(got: torch.Tensor, want: torch.Tensor) -> None:
    assert got.shape == want.shape and got.dtype == want.dtype
    kept = torch.isfinite(want)
    assert torch.equal(torch.isfinite(got), kept), "a different set of entries was removed"
    assert torch.equal(got[~kept], want[~kept]), "removed entries must be -inf"
    torch.testing.assert_close(got[kept], want[kept], atol=ATOL, rtol=0)


@pytest.fixture(scope="module")
def gold(golden):
    return golden("processors.pt")


def test_golden_file_has_exactly_these_cases(gold):
    stored = {key.rsplit(".", 1)[0] for key in gold if key.endswith(STAGES)}
    assert stored == set(CASES)


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("case", sorted(CASES))
def test_each_stage_matches_golden(gold, case, stage):
    assert_matches_golden(run_stage(gold, case, stage), gold[f"{case}.{stage}"])


@pytest.mark.parametrize("case", sorted(CASES))
def test_chain_matches_golden(gold, case):
    penalty, temperature = CASES[case]
    got = process_logits(
        gold[f"{source(case)}.scores"],
        gold[f"{source(case)}.input_ids"],
        repetition_penalty=penalty,
        temperature=temperature,
        top_p=TOP_P,
    )
    assert_matches_golden(got, gold[f"{case}.after_top_p"])


def test_edge_cases_pin_what_the_readme_describes(gold):
    # Ties straddle the 50th value: all 70 survive top-k.
    assert torch.isfinite(apply_top_k(gold["ties_at_k.after_temperature"])).sum(-1).tolist() == [70, 70]
    # Cumulative probability lands exactly on 1 - top_p: that token is removed, 3 survive.
    kept = torch.isfinite(apply_top_p(gold["top_p_boundary.rep1_temp1.after_top_k"], TOP_P))
    assert kept.sum().item() == 3


def test_processors_do_not_modify_their_inputs(gold):
    scores = gold["random.scores"]
    ids = gold["random.input_ids"]
    before = scores.clone()
    process_logits(scores, ids, repetition_penalty=2.0, temperature=0.8, top_p=TOP_P)
    assert torch.equal(scores, before)


def test_repetition_penalty_counts_each_id_once_and_keeps_sign():
    logits = torch.tensor([[2.0, -2.0, 1.0, 4.0]])
    once = apply_repetition_penalty(logits, torch.tensor([[0, 1]]), 2.0)
    many = apply_repetition_penalty(logits, torch.tensor([[0, 1, 0, 0, 1]]), 2.0)
    assert torch.equal(once, torch.tensor([[1.0, -4.0, 1.0, 4.0]]))
    assert torch.equal(many, once)


def test_rows_are_processed_independently():
    torch.manual_seed(0)
    logits = torch.randn(3, 300)
    ids = torch.randint(0, 300, (3, 7))
    batch = process_logits(logits, ids, repetition_penalty=2.0, temperature=0.8, top_p=TOP_P)
    for row in range(3):
        alone = process_logits(
            logits[row : row + 1], ids[row : row + 1], repetition_penalty=2.0, temperature=0.8, top_p=TOP_P
        )
        assert torch.equal(batch[row : row + 1], alone)


def test_top_k_default_is_hf_default():
    assert DEFAULT_TOP_K == 50
    logits = torch.arange(100, dtype=torch.float32).unsqueeze(0)
    assert torch.isfinite(apply_top_k(logits)).sum().item() == 50
    assert torch.isfinite(apply_top_k(logits, 5))[0, -5:].all()
    assert torch.equal(apply_top_k(logits, 0), logits)
    assert torch.isfinite(apply_top_k(logits, 1000)).all()


def test_top_p_keeps_the_top_token_and_one_disables_it():
    logits = torch.tensor([[0.0, 1.0, 10.0]])
    assert torch.isfinite(apply_top_p(logits, 0.0)).tolist() == [[False, False, True]]
    assert torch.equal(apply_top_p(logits, 1.0), logits)


@pytest.mark.parametrize(
    "call",
    [
        lambda x, ids: apply_repetition_penalty(x, ids, 0.0),
        lambda x, ids: apply_temperature(x, 0.0),
        lambda x, ids: apply_temperature(x, -1.0),
        lambda x, ids: apply_top_k(x, -1),
        lambda x, ids: apply_top_p(x, 1.5),
        lambda x, ids: apply_top_p(x, -0.1),
    ],
    ids=["penalty0", "temperature0", "temperature-1", "top_k-1", "top_p1.5", "top_p-0.1"],
)
def test_bad_settings_raise(call):
    with pytest.raises(InvalidInputError) as info:
        call(torch.zeros(1, 4), torch.zeros(1, 2, dtype=torch.long))
    assert isinstance(info.value, TortoiseError)


def test_sample_codes_draws_the_remainder_instead_of_dropping_it(tiny_models):
    from tortoise.sampling import sample_codes

    ar = tiny_models.autoregressive
    batches = []
    knobs = dict(max_mel_tokens=6, repetition_penalty=2.0, temperature=0.8, top_p=0.8, top_k=50)
    cond = torch.randn(1, ar.model_dim, generator=torch.Generator().manual_seed(0))
    text = torch.tensor([[5, 6, 7, 0]])
    torch.manual_seed(1)
    codes = sample_codes(ar, cond, text, num_samples=5, batch_size=2,
                         progress=lambda done, total: batches.append((done, total)), **knobs)  # fmt: skip
    assert codes.shape == (5, 6)  # 2 + 2 + the remaining 1; the official code returned 4
    assert batches == [(1, 3), (2, 3), (3, 3)]
    torch.manual_seed(1)
    even = sample_codes(ar, cond, text, num_samples=4, batch_size=2, **knobs)
    torch.testing.assert_close(codes[:4], even)  # the full batches are unchanged by the extra one
