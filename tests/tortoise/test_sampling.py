"""tortoise/sampling.py: the device-side code sampler and sample_codes' host reads."""

import pytest
import torch

from tortoise.models.autoregressive import UnifiedVoice
from tortoise.sampling import (
    apply_repetition_penalty,
    apply_repetition_penalty_seen,
    sample_codes,
    sample_with_noise,
)

SAMPLING = {"repetition_penalty": 2.0, "temperature": 0.8, "top_p": 0.8, "top_k": 50}


@pytest.fixture(scope="module")
def tiny():
    """A random UnifiedVoice that never emits the stop code, so a decode runs its full length."""
    torch.manual_seed(0)
    model = UnifiedVoice(layers=2, model_dim=32, heads=4, max_text_tokens=20, max_mel_tokens=80).eval()
    with torch.no_grad():
        model.mel_head.bias[model.stop_mel_token] = -1e4
    return model


class HostReads:
    """Counts Tensor.__bool__, .item() and .tolist() calls (the ways a loop reads the device)."""

    def __init__(self, monkeypatch):
        self.count = 0
        for name in ("__bool__", "item", "tolist"):
            original = getattr(torch.Tensor, name)
            monkeypatch.setattr(torch.Tensor, name, self._counting(original))

    def _counting(self, original):
        def wrapper(tensor, *args, **kwargs):
            self.count += 1
            return original(tensor, *args, **kwargs)

        return wrapper


def test_sampling_64_codes_reads_the_host_at_most_once_per_4_steps(tiny, monkeypatch):
    steps = []
    hook = tiny.gpt.register_forward_hook(lambda module, args, out: steps.append(out.shape[1]))
    cond = torch.randn(1, 32)
    text = torch.tensor([[21, 22, 2, 0]])
    try:
        reads = HostReads(monkeypatch)
        codes = sample_codes(
            tiny, cond, text, num_samples=4, batch_size=4, max_mel_tokens=64, generator=None, **SAMPLING
        )
        monkeypatch.undo()
    finally:
        hook.remove()
    decode_steps = sum(1 for length in steps if length == 1)
    assert codes.shape == (4, 64) and decode_steps == 64
    assert 0 < reads.count <= decode_steps / 4, f"{reads.count} host reads in {decode_steps} steps"


def test_seen_mask_penalty_is_bit_identical_to_the_history_form():
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(3, 50, generator=gen) * 4
    history = torch.randint(0, 50, (3, 12), generator=gen)
    seen = torch.zeros(3, 50, dtype=torch.bool).scatter_(1, history, True)
    want = apply_repetition_penalty(logits, history, 2.0)
    assert torch.equal(apply_repetition_penalty_seen(logits, seen, 2.0), want)


def test_noise_sampling_draws_what_multinomial_draws():
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(6, 8194, generator=gen) * 3
    logits[3, 100:] = -float("inf")
    probs = logits.softmax(-1)
    for seed in range(20):
        want = torch.multinomial(probs, 1, generator=torch.Generator().manual_seed(seed)).squeeze(1)
        noise = torch.empty_like(probs).exponential_(1, generator=torch.Generator().manual_seed(seed))
        assert torch.equal(sample_with_noise(probs, noise), want)
