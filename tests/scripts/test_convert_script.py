"""convert/to_voice_wav.sh: any audio/video file or folder -> 22050 Hz mono 16-bit WAVs."""

import os
import shutil
import sys

import pytest

from tests.media import assert_voice_wav, make_mp3_stereo_44k, make_wav_8bit
from tests.scripts.fakes import make_checkout, run

pytestmark = pytest.mark.skipif(
    sys.platform != "linux", reason="the .sh scripts are tested on Linux"
)
needs_ffmpeg = pytest.mark.usefixtures("require_ffmpeg")

SCRIPT = "convert/to_voice_wav.sh"


@pytest.fixture
def root(tmp_path):
    """A checkout holding just the converter, so voices/ and bin/ are private to the test."""
    return make_checkout(tmp_path / "repo", SCRIPT)


@pytest.fixture
def media(tmp_path):
    folder = tmp_path / "raw"
    folder.mkdir()
    make_mp3_stereo_44k(folder / "Interview.MP3")
    make_wav_8bit(folder / "old_phone.wav")
    (folder / "notes.txt").write_text("not audio")
    return folder


def convert(root, *args, env=None):
    return run(["bash", str(root / SCRIPT), *args], root, env or dict(os.environ))


@needs_ffmpeg
def test_folder_is_converted_into_voices_named_after_it(root, media):
    result = convert(root, str(media))
    assert result.returncode == 0, result.stderr
    out = root / "voices" / "raw"
    assert sorted(p.name for p in out.iterdir()) == ["Interview.wav", "old_phone.wav"]
    for wav in out.iterdir():
        assert_voice_wav(wav)
    assert "skipping notes.txt" in result.stdout


@needs_ffmpeg
def test_single_file_with_voice_name(root, media):
    result = convert(root, str(media / "Interview.MP3"), "alice")
    assert result.returncode == 0, result.stderr
    assert_voice_wav(root / "voices" / "alice" / "Interview.wav")


@needs_ffmpeg
def test_out_dir_option_and_rerun_overwrites(root, media, tmp_path):
    out = tmp_path / "out"
    assert convert(root, "-o", str(out), str(media / "old_phone.wav")).returncode == 0
    result = convert(root, "-o", str(out), str(media / "old_phone.wav"))
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["old_phone.wav"]
    assert_voice_wav(out / "old_phone.wav")


@needs_ffmpeg
def test_bin_ffmpeg_is_preferred_over_path(root, media, tmp_path):
    calls = tmp_path / "bin-calls.txt"
    wrapper = root / "bin" / "ffmpeg"
    wrapper.parent.mkdir()
    wrapper.write_text(f'#!/bin/sh\necho used >> "{calls}"\nexec "{shutil.which("ffmpeg")}" "$@"\n')
    wrapper.chmod(0o755)
    result = convert(root, "-o", str(tmp_path / "out"), str(media))
    assert result.returncode == 0, result.stderr
    assert calls.read_text().split() == ["used", "used"]


@needs_ffmpeg
def test_a_broken_file_fails_the_run_but_not_the_others(root, media, tmp_path):
    (media / "broken.mp3").write_bytes(b"not really an mp3" * 20)
    out = tmp_path / "out"
    result = convert(root, "-o", str(out), str(media))
    assert result.returncode == 1
    assert "1 of 3 file(s) could not be converted" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["Interview.wav", "old_phone.wav"]


def test_missing_ffmpeg_names_both_fixes(root, tmp_path):
    clip = tmp_path / "clip.wav"
    clip.write_bytes(b"RIFF")
    env = {"PATH": str(tmp_path / "nothing-here")}
    result = run(["/bin/bash", str(root / SCRIPT), str(clip)], root, env)
    assert result.returncode == 1
    assert "ffmpeg was not found" in result.stderr
    assert "install ffmpeg system-wide" in result.stderr
    assert f"{root}/bin/" in result.stderr


def test_usage_errors(root, tmp_path):
    assert convert(root).returncode == 2
    result = convert(root, str(tmp_path / "missing.mp3"))
    assert result.returncode == 1 and "does not exist" in result.stderr
    assert "22050 Hz" in convert(root, "--help").stdout
