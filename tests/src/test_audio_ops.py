"""Pure post-processing: joining, volume, int16 conversion, output resample, trimming, non-final policy."""

from pathlib import Path

import numpy as np
import pytest
import torch

from src.audio_ops import (
    apply_volume,
    join_clips,
    non_final_outputs,
    postprocess_output,
    resample_output,
    to_pcm16,
    trim_silence,
)
from src.errors import InvalidInput


def test_join_clips_with_and_without_pause():
    a, b, c = torch.ones(10), 2 * torch.ones(5), 3 * torch.ones(3)
    joined = join_clips([a, b, c], sample_rate=100, pause_s=0.05)
    assert joined.shape == (10 + 5 + 5 + 5 + 3,)
    assert torch.equal(joined[10:15], torch.zeros(5)) and torch.equal(joined[15:20], b)
    assert torch.equal(join_clips([a, b], 100), torch.cat([a, b]))
    assert join_clips([torch.ones(1, 4), torch.ones(1, 2)], 100, 0.01).shape == (1, 7)


def test_join_clips_rejects_bad_input():
    with pytest.raises(InvalidInput):
        join_clips([], 100)
    with pytest.raises(InvalidInput):
        join_clips([torch.ones(1, 4), torch.ones(2, 4)], 100)
    with pytest.raises(InvalidInput):
        join_clips([torch.ones(4)], 100, pause_s=-1)


def test_volume_gain_clips_instead_of_wrapping():
    wav = torch.tensor([0.25, -0.6, 0.9])
    assert apply_volume(wav, 1.0) is wav
    assert torch.allclose(apply_volume(wav, 2.0), torch.tensor([0.5, -1.0, 1.0]))
    assert torch.allclose(apply_volume(wav, 0.5), wav / 2)
    for bad in (-0.1, float("nan"), float("inf"), 11.0):
        with pytest.raises(InvalidInput):
            apply_volume(wav, bad)


def test_to_pcm16_saturates_and_never_wraps():
    pcm = to_pcm16(torch.tensor([1.5, -1.5, 1.0, -1.0, 0.5, 0.0, float("nan")]))
    assert pcm.dtype == np.int16
    assert pcm.tolist() == [32767, -32768, 32767, -32768, 16384, 0, 0]
    assert to_pcm16(np.array([[2.0, -0.25]])).tolist() == [[32767, -8192]]


def test_resample_equal_rate_is_a_no_op():
    wav = torch.randn(1, 2400)
    assert resample_output(wav, 24000, 24000) is wav  # mrq's UI crashed here
    assert resample_output(wav, 24000, None) is wav
    assert resample_output(wav, 24000, 0) is wav


def test_resample_to_output_rate():
    t = torch.arange(24000) / 24000
    wav = torch.sin(2 * torch.pi * 440 * t).unsqueeze(0)
    out = resample_output(wav, 24000, 44100)
    assert out.shape == (1, 44100)
    expected = torch.sin(2 * torch.pi * 440 * torch.arange(44100) / 44100)
    assert torch.allclose(out[0, 1000:-1000], expected[1000:-1000], atol=1e-2)
    with pytest.raises(InvalidInput):
        resample_output(wav, 24000, 1000)


def test_postprocess_output_returns_rate():
    wav = 0.8 * torch.ones(1, 2400)
    out, rate = postprocess_output(wav, 24000, 24000, 2.0)
    assert rate == 24000 and out.max() == 1.0
    out, rate = postprocess_output(wav, 24000, 48000, 1.0)
    assert rate == 48000 and out.shape[-1] == 4800
    assert postprocess_output(wav, 24000, None, 1.0)[1] == 24000


def test_trim_silence_keeps_margin():
    wav = torch.zeros(1000)
    wav[400:600] = 0.5
    trimmed = trim_silence(wav, 1000, keep_s=0.01)
    assert trimmed.shape == (220,)
    silent = torch.zeros(1, 50)
    assert trim_silence(silent, 1000) is silent


def test_non_final_outputs_policy():
    outputs = [Path("r/result_0_0.wav"), Path("r/result_1_0.wav"), Path("r/combined.wav")]
    assert non_final_outputs(outputs, ["r/combined.wav"], delete_non_final=True) == outputs[:2]
    assert non_final_outputs(outputs, ["r/combined.wav"], delete_non_final=False) == []
    assert non_final_outputs(outputs[:1], outputs[:1], delete_non_final=True) == []


from src.audio_ops import join_with_pauses  # noqa: E402


def test_join_with_pauses_puts_each_pause_after_its_clip():
    a, b = torch.ones(1, 10), 2 * torch.ones(1, 5)
    joined = join_with_pauses([a, b], 100, [0.03, 0.02], pause_before_s=0.01)
    assert joined.shape == (1, 1 + 10 + 3 + 5 + 2)
    assert torch.equal(joined, torch.cat([torch.zeros(1, 1), a, torch.zeros(1, 3), b, torch.zeros(1, 2)], -1))
    assert torch.equal(join_with_pauses([a, b], 100, [0.0, 0.0]), torch.cat([a, b], -1))


@pytest.mark.parametrize(
    ("clips", "pauses", "before", "message"),
    [
        ([], [], 0.0, "no clips"),
        ([torch.ones(4)], [0.1, 0.1], 0.0, "1 clips need 1 pauses"),
        ([torch.ones(4)], [-0.1], 0.0, "0 s or more"),
        ([torch.ones(4)], [0.1], float("nan"), "0 s or more"),
        ([torch.ones(1, 4), torch.ones(2, 4)], [0.0, 0.0], 0.0, "channels"),
    ],
)
def test_join_with_pauses_rejects_bad_input(clips, pauses, before, message):
    with pytest.raises(InvalidInput, match=message):
        join_with_pauses(clips, 100, pauses, before)
