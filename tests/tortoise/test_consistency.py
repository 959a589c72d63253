"""CVVP voice-similarity plumbing on the tiny golden models: clip mels, codes and waveform scoring."""

import pytest
import torch

from tests.conftest import load_golden, speech_like
from tortoise.consistency import (
    latents_clip_mels,
    reads_codes,
    speech_similarity,
    voice_clip_mels,
    waveform_codes,
    waveform_similarity,
)
from tortoise.errors import InvalidInputError
from tortoise.latents import ConditioningLatents
from tortoise.models import build, load


@pytest.fixture(scope="module")
def dvae():
    g = load_golden("dvae.pt")
    return load("dvae", g["state_dict"], **g["constructor_args"]).eval()


def test_clip_mels_are_deterministic_and_checked(tiny_models):
    clips = [speech_like(7.0, seed=1), speech_like(1.0, seed=2)]
    first = voice_clip_mels(clips, tiny_models.mel_norms)
    assert first.shape == (2, 80, 517)
    assert torch.equal(first, voice_clip_mels(clips, tiny_models.mel_norms))  # the 7 s clip's crop is seeded
    with pytest.raises(InvalidInputError, match="no clips"):
        voice_clip_mels([], tiny_models.mel_norms)
    with pytest.raises(InvalidInputError, match="shorter than 0.5 s"):
        voice_clip_mels([speech_like(0.2)], tiny_models.mel_norms)
    latents = ConditioningLatents(torch.zeros(1, 4), torch.zeros(1, 4), first.unsqueeze(0))
    assert torch.equal(latents_clip_mels(latents), first)
    assert latents_clip_mels(latents.slim()) is None


def test_code_scores_equal_cvvp_ranking_math(tiny_models):
    cvvp = tiny_models.cvvp
    mels = voice_clip_mels([speech_like(1.5, seed=1), speech_like(2.0, seed=3)], tiny_models.mel_norms)
    g = torch.Generator().manual_seed(0)
    codes = [torch.randint(0, 8192, (17,), generator=g), torch.randint(0, 8192, (1, 9), generator=g)]
    scores = speech_similarity(cvvp, codes, mels)
    with torch.no_grad():
        voice = cvvp.encode_conditioning(mels)
        expected = [cvvp.score_over_clips(voice, cvvp.encode_speech(c.reshape(1, -1))) for c in codes]
    assert scores.shape == (2,) and torch.allclose(scores, torch.cat(expected))
    with pytest.raises(InvalidInputError, match="no segments"):
        speech_similarity(cvvp, [], mels)
    with pytest.raises(InvalidInputError, match="empty audio"):
        speech_similarity(cvvp, [torch.zeros(0, dtype=torch.long)], mels)


def test_waveforms_are_scored_through_dvae_codes(tiny_models, dvae):
    cvvp, norms = tiny_models.cvvp, tiny_models.mel_norms
    assert reads_codes(cvvp)
    mels = voice_clip_mels([speech_like(1.5, seed=1)], norms)
    wavs = [speech_like(1.0, 24000, seed=5), speech_like(0.7, 24000, seed=6)]
    scores = waveform_similarity(cvvp, wavs, 24000, mels, norms, dvae)
    codes = [waveform_codes(dvae, w, 24000, norms) for w in wavs]
    assert codes[0].dtype == torch.int64 and codes[0].shape[0] == 1
    assert torch.allclose(scores, speech_similarity(cvvp, codes, mels))
    with pytest.raises(InvalidInputError, match="needs the DVAE"):
        waveform_similarity(cvvp, wavs, 24000, mels, norms)


def test_a_mel_reading_cvvp_scores_waveforms_without_a_dvae(tiny_models):
    torch.manual_seed(0)
    cvvp = build("cvvp", model_dim=32, transformer_heads=2, conditioning_enc_depth=1, speech_enc_depth=1,
                 mel_codes=None).eval()  # fmt: skip
    assert not reads_codes(cvvp)
    mels = voice_clip_mels([speech_like(1.5, seed=1)], tiny_models.mel_norms)
    scores = waveform_similarity(cvvp, [speech_like(1.0, 22050, seed=2)], 22050, mels, tiny_models.mel_norms)
    assert scores.shape == (1,) and torch.isfinite(scores).all()
