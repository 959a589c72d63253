"""Tests for src/ffmpeg.py: finding ffmpeg (bin/ before PATH) and converting to voice WAVs."""

import logging
import os
import stat
from pathlib import Path

import pytest

from src.errors import AppError
from src.ffmpeg import (
    FfmpegError,
    FfmpegMissing,
    convert_to_wav,
    find_ffmpeg,
    prepend_bin_to_path,
)
from tests.media import assert_voice_wav, make_mp3_stereo_44k, make_wav_8bit

needs_ffmpeg = pytest.mark.usefixtures("require_ffmpeg")
posix_only = pytest.mark.skipif(os.name == "nt", reason="uses POSIX exec bits")


def _fake_executable(path: Path, mode: int = 0o755) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(mode)
    return path


@posix_only
def test_find_ffmpeg_prefers_bin_over_path(tmp_path):
    in_bin = _fake_executable(tmp_path / "root" / "bin" / "ffmpeg")
    on_path = _fake_executable(tmp_path / "elsewhere" / "ffmpeg")
    assert find_ffmpeg(tmp_path / "root", search_path=str(on_path.parent)) == in_bin


@posix_only
def test_find_ffmpeg_falls_back_to_path(tmp_path):
    on_path = _fake_executable(tmp_path / "elsewhere" / "ffmpeg")
    (tmp_path / "root" / "bin").mkdir(parents=True)
    assert find_ffmpeg(tmp_path / "root", search_path=str(on_path.parent)) == on_path


@posix_only
def test_find_ffmpeg_skips_non_executable_bin_file_with_a_warning(tmp_path, caplog):
    _fake_executable(tmp_path / "root" / "bin" / "ffmpeg", mode=stat.S_IRUSR | stat.S_IWUSR)
    on_path = _fake_executable(tmp_path / "elsewhere" / "ffmpeg")
    with caplog.at_level(logging.WARNING, logger="src.ffmpeg"):
        assert find_ffmpeg(tmp_path / "root", search_path=str(on_path.parent)) == on_path
    assert "not executable" in caplog.text


def test_missing_ffmpeg_message_names_both_fixes(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FfmpegMissing) as excinfo:
        find_ffmpeg(tmp_path / "root", search_path=str(empty))
    message = str(excinfo.value)
    assert "install" in message and "system-wide" in message
    assert str(tmp_path / "root" / "bin") in message
    assert isinstance(excinfo.value, FfmpegError) and isinstance(excinfo.value, AppError)


def test_prepend_bin_to_path_puts_bin_first_and_leaves_environ_alone(tmp_path):
    before = os.environ.get("PATH")
    env = prepend_bin_to_path(tmp_path, {"PATH": os.pathsep.join(["/usr/bin", "/bin"]), "X": "1"})
    parts = env["PATH"].split(os.pathsep)
    assert parts == [str(tmp_path.resolve() / "bin"), "/usr/bin", "/bin"]
    assert env["X"] == "1"
    again = prepend_bin_to_path(tmp_path, env)  # no duplicate entry when applied twice
    assert again["PATH"] == env["PATH"]
    assert os.environ.get("PATH") == before
    assert prepend_bin_to_path(tmp_path)["PATH"].split(os.pathsep)[0] == parts[0]


@needs_ffmpeg
def test_mp3_44k_stereo_becomes_22050_mono_16bit(tmp_path):
    src = make_mp3_stereo_44k(tmp_path / "speech.mp3")
    dst = convert_to_wav(src, tmp_path / "voices" / "me" / "speech.wav")
    assert dst == tmp_path / "voices" / "me" / "speech.wav"
    assert_voice_wav(dst)
    assert sorted(p.name for p in dst.parent.iterdir()) == ["speech.wav"]  # no temp file left


@needs_ffmpeg
def test_8bit_wav_becomes_16bit(tmp_path):
    src = make_wav_8bit(tmp_path / "old.wav", sample_rate=16000)
    assert_voice_wav(convert_to_wav(src, tmp_path / "out.wav"))


@needs_ffmpeg
def test_rate_and_channels_are_honoured(tmp_path):
    src = make_mp3_stereo_44k(tmp_path / "speech.mp3")
    assert_voice_wav(
        convert_to_wav(src, tmp_path / "out.wav", sample_rate=24000, channels=2), 24000, 2
    )


@needs_ffmpeg
def test_converting_a_file_onto_itself_works(tmp_path):
    path = make_wav_8bit(tmp_path / "clip.wav")
    convert_to_wav(path, path)
    assert_voice_wav(path)


@needs_ffmpeg
def test_failed_conversion_keeps_old_output_and_leaves_no_temp(tmp_path):
    bad = tmp_path / "broken.mp3"
    bad.write_bytes(b"this is not audio at all" * 10)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    dst = out_dir / "broken.wav"
    dst.write_bytes(b"previous")
    with pytest.raises(FfmpegError) as excinfo:
        convert_to_wav(bad, dst)
    assert "broken.mp3" in str(excinfo.value) and "exit code" in str(excinfo.value)
    assert dst.read_bytes() == b"previous"
    assert sorted(p.name for p in out_dir.iterdir()) == ["broken.wav"]


def test_missing_input_is_a_readable_error(tmp_path):
    with pytest.raises(FfmpegError, match="does not exist"):
        convert_to_wav(tmp_path / "nope.mp3", tmp_path / "out.wav", ffmpeg="ffmpeg")


@pytest.mark.parametrize("kwargs", [{"channels": 3}, {"sample_rate": 0}, {"sample_rate": 22050.0}])
def test_bad_format_arguments_are_rejected(tmp_path, kwargs):
    src = tmp_path / "in.wav"
    src.write_bytes(b"x")
    with pytest.raises(ValueError):
        convert_to_wav(src, tmp_path / "out.wav", ffmpeg="ffmpeg", **kwargs)


def test_unstartable_ffmpeg_is_a_readable_error(tmp_path):
    src = tmp_path / "in.wav"
    src.write_bytes(b"x")
    with pytest.raises(FfmpegError, match="could not be started"):
        convert_to_wav(src, tmp_path / "out.wav", ffmpeg=tmp_path / "no-such-ffmpeg")
    assert list(tmp_path.iterdir()) == [src]
