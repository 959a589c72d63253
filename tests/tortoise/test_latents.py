"""Conditioning latents: both methods against direct model calls, chunking, save/load safety, blending."""

import pickle
import random

import pytest
import torch

from tests.conftest import speech_like
from tortoise.audio import OUTPUT_SAMPLE_RATE, VOICE_SAMPLE_RATE, pad_or_truncate, resample
from tortoise.errors import InvalidInputError, WeightsError
from tortoise.latents import ConditioningLatents, compute_latents
from tortoise.mel import compute_ar_mel, compute_univnet_mel, format_conditioning


def test_official_method_equals_the_official_recipe(tiny_models):
    m = tiny_models
    clips = [speech_like(3.0, seed=1), speech_like(7.5, seed=2)]
    got = compute_latents(
        clips, m.autoregressive, m.diffusion, m.mel_norms, method="official", rng=random.Random(5)
    )
    rng = random.Random(5)
    ar_mels = torch.stack([format_conditioning(c, m.mel_norms, rng) for c in clips], dim=1)
    want_ar = m.autoregressive.get_conditioning(ar_mels)
    diff_mels = torch.stack(
        [
            compute_univnet_mel(pad_or_truncate(resample(c, VOICE_SAMPLE_RATE, OUTPUT_SAMPLE_RATE), 102400))
            for c in clips
        ],
        dim=1,
    )
    want_diff = m.diffusion.get_conditioning(diff_mels)
    torch.testing.assert_close(got.autoregressive, want_ar)
    torch.testing.assert_close(got.diffusion, want_diff)
    assert got.ar_mels.shape == (1, 2, 80, 517)


def test_whole_clip_single_chunk_uses_every_sample(tiny_models):
    m = tiny_models
    clip = speech_like(4.0, seed=3)
    got = compute_latents([clip], m.autoregressive, m.diffusion, m.mel_norms, max_chunk_s=10)
    want_ar = m.autoregressive.get_conditioning(compute_ar_mel(clip, m.mel_norms).unsqueeze(1))
    want_diff = m.diffusion.get_conditioning(
        compute_univnet_mel(resample(clip, VOICE_SAMPLE_RATE, OUTPUT_SAMPLE_RATE)).unsqueeze(1)
    )
    torch.testing.assert_close(got.autoregressive, want_ar, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(got.diffusion, want_diff, rtol=1e-4, atol=1e-5)


def test_whole_clip_chunks_are_averaged(tiny_models):
    m = tiny_models
    a, b = speech_like(2.0, seed=4), speech_like(2.0, seed=5)
    got = compute_latents([a, b], m.autoregressive, m.diffusion, m.mel_norms, max_chunk_s=2.0, slim=True)
    per_chunk = [
        m.autoregressive.get_conditioning(compute_ar_mel(c, m.mel_norms).unsqueeze(1)) for c in (a, b)
    ]
    torch.testing.assert_close(got.autoregressive, torch.stack(per_chunk).mean(0), rtol=1e-4, atol=1e-5)
    assert got.is_slim


def test_long_clip_is_chunked_and_reports_progress(tiny_models):
    m = tiny_models
    seen = []
    clip = speech_like(60.0, seed=6)
    got = compute_latents(
        [clip],
        m.autoregressive,
        m.diffusion,
        m.mel_norms,
        max_chunk_s=5.0,
        progress=lambda d, t: seen.append((d, t)),
    )
    assert seen[-1][0] == seen[-1][1] == 3  # 12 chunks of 5 s in batches of 4
    assert torch.isfinite(got.autoregressive).all() and torch.isfinite(got.diffusion).all()


def test_no_clips_and_short_clips_are_refused(tiny_models):
    m = tiny_models
    with pytest.raises(InvalidInputError, match="no usable clips"):
        compute_latents([], m.autoregressive, m.diffusion, m.mel_norms)
    with pytest.raises(InvalidInputError, match="Clip 2 is 0.10 s"):
        compute_latents([speech_like(1.0), speech_like(0.1)], m.autoregressive, m.diffusion, m.mel_norms)
    with pytest.raises(InvalidInputError, match="Unknown latents method"):
        compute_latents([speech_like(1.0)], m.autoregressive, m.diffusion, m.mel_norms, method="x")


def test_save_load_round_trip(tmp_path):
    lat = ConditioningLatents(torch.randn(1, 1024), torch.randn(1, 2048), torch.randn(1, 2, 80, 517), "whole")
    lat.save(tmp_path / "v" / "latents.pth", extra={"model_hash": "abc"})
    back = ConditioningLatents.load(tmp_path / "v" / "latents.pth")
    torch.testing.assert_close(back.autoregressive, lat.autoregressive)
    torch.testing.assert_close(back.ar_mels, lat.ar_mels)
    assert back.method == "whole"
    assert not list((tmp_path / "v").glob("*.tmp"))
    assert ConditioningLatents.from_bytes(lat.slim().to_bytes()).is_slim


def test_official_tuple_format_loads(tmp_path):
    torch.save((torch.randn(1, 1024), torch.randn(1, 2048)), tmp_path / "pat.pth")
    back = ConditioningLatents.load(tmp_path / "pat.pth")
    assert back.autoregressive.shape == (1, 1024) and back.is_slim


class Evil:
    def __reduce__(self):
        return (open, ("/tmp/tortoise_pwned_by_latents", "w"))


def test_malicious_latents_file_is_rejected_without_running(tmp_path):
    target = tmp_path / "evil.pth"
    with open(target, "wb") as f:
        pickle.dump({"autoregressive": Evil()}, f)
    with pytest.raises(WeightsError, match="Cannot read latents"):
        ConditioningLatents.load(target)
    with pytest.raises(WeightsError):
        ConditioningLatents.from_bytes(target.read_bytes())
    import os

    assert not os.path.exists("/tmp/tortoise_pwned_by_latents")


def test_garbage_and_wrong_content_are_rejected(tmp_path):
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError):
        ConditioningLatents.load(tmp_path / "junk.pth")
    torch.save({"something": torch.ones(1)}, tmp_path / "other.pth")
    with pytest.raises(WeightsError, match="does not hold conditioning latents"):
        ConditioningLatents.load(tmp_path / "other.pth")


def test_blend_averages_and_keeps_mels_only_when_all_have_them():
    a = ConditioningLatents(torch.zeros(1, 4), torch.zeros(1, 8), torch.zeros(1, 1, 80, 517))
    b = ConditioningLatents(torch.ones(1, 4), torch.ones(1, 8), torch.zeros(1, 2, 80, 517))
    mixed = ConditioningLatents.blend([a, b])
    torch.testing.assert_close(mixed.autoregressive, torch.full((1, 4), 0.5))
    assert mixed.ar_mels.shape[1] == 3
    assert ConditioningLatents.blend([a, b.slim()]).is_slim
