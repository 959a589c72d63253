"""HifiganGenerator (the fast mode's decoder) against the official golden outputs, the manifest, weight-norm
folding, and the windowed stretch of latents against the whole one."""

import json

import pytest
import torch
import torch.nn.functional as F

from tortoise.models import build, load
from tortoise.models.hifigan import RATE_STRETCH, frames_for_latents, interpolate_range

ATOL = 1e-5


@pytest.fixture(scope="module")
def gold(golden):
    return golden("hifigan.pt")


@pytest.fixture(scope="module")
def weight_norm_model(gold):
    model = build("hifidecoder", **gold["config"])
    model.load_state_dict(gold["state_dict"], strict=True)
    return model


@pytest.fixture(scope="module")
def folded_model(gold):
    return load("hifidecoder", gold["state_dict"], **gold["config"])


@pytest.mark.parametrize("case", ["short", "long"])
@torch.no_grad()
def test_inference_matches_golden(folded_model, gold, case):
    wav = folded_model.inference(gold[f"{case}.in_latents"], gold[f"{case}.in_cond"])
    want = gold[f"{case}.wav"]
    assert wav.shape == want.shape
    torch.testing.assert_close(wav, want, atol=ATOL, rtol=0)


@pytest.mark.parametrize("case", ["short", "long"])
@torch.no_grad()
def test_weight_norm_form_matches_golden(weight_norm_model, gold, case):
    wav = weight_norm_model.inference(gold[f"{case}.in_latents"], gold[f"{case}.in_cond"])
    torch.testing.assert_close(wav, gold[f"{case}.wav"], atol=ATOL, rtol=0)


@pytest.mark.parametrize("case", ["short", "long"])
def test_stretch_matches_golden(folded_model, gold, case):
    start, frames = folded_model.upsample_latents(gold[f"{case}.in_latents"])
    assert start == 0
    torch.testing.assert_close(frames, gold[f"{case}.upsampled"], atol=1e-6, rtol=0)


def test_frame_count_rule():
    assert frames_for_latents(7) == 30
    assert frames_for_latents(33) == 143


def test_load_folds_weight_norm(folded_model, gold):
    keys = set(folded_model.state_dict())
    assert not any(k.endswith(("weight_g", "weight_v")) for k in keys)
    assert keys == {k.removesuffix("_g") for k in gold["state_dict"] if not k.endswith("weight_v")}


def test_full_size_matches_manifest(reference_dir):
    manifest = json.loads((reference_dir / "manifests" / "hifidecoder.json").read_text())
    with torch.device("meta"):
        model = build("hifidecoder")
    got = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert got == manifest["keys"]
    assert len(got) == 236


def test_manifest_config_builds_the_default_model(reference_dir):
    manifest = json.loads((reference_dir / "manifests" / "hifidecoder.json").read_text())
    with torch.device("meta"):
        default = build("hifidecoder")
        explicit = build("hifidecoder", **manifest["config"])
    assert {k: v.shape for k, v in default.state_dict().items()} == {
        k: v.shape for k, v in explicit.state_dict().items()
    }
    assert sum(p.numel() for p in default.parameters()) == pytest.approx(17.8e6, rel=0.01)


def test_other_resblock_types_are_refused():
    with pytest.raises(ValueError, match="resblock_type"):
        build("hifidecoder", resblock_type="2")


@pytest.mark.parametrize("first", [1, 5, 37, 148, 300])
def test_window_stretch_equals_whole_stretch(folded_model, first):
    gen = torch.Generator().manual_seed(first)
    latents = torch.randn(1, 400, 32, generator=gen)
    _, whole = folded_model.upsample_latents(latents)
    start, part = folded_model.upsample_latents(latents[:, first:], first=first, total=400)
    assert start > 0 and start + part.shape[-1] == whole.shape[-1] == frames_for_latents(400)
    torch.testing.assert_close(part, whole[..., start:], atol=0, rtol=0)


def test_interpolate_range_matches_torch_for_long_sequences():
    x = torch.randn(1, 4, 5200, generator=torch.Generator().manual_seed(0))
    want = F.interpolate(x, scale_factor=RATE_STRETCH, mode="linear")
    got = interpolate_range(x, RATE_STRETCH, 0, 5200, 0, want.shape[-1])
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)


def test_interpolate_range_refuses_reads_outside_the_window():
    with pytest.raises(ValueError, match="outside the window"):
        interpolate_range(torch.zeros(1, 1, 10), 4.0, 10, 40, 0, 8)
