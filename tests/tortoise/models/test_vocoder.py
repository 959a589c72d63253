"""UnivNetGenerator against the official golden outputs; weight-norm folding; the LVC against a plain loop."""

import json

import pytest
import torch

from tortoise.models import build, load
from tortoise.models.vocoder import location_variable_conv

ATOL = 1e-5  # golden/README.md: vocoder atol 1e-5 (measured float32 floor 1.3e-6)


@pytest.fixture(scope="module")
def gold(golden):
    return golden("vocoder.pt")


@pytest.fixture(scope="module")
def weight_norm_model(gold):
    """The tiny golden vocoder with weight norm still active (as trained)."""
    model = build("vocoder", **gold["config"])
    model.load_state_dict(gold["state_dict"], strict=True)
    return model


@pytest.fixture(scope="module")
def folded_model(gold):
    """The tiny golden vocoder as `load` returns it: weight norm folded."""
    return load("vocoder", gold["state_dict"], **gold["config"])


def assert_close(got, want, atol=ATOL):
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, atol=atol, rtol=0)


@torch.no_grad()
def test_forward_with_weight_norm_matches_golden(weight_norm_model, gold):
    out = weight_norm_model(gold["inputs.mel_padded"], gold["inputs.z"])
    assert_close(out, gold["outputs.forward_weight_norm"])


@torch.no_grad()
def test_forward_after_folding_matches_golden(folded_model, gold):
    out = folded_model(gold["inputs.mel_padded"], gold["inputs.z"])
    assert_close(out, gold["outputs.forward_after_remove_weight_norm"])


@torch.no_grad()
def test_folding_leaves_the_output_unchanged(weight_norm_model, folded_model, gold):
    args = gold["inputs.mel_padded"], gold["inputs.z"]
    assert_close(folded_model(*args), weight_norm_model(*args), atol=1e-6)


def test_load_folds_weight_norm(folded_model, gold):
    keys = set(folded_model.state_dict())
    assert not any(k.endswith(("weight_g", "weight_v")) for k in keys)
    expected = {k.removesuffix("_g") for k in gold["state_dict"] if not k.endswith("weight_v")}
    assert keys == expected


def test_prepare_for_inference_is_idempotent(folded_model, gold):
    before = {k: v.clone() for k, v in folded_model.state_dict().items()}
    folded_model.prepare_for_inference()
    after = folded_model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_inference_with_given_noise_matches_golden(folded_model, gold):
    audio = folded_model.inference(gold["inputs.mel"], noise=gold["inputs.z"])
    assert_close(audio, gold["outputs.inference"])


def test_inference_draws_noise_from_the_global_cpu_generator(folded_model, gold):
    torch.manual_seed(gold["inputs.inference_seeded.seed"])
    audio = folded_model.inference(gold["inputs.mel"])
    assert_close(audio, gold["outputs.inference_seeded"])


def test_inference_with_own_generator_leaves_global_rng_alone(folded_model, gold):
    torch.manual_seed(0)
    expected_next = torch.rand(1)
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(gold["inputs.inference_seeded.seed"])
    audio = folded_model.inference(gold["inputs.mel"], generator=generator)
    assert_close(audio, gold["outputs.inference_seeded"])
    assert torch.equal(torch.rand(1), expected_next)


def test_recorded_seeded_noise_is_a_plain_randn_draw(gold):
    torch.manual_seed(gold["inputs.inference_seeded.seed"])
    z = gold["inputs.inference_seeded.z_drawn"]
    assert torch.equal(torch.randn(z.shape), z)


def test_inference_rejects_noise_of_the_wrong_length(folded_model, gold):
    with pytest.raises(ValueError, match="noise must have shape"):
        folded_model.inference(gold["inputs.mel"], noise=gold["inputs.z"][:, :, :-1])


@torch.no_grad()
def test_batch_rows_are_independent(folded_model, gold):
    mel = torch.cat([gold["inputs.mel_padded"], gold["inputs.mel_padded"].flip(-1)])
    z = torch.cat([gold["inputs.z"], gold["inputs.z"].flip(-1)])
    batched = folded_model(mel, z)
    assert batched.shape == (2, 1, 256 * mel.shape[-1])
    for row in range(2):
        assert_close(batched[row : row + 1], folded_model(mel[row : row + 1], z[row : row + 1]))


def test_load_accepts_the_model_g_nesting(gold, folded_model):
    nested = load("vocoder", {"model_g": gold["state_dict"]}, **gold["config"])
    ours, theirs = nested.state_dict(), folded_model.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_full_size_folded_state_dict_matches_manifest(reference_dir):
    manifest = json.loads((reference_dir / "manifests" / "vocoder_after_remove_weight_norm.json").read_text())
    with torch.device("meta"):
        model = build("vocoder")
        model.prepare_for_inference()
    assert {k: list(v.shape) for k, v in model.state_dict().items()} == manifest["state_dict"]


def naive_location_variable_conv(x, kernels, bias, hop_length):
    """Spec formula, one output sample at a time: zero padding 1 over the whole signal, taps not flipped,
    the kernel of the frame the output sample falls in."""
    batch, _, length = x.shape
    out_channels, taps = kernels.shape[2], kernels.shape[3]
    padded = torch.nn.functional.pad(x, (1, 1))
    out = torch.empty(batch, out_channels, length, dtype=torch.float64)
    for n in range(length):
        frame = n // hop_length
        window = padded[:, :, n : n + taps]  # (batch, in, taps)
        out[:, :, n] = torch.einsum("bik,biok->bo", window, kernels[..., frame]) + bias[..., frame]
    return out


def test_location_variable_conv_matches_the_per_sample_formula():
    gen = torch.Generator().manual_seed(0)
    batch, in_ch, out_ch, frames, hop = 2, 3, 6, 4, 5
    x = torch.randn(batch, in_ch, frames * hop, generator=gen, dtype=torch.float64)
    kernels = torch.randn(batch, in_ch, out_ch, 3, frames, generator=gen, dtype=torch.float64)
    bias = torch.randn(batch, out_ch, frames, generator=gen, dtype=torch.float64)
    got = location_variable_conv(x, kernels, bias, hop)
    torch.testing.assert_close(got, naive_location_variable_conv(x, kernels, bias, hop), atol=1e-12, rtol=0)
