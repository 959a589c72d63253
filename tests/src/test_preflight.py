"""Run preflight: disk space, the [bracket] aligner and ffmpeg are checked before any work."""

import os
from collections import namedtuple
from pathlib import Path

import pytest

from src.errors import MissingRequirement
from src.preflight import (
    SPACE_MARGIN_BYTES,
    check_aligner,
    check_disk_space,
    check_ffmpeg,
    estimate_output_bytes,
    needs_aligner,
)
from tests.app_doubles import TokenizedFakeTTS, make_voice
from tests.conftest import REFERENCE_DIR
from tortoise.redaction import Wav2VecAligner
from tortoise.tokenizer import VoiceBpeTokenizer

Usage = namedtuple("Usage", "total used free")


def test_estimate_grows_with_lines_candidates_and_rate():
    one = estimate_output_bytes(1, 1, 24000, 500)
    assert 1_000_000 < one < 2_000_000  # 23 s of 16-bit audio at 24 kHz, plus metadata
    assert estimate_output_bytes(1, 3, 24000, 500) == 3 * one
    assert estimate_output_bytes(4, 1, 24000, 500) > 8 * (one - 600_000)  # lines and combined clip
    assert estimate_output_bytes(1, 1, 48000, 500) > one


def test_disk_space_refused_with_what_is_free_and_needed(tmp_path):
    folder = tmp_path / "results" / "amy"  # not made yet: the nearest existing parent is measured
    seen = []

    def small_disk(path):
        seen.append(path)
        return Usage(10**9, 10**9 - 20 * 2**20, 20 * 2**20)

    with pytest.raises(MissingRequirement, match=r"Not enough disk space.*20 MB free.*1 MB"):
        check_disk_space(folder, 2**20, small_disk)
    assert seen == [str(tmp_path)]
    check_disk_space(folder, 2**20, lambda path: Usage(0, 0, SPACE_MARGIN_BYTES + 2**20))


def test_needs_aligner_for_brackets_and_emotions():
    assert needs_aligner(["[I am really happy,] Hi."]) and needs_aligner(["a", "b [c] d"])
    assert not needs_aligner(["Plain text.", "More."])


@pytest.fixture(scope="module")
def tokenizer():
    return VoiceBpeTokenizer(REFERENCE_DIR / "tokenizer.json")


def test_missing_aligner_is_refused_naming_the_switch(tmp_path, tokenizer):
    aligner = Wav2VecAligner(tmp_path / "no-model", tmp_path / "no-tokenizer", local_files_only=True)
    tts = TokenizedFakeTTS(tokenizer, aligner=aligner)
    with pytest.raises(MissingRequirement) as caught:
        check_aligner(tts, "Happy")
    message = str(caught.value)
    assert "the Emotion 'Happy' adds a hidden [bracketed] prefix" in message
    assert "wav2vec2" in message and "untick 'Cut [Bracketed] Words'" in message
    with pytest.raises(MissingRequirement, match="the prompt has \\[bracketed\\] words"):
        check_aligner(tts, "None")
    check_aligner(object(), "Happy")  # a model without an aligner interface needs nothing


def test_ffmpeg_needed_only_for_files_libsndfile_cannot_read(tmp_path, monkeypatch):
    voice = make_voice(tmp_path / "voices", "amy", (0.5,))
    odd = voice / "clip.m4a"
    odd.write_bytes(b"\x00\x00\x00\x20ftypM4A not really decodable by libsndfile")
    good = sorted(voice.glob("*.wav"))
    empty_path = tmp_path / "empty-path"
    empty_path.mkdir()
    monkeypatch.setenv("PATH", str(empty_path))  # no ffmpeg anywhere (and none in root/bin)
    assert check_ffmpeg(tmp_path, good, label="voice 'amy'") is None
    note = check_ffmpeg(tmp_path, [*good, odd], label="voice 'amy'")
    assert note and "clip.m4a of voice 'amy' can only be read with ffmpeg" in note
    with pytest.raises(MissingRequirement, match="clip.m4a.*only be read with ffmpeg.*bin"):
        check_ffmpeg(tmp_path, [odd], label="voice 'amy'")
    # with an ffmpeg in bin/ the same files pass
    (tmp_path / "bin").mkdir()
    binary = tmp_path / "bin" / ("ffmpeg.exe" if os.name == "nt" else "ffmpeg")
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    assert check_ffmpeg(Path(tmp_path), [odd], label="voice 'amy'") is None
