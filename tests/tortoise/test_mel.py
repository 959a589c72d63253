"""Tests for tortoise/mel.py: the golden fixtures ar_mel.pt and univnet_mel.pt, and the rest.

The rest: shapes, batching, dtypes, conditioning crops and input checks.
"""

import math
import random

import pytest
import torch

from tortoise import mel
from tortoise.errors import InvalidInputError
from tortoise.mel import (
    AR_CONDITIONING_SAMPLES,
    DIFFUSION_CONDITIONING_SAMPLES,
    LOG_CLAMP_MIN,
    TACOTRON_MEL_MAX,
    TACOTRON_MEL_MIN,
    compute_ar_mel,
    compute_ar_mel_power,
    compute_univnet_mel,
    crop_or_pad_conditioning,
    denormalize_tacotron_mel,
    format_conditioning,
    load_mel_norms,
    mel_frames,
    normalize_tacotron_mel,
)

# Tolerances from golden/README.md ("Suggested checks").
AR_LOG_ATOL = 1e-4
AR_POWER_RTOL = 1e-5
UNIVNET_ATOL = 2e-4


@pytest.fixture(scope="module")
def ar_golden(golden):
    return golden("ar_mel.pt")


@pytest.fixture(scope="module")
def univnet_golden(golden):
    return golden("univnet_mel.pt")


@pytest.fixture(scope="module")
def mel_norms(mel_norms_path):
    return load_mel_norms(mel_norms_path)


def test_load_mel_norms(mel_norms, ar_golden):
    assert mel_norms.shape == (80,) and mel_norms.dtype == torch.float32
    torch.testing.assert_close(mel_norms, ar_golden["inputs.mel_norms"], rtol=0, atol=0)


def test_load_mel_norms_rejects_wrong_content(tmp_path):
    path = tmp_path / "norms.pth"
    torch.save(torch.ones(100), path)
    with pytest.raises(InvalidInputError, match="norms.pth"):
        load_mel_norms(path)


def test_golden_config_matches_constants(ar_golden, univnet_golden):
    ar, uni = ar_golden["config"], univnet_golden["config"]
    assert (ar["sample_rate"], ar["n_fft"], ar["hop_length"], ar["win_length"]) == (
        mel.AR_MEL_SAMPLE_RATE,
        mel.N_FFT,
        mel.HOP_LENGTH,
        mel.N_FFT,
    )
    assert (ar["n_mels"], ar["f_min"], ar["f_max"]) == (mel.AR_N_MELS, mel.AR_F_MIN_HZ, mel.AR_F_MAX_HZ)
    assert (
        ar["log_clamp_min"] == LOG_CLAMP_MIN
        and ar["format_conditioning_cond_length"] == AR_CONDITIONING_SAMPLES
    )
    assert (uni["sample_rate"], uni["filter_length"], uni["hop_length"], uni["n_mel_channels"]) == (
        mel.UNIVNET_MEL_SAMPLE_RATE,
        mel.N_FFT,
        mel.HOP_LENGTH,
        mel.UNIVNET_N_MELS,
    )
    assert (uni["mel_fmin"], uni["mel_fmax"]) == (mel.UNIVNET_F_MIN_HZ, mel.UNIVNET_F_MAX_HZ)
    assert uni["pad_or_truncate_length"] == DIFFUSION_CONDITIONING_SAMPLES
    assert univnet_golden["constants.TACOTRON_MEL_MAX"] == TACOTRON_MEL_MAX
    assert univnet_golden["constants.TACOTRON_MEL_MIN"] == TACOTRON_MEL_MIN
    assert math.isclose(TACOTRON_MEL_MIN, math.log(LOG_CLAMP_MIN), rel_tol=1e-7)


def test_frame_counts():
    assert mel_frames(AR_CONDITIONING_SAMPLES) == 517
    assert mel_frames(DIFFUSION_CONDITIONING_SAMPLES) == 401


# --------------------------------------------------------------------------------------------------
# AR / CVVP mel (golden ar_mel.pt)


def test_ar_mel_power_matches_golden(ar_golden):
    power = compute_ar_mel_power(ar_golden["inputs.wav"].unsqueeze(0))
    torch.testing.assert_close(power, ar_golden["outputs.mel_power"], rtol=AR_POWER_RTOL, atol=1e-9)


def test_ar_log_mel_matches_golden(ar_golden):
    log_mel = compute_ar_mel(ar_golden["inputs.wav"].unsqueeze(0))
    torch.testing.assert_close(log_mel, ar_golden["outputs.log_mel"], rtol=0, atol=AR_LOG_ATOL)


def test_ar_normalized_mel_matches_golden(ar_golden, mel_norms):
    normalized = compute_ar_mel(ar_golden["inputs.wav"].unsqueeze(0), mel_norms)
    torch.testing.assert_close(normalized, ar_golden["outputs.normalized_mel"], rtol=0, atol=AR_LOG_ATOL)


def test_format_conditioning_matches_golden(ar_golden, mel_norms):
    result = format_conditioning(ar_golden["inputs.wav"].unsqueeze(0), mel_norms)
    assert result.shape == (1, 80, 517)
    torch.testing.assert_close(result, ar_golden["outputs.format_conditioning"], rtol=0, atol=AR_LOG_ATOL)
    # Frames that only see the zero padding hold ln(1e-5) / norm.
    torch.testing.assert_close(result[0, :, -1], math.log(LOG_CLAMP_MIN) / mel_norms, rtol=1e-6, atol=0)


def test_ar_filterbank_is_htk_slaney():
    bank = mel.ar_mel_filters().double()
    assert bank.shape == (80, 513)
    freqs = torch.linspace(0, 11025, 513, dtype=torch.float64)
    # Triangle m peaks at the HTK mel point m + 1 and is scaled to area-normalised height 2 / (f[m+2] - f[m]).
    mel_points = torch.linspace(0, 2595 * math.log10(1 + 8000 / 700), 82, dtype=torch.float64)
    hz_points = 700 * (10 ** (mel_points / 2595) - 1)
    for m in (0, 40, 79):
        lower = (freqs - hz_points[m]) / (hz_points[m + 1] - hz_points[m])
        upper = (hz_points[m + 2] - freqs) / (hz_points[m + 2] - hz_points[m + 1])
        expected = torch.clamp(torch.minimum(lower, upper), min=0) * 2 / (hz_points[m + 2] - hz_points[m])
        torch.testing.assert_close(bank[m], expected, rtol=1e-5, atol=1e-7)


def test_ar_mel_batches_and_shapes(ar_golden, mel_norms):
    wav = ar_golden["inputs.wav"]
    batch = torch.stack([wav, 0.5 * wav, wav.flip(0)])  # (3, samples)
    together = compute_ar_mel(batch, mel_norms)
    assert together.shape == (3, 80, mel_frames(wav.shape[-1]))
    for i in range(3):
        torch.testing.assert_close(together[i], compute_ar_mel(batch[i], mel_norms), rtol=0, atol=1e-5)
    assert compute_ar_mel(batch.reshape(3, 1, -1), mel_norms).shape == (3, 1, 80, 130)


def test_ar_mel_dtypes(ar_golden, mel_norms):
    wav = ar_golden["inputs.wav"].unsqueeze(0)
    reference = ar_golden["outputs.normalized_mel"]
    as_double = compute_ar_mel(wav.double(), mel_norms)
    assert as_double.dtype == torch.float64
    torch.testing.assert_close(as_double.float(), reference, rtol=0, atol=AR_LOG_ATOL)
    as_half = compute_ar_mel(wav.half(), mel_norms)  # computed in float32
    assert as_half.dtype == torch.float32
    torch.testing.assert_close(as_half, reference, rtol=0, atol=0.02)


# --------------------------------------------------------------------------------------------------
# Conditioning window (format_conditioning crop/pad)


def test_crop_or_pad_pads_short_clips_with_zeros():
    clip = torch.ones(1, 1000)
    rng = random.Random(0)
    state = rng.getstate()
    padded = crop_or_pad_conditioning(clip, rng)
    assert padded.shape == (1, AR_CONDITIONING_SAMPLES)
    assert padded[0, :1000].eq(1).all() and padded[0, 1000:].eq(0).all()
    assert rng.getstate() == state  # nothing drawn


def test_crop_or_pad_keeps_exact_length_without_drawing():
    clip = torch.randn(1, AR_CONDITIONING_SAMPLES)
    rng = random.Random(0)
    state = rng.getstate()
    assert torch.equal(crop_or_pad_conditioning(clip, rng), clip)
    assert rng.getstate() == state


def test_crop_draws_an_inclusive_offset_like_the_official_code():
    gap = 5000
    clip = torch.arange(AR_CONDITIONING_SAMPLES + gap, dtype=torch.float32).unsqueeze(0)
    start = random.Random(7).randint(0, gap)
    cropped = crop_or_pad_conditioning(clip, random.Random(7))
    assert cropped.shape == (1, AR_CONDITIONING_SAMPLES)
    assert cropped[0, 0].item() == start and cropped[0, -1].item() == start + AR_CONDITIONING_SAMPLES - 1


def test_crop_defaults_to_the_global_random_module():
    clip = torch.arange(AR_CONDITIONING_SAMPLES + 9999, dtype=torch.float32)
    random.seed(1234)
    first = crop_or_pad_conditioning(clip)
    random.seed(1234)
    second = crop_or_pad_conditioning(clip)
    assert torch.equal(first, second)
    assert first[0].item() == random.Random(1234).randint(0, 9999)


def test_format_conditioning_crops_long_clips(mel_norms):
    clip = 0.3 * torch.randn(1, AR_CONDITIONING_SAMPLES + 3000, generator=torch.Generator().manual_seed(3))
    result = format_conditioning(clip, mel_norms, random.Random(5))
    start = random.Random(5).randint(0, 3000)
    expected = compute_ar_mel(clip[:, start : start + AR_CONDITIONING_SAMPLES], mel_norms)
    assert result.shape == (1, 80, 517)
    torch.testing.assert_close(result, expected, rtol=0, atol=0)


# --------------------------------------------------------------------------------------------------
# Diffusion / UnivNet mel (golden univnet_mel.pt)


def test_univnet_filterbank_matches_golden(univnet_golden):
    torch.testing.assert_close(
        mel.univnet_mel_filters(), univnet_golden["inputs.mel_basis"], rtol=0, atol=1e-8
    )


def test_univnet_mel_matches_golden(univnet_golden):
    result = compute_univnet_mel(univnet_golden["inputs.wav"].unsqueeze(0))
    assert result.shape == (1, 100, 94)
    torch.testing.assert_close(result, univnet_golden["outputs.mel"], rtol=0, atol=UNIVNET_ATOL)


def test_univnet_normalized_mel_matches_golden(univnet_golden):
    result = compute_univnet_mel(univnet_golden["inputs.wav"].unsqueeze(0), do_normalization=True)
    torch.testing.assert_close(result, univnet_golden["outputs.mel_normalized"], rtol=0, atol=UNIVNET_ATOL)


def test_univnet_mel_of_padded_clip_matches_golden(univnet_golden):
    from tortoise.audio import pad_or_truncate

    wav = pad_or_truncate(univnet_golden["inputs.wav"].unsqueeze(0), DIFFUSION_CONDITIONING_SAMPLES)
    result = compute_univnet_mel(wav)
    assert result.shape == (1, 100, 401)
    torch.testing.assert_close(
        result, univnet_golden["outputs.mel_of_padded_to_102400"], rtol=0, atol=UNIVNET_ATOL
    )


def test_tacotron_normalisation_matches_golden(univnet_golden):
    probe = univnet_golden["inputs.norm_probe"]
    torch.testing.assert_close(
        normalize_tacotron_mel(probe),
        univnet_golden["outputs.normalize_tacotron_mel(norm_probe)"],
        rtol=1e-6,
        atol=1e-6,
    )
    torch.testing.assert_close(
        denormalize_tacotron_mel(probe),
        univnet_golden["outputs.denormalize_tacotron_mel(norm_probe)"],
        rtol=1e-6,
        atol=1e-5,
    )


def test_tacotron_normalisation_round_trip(univnet_golden):
    log_mel = univnet_golden["outputs.mel"]
    torch.testing.assert_close(
        denormalize_tacotron_mel(normalize_tacotron_mel(log_mel)), log_mel, rtol=0, atol=1e-5
    )
    ends = normalize_tacotron_mel(torch.tensor([TACOTRON_MEL_MIN, TACOTRON_MEL_MAX]))
    torch.testing.assert_close(ends, torch.tensor([-1.0, 1.0]), rtol=0, atol=1e-6)


def test_univnet_mel_clips_to_unit_range(univnet_golden):
    wav = univnet_golden["inputs.wav"].unsqueeze(0)
    loud = wav * 8  # within the +-10 limit, so clipped rather than rejected
    torch.testing.assert_close(
        compute_univnet_mel(loud), compute_univnet_mel(loud.clamp(-1, 1)), rtol=0, atol=0
    )


def test_univnet_mel_rejects_non_waveforms():
    with pytest.raises(InvalidInputError):
        compute_univnet_mel(torch.full((1, 2048), 11.0))


def test_univnet_mel_batches(univnet_golden):
    wav = univnet_golden["inputs.wav"]
    batch = torch.stack([wav, -wav])
    result = compute_univnet_mel(batch)
    assert result.shape == (2, 100, 94)
    torch.testing.assert_close(result[1], compute_univnet_mel(-wav), rtol=0, atol=1e-5)


def test_too_short_input_is_rejected():
    with pytest.raises(InvalidInputError, match="512"):
        compute_ar_mel(torch.zeros(1, 512))
    with pytest.raises(InvalidInputError, match="512"):
        compute_univnet_mel(torch.zeros(1, 100))
