"""CVVP: official golden scores per clip and averaged, the split (encode each clip once) path, and shapes."""

import pytest
import torch

from tortoise.models import build, load
from tortoise.models.cvvp import CVVP

SCORE_ATOL = 1e-5  # golden README: CVVP scores atol 1e-5 (float32 floor measured at 8e-8)
SPLIT_ATOL = 1e-6  # same maths, only batch sizes differ


@pytest.fixture(scope="module")
def cvvp_golden(golden):
    return golden("cvvp.pt")


@pytest.fixture(scope="module")
def tiny_cvvp(cvvp_golden):
    return load("cvvp", cvvp_golden["state_dict"], **cvvp_golden["config"])


@torch.no_grad()
def test_per_clip_similarity_matches_golden(tiny_cvvp, cvvp_golden):
    auto_conds = cvvp_golden["inputs.auto_conds"]  # (1, clips, 80, frames)
    codes = cvvp_golden["inputs.codes"]
    # as api.py: each clip repeated over the candidate batch
    batch = codes.shape[0]
    per_clip = torch.stack(
        [tiny_cvvp(auto_conds[:, clip].repeat(batch, 1, 1), codes) for clip in range(auto_conds.shape[1])]
    )
    torch.testing.assert_close(per_clip, cvvp_golden["outputs.similarity_per_clip"], atol=SCORE_ATOL, rtol=0)


@torch.no_grad()
def test_split_mean_over_clips_matches_golden_and_forward(tiny_cvvp, cvvp_golden):
    auto_conds = cvvp_golden["inputs.auto_conds"]
    codes = cvvp_golden["inputs.codes"]
    clip_latents = tiny_cvvp.encode_conditioning(auto_conds[0])  # every clip once: (clips, latent)
    speech_latents = tiny_cvvp.encode_speech(codes)  # every candidate once, not once per clip
    mean = tiny_cvvp.score_over_clips(clip_latents, speech_latents)
    want = cvvp_golden["outputs.similarity_mean_over_clips"]
    torch.testing.assert_close(mean, want, atol=SCORE_ATOL, rtol=0)

    clips, batch = auto_conds.shape[1], codes.shape[0]
    forward = [tiny_cvvp(auto_conds[:, c].repeat(batch, 1, 1), codes) for c in range(clips)]
    torch.testing.assert_close(mean, sum(forward) / clips, atol=SPLIT_ATOL, rtol=0)
    for clip in range(clips):
        split = tiny_cvvp.score(clip_latents[clip : clip + 1], speech_latents)
        torch.testing.assert_close(split, forward[clip], atol=SPLIT_ATOL, rtol=0)


@torch.no_grad()
def test_latents_are_unit_length(tiny_cvvp, cvvp_golden):
    latents = tiny_cvvp.encode_conditioning(cvvp_golden["inputs.auto_conds"][0])
    torch.testing.assert_close(latents.norm(dim=-1), torch.ones(2))


def test_golden_state_dict_keys_match(cvvp_golden):
    keys = set(cvvp_golden["state_dict"])
    assert set(build("cvvp", **cvvp_golden["config"]).state_dict()) == keys
    assert "speech_emb.emb.weight" in keys


def test_conditioning_convs_downsample_by_four():
    model = CVVP(model_dim=32, transformer_heads=2, conditioning_enc_depth=1, speech_enc_depth=1)
    with torch.no_grad():
        emb = model.cond_emb(torch.zeros(1, 80, 517))
    assert emb.shape == (1, 32, 130)  # 517 -> 259 -> 130 frames, as the full-size spec says


def test_mel_input_variant_and_loss():
    torch.manual_seed(0)
    model = CVVP(
        model_dim=32, transformer_heads=2, conditioning_enc_depth=1, speech_enc_depth=1, mel_codes=None
    ).eval()
    with torch.no_grad():
        scores = model(torch.randn(2, 80, 40), torch.randn(2, 80, 24))
        loss = model(torch.randn(2, 80, 40), torch.randn(2, 80, 24), return_loss=True)
    assert scores.shape == (2,)
    assert loss.shape == () and torch.isfinite(loss)
