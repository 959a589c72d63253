"""Tests for tortoise/audio.py: decoding, load errors, the sinc resampler and atomic WAV writing.

Audio files are generated on the fly into tmp_path.
"""

import math
import os
import shutil
import stat
import subprocess
import sys
import warnings

import numpy as np
import pytest
import soundfile as sf
import torch

from tortoise import audio
from tortoise.audio import (
    OUTPUT_SAMPLE_RATE,
    VOICE_SAMPLE_RATE,
    WAV2VEC2_SAMPLE_RATE,
    load_audio,
    pad_or_truncate,
    read_audio,
    resample,
    save_wav,
)
from tortoise.errors import AudioLoadError, TortoiseError


def sine(freq_hz: float, sample_rate: int, duration_s: float = 0.25, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(duration_s * sample_rate))) / sample_rate
    return (amplitude * np.sin(2 * np.pi * freq_hz * t)).astype(np.float64)


def dominant_frequency(signal: np.ndarray, sample_rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(signal * np.hanning(len(signal))))
    return float(np.argmax(spectrum) * sample_rate / len(signal))


def test_sample_rate_constants():
    assert (VOICE_SAMPLE_RATE, OUTPUT_SAMPLE_RATE, WAV2VEC2_SAMPLE_RATE) == (22050, 24000, 16000)


# --------------------------------------------------------------------------------------------------
# Loading


@pytest.mark.parametrize(
    ("file_format", "subtype", "extension", "tolerance"),
    [
        ("WAV", "PCM_U8", "wav", 1 / 127),
        ("AIFF", "PCM_S8", "aiff", 1 / 127),  # WAV has no signed 8-bit subtype
        ("WAV", "PCM_16", "wav", 1 / 2**15),
        ("WAV", "PCM_24", "wav", 1 / 2**23),
        ("WAV", "PCM_32", "wav", 1 / 2**31),
        ("WAV", "FLOAT", "wav", 1e-7),
        ("WAV", "DOUBLE", "wav", 1e-7),
        ("FLAC", "PCM_16", "flac", 1 / 2**15),
        ("FLAC", "PCM_24", "flac", 1 / 2**23),
    ],
)
def test_load_lossless_formats(tmp_path, file_format, subtype, extension, tolerance):
    original = sine(440, VOICE_SAMPLE_RATE)
    path = tmp_path / f"clip.{extension}"
    sf.write(path, original, VOICE_SAMPLE_RATE, format=file_format, subtype=subtype)

    wav = load_audio(path, VOICE_SAMPLE_RATE)

    assert wav.shape == (1, len(original))
    assert wav.dtype == torch.float32
    np.testing.assert_allclose(wav[0].numpy(), original, atol=tolerance * 1.01 + 1e-7)


@pytest.mark.parametrize(
    ("file_format", "subtype", "extension"), [("OGG", "VORBIS", "ogg"), ("MP3", "MPEG_LAYER_III", "mp3")]
)
def test_load_lossy_formats(tmp_path, file_format, subtype, extension):
    assert sf.check_format(file_format, subtype), f"libsndfile cannot write {file_format}/{subtype}"
    original = sine(440, VOICE_SAMPLE_RATE, duration_s=0.5)
    path = tmp_path / f"clip.{extension}"
    sf.write(path, original, VOICE_SAMPLE_RATE, format=file_format, subtype=subtype)

    wav = load_audio(path, VOICE_SAMPLE_RATE)

    assert wav.dtype == torch.float32 and wav.dim() == 2 and wav.shape[0] == 1
    assert abs(wav.shape[1] - len(original)) <= 2048  # encoders may add a little padding
    decoded = wav[0].numpy()
    assert dominant_frequency(decoded, VOICE_SAMPLE_RATE) == pytest.approx(440, abs=5)
    rms = np.sqrt(np.mean(decoded[2048:-2048] ** 2))
    assert rms == pytest.approx(0.5 / math.sqrt(2), rel=0.05)


def test_load_resamples_44k_and_48k(tmp_path):
    for file_rate in (44100, 48000):
        original = sine(1000, file_rate, duration_s=0.5)
        path = tmp_path / f"clip_{file_rate}.wav"
        sf.write(path, original, file_rate, subtype="FLOAT")

        wav = load_audio(path, VOICE_SAMPLE_RATE)[0].numpy()

        assert len(wav) == math.ceil(len(original) * VOICE_SAMPLE_RATE / file_rate)
        expected = sine(1000, VOICE_SAMPLE_RATE, duration_s=len(wav) / VOICE_SAMPLE_RATE)[: len(wav)]
        np.testing.assert_allclose(wav[200:-200], expected[200:-200], atol=2e-3)


def test_load_to_24k_from_22k(tmp_path):
    path = tmp_path / "clip.wav"
    sf.write(path, sine(440, VOICE_SAMPLE_RATE), VOICE_SAMPLE_RATE, subtype="PCM_16")
    wav = load_audio(path, OUTPUT_SAMPLE_RATE)
    assert wav.shape == (1, math.ceil(round(0.25 * VOICE_SAMPLE_RATE) * 24000 / 22050))


def test_stereo_keeps_first_channel_or_averages(tmp_path):
    left, right = sine(440, VOICE_SAMPLE_RATE), sine(660, VOICE_SAMPLE_RATE, amplitude=0.3)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], axis=1), VOICE_SAMPLE_RATE, subtype="FLOAT")

    first = load_audio(path, VOICE_SAMPLE_RATE)
    mean = load_audio(path, VOICE_SAMPLE_RATE, use_channel_mean=True)

    assert first.shape == mean.shape == (1, len(left))
    np.testing.assert_allclose(first[0].numpy(), left, atol=1e-7)
    np.testing.assert_allclose(mean[0].numpy(), (left + right) / 2, atol=1e-7)


def test_read_audio_keeps_channels_and_rate(tmp_path):
    data = np.stack([sine(440, 48000), sine(220, 48000), sine(110, 48000)], axis=1)
    path = tmp_path / "three.flac"
    sf.write(path, data, 48000, subtype="PCM_24")
    wav, rate = read_audio(path)
    assert rate == 48000 and wav.shape == (3, data.shape[0]) and wav.dtype == torch.float32


def test_loud_float_file_warns_and_is_clipped(tmp_path):
    path = tmp_path / "loud.wav"
    sf.write(path, sine(440, VOICE_SAMPLE_RATE, amplitude=3.0), VOICE_SAMPLE_RATE, subtype="FLOAT")
    with pytest.warns(UserWarning, match="loud.wav"):
        wav = load_audio(path, VOICE_SAMPLE_RATE)
    assert wav.max().item() == 1.0 and wav.min().item() == -1.0


def test_ordinary_clip_does_not_warn(tmp_path):
    path = tmp_path / "ok.wav"
    sf.write(path, sine(440, VOICE_SAMPLE_RATE), VOICE_SAMPLE_RATE, subtype="PCM_16")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_audio(path, VOICE_SAMPLE_RATE)


def _assert_load_error(path, *fragments):
    with pytest.raises(AudioLoadError) as info:
        load_audio(path, VOICE_SAMPLE_RATE)
    assert isinstance(info.value, TortoiseError)
    message = str(info.value)
    assert os.path.basename(path) in message
    for fragment in fragments:
        assert fragment in message
    return message


def test_missing_file(tmp_path):
    _assert_load_error(tmp_path / "nowhere.wav", "not found")


def test_directory_is_not_audio(tmp_path):
    folder = tmp_path / "folder.wav"
    folder.mkdir()
    _assert_load_error(folder)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    _assert_load_error(path, "empty")


def test_text_file_renamed_wav(tmp_path, monkeypatch):
    path = tmp_path / "notes.wav"
    path.write_text("these are my notes, not audio\n" * 20)
    _assert_load_error(path)
    monkeypatch.setattr(shutil, "which", lambda name: None)  # the same without the ffmpeg fallback
    _assert_load_error(path)


def test_corrupt_wav(tmp_path):
    good = tmp_path / "good.wav"
    sf.write(good, sine(440, VOICE_SAMPLE_RATE), VOICE_SAMPLE_RATE, subtype="PCM_16")
    corrupt = tmp_path / "broken.wav"
    corrupt.write_bytes(good.read_bytes()[:30])  # header cut before the data chunk
    _assert_load_error(corrupt)


def test_wav_without_samples(tmp_path):
    path = tmp_path / "silent.wav"
    sf.write(path, np.zeros(0), VOICE_SAMPLE_RATE, subtype="PCM_16")
    _assert_load_error(path, "no samples")


def test_nan_samples_rejected(tmp_path):
    data = sine(440, VOICE_SAMPLE_RATE)
    data[10] = np.nan
    path = tmp_path / "nan.wav"
    sf.write(path, data, VOICE_SAMPLE_RATE, subtype="FLOAT")
    _assert_load_error(path, "NaN")


def test_unknown_format_without_ffmpeg_says_so(tmp_path, monkeypatch):
    path = tmp_path / "voice.m4a"
    path.write_bytes(b"\x00\x00\x00\x20ftypM4A " + bytes(200))
    monkeypatch.setattr(shutil, "which", lambda name: None)
    _assert_load_error(path, "ffmpeg")


def _fake_ffmpeg(tmp_path, body: str) -> str:
    """An executable standing in for ffmpeg; `body` is Python run with the argument list in `args`."""
    script = tmp_path / "fake_ffmpeg"
    script.write_text(f"#!{sys.executable}\nimport sys\nargs = sys.argv[1:]\n{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


def test_ffmpeg_fallback_reads_its_output(tmp_path):
    # The fake decoder writes a known 16 kHz stereo float WAV wherever it is told to.
    fake = _fake_ffmpeg(
        tmp_path,
        "import numpy as np, soundfile as sf\n"
        "assert args[args.index('-i') + 1].startswith('file:')\n"
        "t = np.arange(8000) / 16000\n"
        "data = np.stack([0.5 * np.sin(2 * np.pi * 440 * t), np.zeros_like(t)], axis=1)\n"
        "sf.write(args[-1], data, 16000, subtype='FLOAT')",
    )
    path = tmp_path / "voice.m4a"
    path.write_bytes(b"not something libsndfile knows" * 10)

    wav, rate = read_audio(path, ffmpeg_path=fake)
    assert rate == 16000 and wav.shape == (2, 8000)
    assert load_audio(path, WAV2VEC2_SAMPLE_RATE, ffmpeg_path=fake).shape == (1, 8000)


def test_ffmpeg_failure_names_the_file(tmp_path):
    fake = _fake_ffmpeg(
        tmp_path, "sys.stderr.write('Invalid data found when processing input\\n')\nsys.exit(1)"
    )
    path = tmp_path / "garbage.opus.bin"
    path.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(AudioLoadError, match="garbage.opus.bin.*Invalid data"):
        read_audio(path, ffmpeg_path=fake)


def test_real_ffmpeg_decodes_aac(tmp_path):
    source = tmp_path / "source.wav"
    sf.write(source, sine(440, 44100, duration_s=0.5), 44100, subtype="PCM_16")
    target = tmp_path / "voice.m4a"
    encode = ["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(source), "-c:a", "aac", str(target)]
    assert subprocess.run(encode, capture_output=True).returncode == 0, "ffmpeg (installed by test.sh) failed"

    wav = load_audio(target, VOICE_SAMPLE_RATE)[0].numpy()

    assert abs(len(wav) - VOICE_SAMPLE_RATE // 2) < 2048
    assert dominant_frequency(wav, VOICE_SAMPLE_RATE) == pytest.approx(440, abs=5)


# --------------------------------------------------------------------------------------------------
# Resampling


def direct_sinc_resample(x: np.ndarray, orig_sr: int, new_sr: int, zeros: int = 6, rolloff: float = 0.99):
    """Slow float64 reference: evaluate the Hann-windowed sinc interpolation sum at each output time.

    y[j] = sum_i x[i] * c * sinc(c * orig_sr * dt) * cos^2(pi * c * orig_sr * dt / (2 * zeros)), where
    dt = i / orig_sr - j / new_sr is in seconds and c = rolloff * min(orig_sr, new_sr) / orig_sr is the
    cutoff relative to the input rate; taps farther than `zeros` crossings count zero.
    """
    cutoff = rolloff * min(orig_sr, new_sr) / orig_sr
    n_out = math.ceil(len(x) * new_sr / orig_sr)
    times_in = np.arange(len(x)) / orig_sr
    out = np.zeros(n_out)
    for j in range(n_out):
        crossings = cutoff * orig_sr * (times_in - j / new_sr)
        inside = np.abs(crossings) <= zeros
        taps = cutoff * np.sinc(crossings) * np.cos(np.pi * crossings / (2 * zeros)) ** 2
        out[j] = np.sum(x[inside] * taps[inside])
    return out


@pytest.mark.parametrize(
    ("orig_sr", "new_sr"), [(22050, 24000), (24000, 16000), (44100, 22050), (48000, 22050), (16000, 22050)]
)
def test_resample_matches_direct_formula(orig_sr, new_sr):
    x = np.random.default_rng(0).standard_normal(700)
    expected = direct_sinc_resample(x, orig_sr, new_sr)

    got64 = resample(torch.from_numpy(x), orig_sr, new_sr)
    got32 = resample(torch.from_numpy(x).float(), orig_sr, new_sr)

    assert got64.dtype == torch.float64 and got32.dtype == torch.float32
    np.testing.assert_allclose(got64.numpy(), expected, atol=1e-12)
    np.testing.assert_allclose(got32.numpy(), expected, atol=2e-6)


@pytest.mark.parametrize(
    ("orig_sr", "new_sr", "samples", "expected"),
    [
        (22050, 24000, 22050, 24000),
        (22050, 24000, 1000, 1089),  # ceil(1000 * 160 / 147)
        (24000, 16000, 24000, 16000),
        (24000, 16000, 1001, 668),
        (44100, 22050, 44100, 22050),
        (44100, 22050, 4411, 2206),
    ],
)
def test_resample_lengths(orig_sr, new_sr, samples, expected):
    assert resample(torch.zeros(samples), orig_sr, new_sr).shape == (expected,)


def test_resample_identity_and_batches():
    x = torch.randn(2, 3, 500, generator=torch.Generator().manual_seed(1))
    assert resample(x, 22050, 22050) is x
    batch = resample(x, 22050, 24000)
    assert batch.shape == (2, 3, math.ceil(500 * 160 / 147))
    torch.testing.assert_close(batch[1, 2], resample(x[1, 2], 22050, 24000), rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    ("orig_sr", "new_sr", "freq_hz"), [(22050, 24000, 1000), (24000, 16000, 3000), (44100, 22050, 5000)]
)
def test_resampled_sine_stays_a_sine(orig_sr, new_sr, freq_hz):
    x = torch.from_numpy(sine(freq_hz, orig_sr, duration_s=0.5, amplitude=0.8)).float()
    y = resample(x, orig_sr, new_sr).double().numpy()
    expected = sine(freq_hz, new_sr, duration_s=len(y) / new_sr, amplitude=0.8)[: len(y)]
    middle = slice(300, -300)  # away from the zero-padded edges
    np.testing.assert_allclose(y[middle], expected[middle], atol=0.005 * 0.8)  # passband ripple < 0.5%
    assert dominant_frequency(y, new_sr) == pytest.approx(freq_hz, abs=new_sr / len(y))


def test_resample_suppresses_aliasing():
    # 15 kHz is above the 11.025 kHz Nyquist of the output: it must be filtered, not folded to 7.05 kHz.
    x = torch.from_numpy(sine(15000, 44100, duration_s=0.5, amplitude=0.8)).float()
    y = resample(x, 44100, 22050).double().numpy()[300:-300]
    rms_in = 0.8 / math.sqrt(2)
    assert 20 * math.log10(np.sqrt(np.mean(y**2)) / rms_in) < -40


def test_resample_rejects_bad_arguments():
    with pytest.raises(ValueError):
        resample(torch.zeros(10), 22050.5, 24000)
    with pytest.raises(ValueError):
        resample(torch.zeros(10), 0, 24000)
    with pytest.raises(TypeError):
        resample(torch.zeros(10, dtype=torch.int16), 22050, 24000)


def test_resample_long_clip_is_fast_enough():
    x = torch.randn(VOICE_SAMPLE_RATE * 60)  # one minute
    y = resample(x, VOICE_SAMPLE_RATE, OUTPUT_SAMPLE_RATE)
    assert y.shape == (OUTPUT_SAMPLE_RATE * 60,)


# --------------------------------------------------------------------------------------------------
# pad_or_truncate and save_wav


def test_pad_or_truncate():
    x = torch.arange(1, 6, dtype=torch.float32).unsqueeze(0)
    assert pad_or_truncate(x, 3).tolist() == [[1, 2, 3]]
    assert pad_or_truncate(x, 7).tolist() == [[1, 2, 3, 4, 5, 0, 0]]
    assert torch.equal(pad_or_truncate(x, 5), x)


def test_save_wav_round_trip(tmp_path):
    rng = np.random.default_rng(2)
    wav = torch.from_numpy(rng.uniform(-0.9, 0.9, 4800)).float().unsqueeze(0)
    path = tmp_path / "out" / "nested" / "result.wav"

    save_wav(path, wav, OUTPUT_SAMPLE_RATE)

    info = sf.info(path)
    assert (info.samplerate, info.channels, info.subtype, info.frames) == (
        OUTPUT_SAMPLE_RATE,
        1,
        "PCM_16",
        4800,
    )
    back, rate = read_audio(path)
    assert rate == OUTPUT_SAMPLE_RATE
    np.testing.assert_allclose(back[0].numpy(), wav[0].numpy(), atol=0.5 / 32768 + 1e-7)
    assert [p.name for p in path.parent.iterdir()] == ["result.wav"]  # no temporary file left


def test_save_wav_clips_and_replaces(tmp_path):
    path = tmp_path / "result.wav"
    save_wav(path, torch.ones(100), VOICE_SAMPLE_RATE)
    save_wav(path, torch.tensor([2.0, -2.0, 0.5, -1.0]), VOICE_SAMPLE_RATE)  # 1-D input, out of range
    data, rate = sf.read(path, dtype="int16")
    assert rate == VOICE_SAMPLE_RATE
    assert data.tolist() == [32767, -32768, 16384, -32768]


def test_save_wav_uses_normal_permissions(tmp_path):
    path = tmp_path / "result.wav"
    save_wav(path, torch.zeros(10), 16000)
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~umask


def test_save_wav_stereo_and_numpy(tmp_path):
    path = tmp_path / "stereo.wav"
    save_wav(path, np.stack([np.full(10, 0.25), np.full(10, -0.25)]), 16000)
    data, _ = sf.read(path)
    assert data.shape == (10, 2)
    np.testing.assert_allclose(data[:, 0], 0.25)


def test_save_wav_failure_leaves_nothing(tmp_path, monkeypatch):
    def failing_write(file, *args, **kwargs):
        with open(file, "wb") as handle:
            handle.write(b"partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(audio.sf, "write", failing_write)
    with pytest.raises(RuntimeError, match="disk full"):
        save_wav(tmp_path / "result.wav", torch.zeros(10), 16000)
    assert list(tmp_path.iterdir()) == []


def test_save_wav_rejects_bad_shapes(tmp_path):
    with pytest.raises(ValueError):
        save_wav(tmp_path / "x.wav", torch.zeros(1, 1, 10), 16000)
    with pytest.raises(ValueError):
        save_wav(tmp_path / "x.wav", torch.zeros(0), 16000)
