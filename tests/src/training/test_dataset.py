"""Tests for src/training/dataset.py: slicing rules, file formats, the train/validation split, bad inputs,
clip edits.

Most tests script the transcriber (FakeTranscriber) so the rules are checked exactly; one test runs the whole
preparation on Piper speech with faster-whisper tiny.en.
"""

import json
import subprocess

import numpy as np
import pytest
import soundfile as sf

from src.errors import DatasetEmpty, InvalidInput, VoiceNotFound
from src.training.asr import FasterWhisperTranscriber, Segment, Transcriber
from src.training.dataset import (
    MAX_CLIP_S,
    ClipFlag,
    ClipNotFound,
    DatasetOptions,
    clip_flags,
    delete_clip,
    edit_clip_text,
    find_unknown_characters,
    load_dataset,
    prepare_dataset,
    sanitize_segments,
    split_for,
)
from tests.conftest import speech_like
from tests.speech import FOX, PARAGRAPH, THANKS, assert_heard, ct2_tiny_en_dir, say
from tortoise.tokenizer import VoiceBpeTokenizer

SR = 22050


class FakeTranscriber(Transcriber):
    """Returns scripted segments, one list per call, in call order (files are processed by name)."""

    backend = "fake"

    def __init__(self, *scripted: list[tuple[float, float, str]]):
        super().__init__("fake")
        self.scripted = list(scripted)
        self.calls: list[int] = []  # number of 16 kHz samples per call
        self.unloads = 0

    def _load(self):
        return object()

    def _transcribe(self, audio, language):
        self.calls.append(len(audio))
        rows = [
            {"id": i, "start": a, "end": b, "text": " " + t}
            for i, (a, b, t) in enumerate(self.scripted.pop(0))
        ]
        return {"text": "".join(r["text"] for r in rows), "segments": rows, "language": language}

    def unload(self):
        self.unloads += 1
        super().unload()


def write_wav(path, seconds, sample_rate=SR, channels=1, seed=0):
    wave = speech_like(seconds, sample_rate, seed)[0].numpy()
    data = np.stack([wave, -wave], axis=1) if channels == 2 else wave
    sf.write(path, data, sample_rate, subtype="PCM_16")
    return path


def read_list(path):
    text = path.read_text(encoding="utf-8")
    assert not text.endswith("\n")
    return [line.split("|") for line in text.split("\n")] if text else []


@pytest.fixture(scope="module")
def tokenizer(tokenizer_path):
    return VoiceBpeTokenizer(tokenizer_path)


# --- pure rules ---


def test_short_segments_merge_into_the_previous_one():
    segments = [Segment(0.0, 0.3, "Oh,"), Segment(0.3, 2.0, "hello there."), Segment(2.0, 2.4, "Yes."),
                Segment(1.0, 1.5, "covered"), Segment(2.5, 4.0, "Goodbye now.")]  # fmt: skip
    assert sanitize_segments(segments) == [
        Segment(0.0, 2.4, "Oh, hello there. Yes."),  # short first merged forward, short third appended
        Segment(2.5, 4.0, "Goodbye now."),  # the covered one dropped
    ]
    assert sanitize_segments([Segment(0.0, 0.2, "Hi.")]) == [Segment(0.0, 0.2, "Hi.")]


def test_split_thresholds():
    options = DatasetOptions()  # text < 12 characters or audio < 1 s -> validation
    assert split_for("Thank you.", 3.0, options) == "validation"
    assert split_for("A long enough sentence.", 0.9, options) == "validation"
    assert split_for("A long enough sentence.", 1.0, options) == "train"
    off = DatasetOptions(validation_text_length=0, validation_audio_length_s=0)
    assert split_for("Hi.", 0.7, off) == "train"
    with pytest.raises(InvalidInput):
        DatasetOptions(validation_audio_length_s=-1)


def test_clip_flags_and_unknown_characters(tokenizer):
    assert clip_flags("fine", SR) == ()
    assert clip_flags("", int(0.5 * SR)) == (ClipFlag.TOO_SHORT, ClipFlag.EMPTY_TEXT)
    assert clip_flags("x" * 201, 255996) == (ClipFlag.TOO_LONG, ClipFlag.TEXT_TOO_LONG)
    assert clip_flags("x" * 200, 255995) == ()
    assert find_unknown_characters("It costs 5 % & more @ home.", tokenizer) == "%&@"
    assert find_unknown_characters('Café [sic] {x} — ok, "fine"!', tokenizer) == ""  # mapped like the trainer
    assert find_unknown_characters("anything %", None) == ""


# --- prepare_dataset with a scripted transcriber ---


@pytest.fixture
def prepared(tmp_path, tokenizer):
    """A voice with a stereo 44.1 kHz clip, a short one, a long one to slice, a corrupt and a silent file."""
    voice = tmp_path / "voices" / "alice"
    voice.mkdir(parents=True)
    write_wav(voice / "a_stereo.wav", 3.0, sample_rate=44100, channels=2)
    write_wav(voice / "b_short.flac", 0.8, seed=1)
    write_wav(voice / "c_long.wav", 14.0, seed=2)
    (voice / "d_corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" * 10)
    sf.write(voice / "e_silent.wav", np.zeros(SR), SR, subtype="PCM_16")
    (voice / "notes.txt").write_text("not audio")
    long_segments = [(0.0, 0.4, "Um,"), (0.4, 5.0, "this is the first sentence of the long take."),
                     (5.0, 5.3, "Right."), (5.3, 9.0, "Here comes the second one, 100 % sure."),
                     (9.0, 14.0, "")]  # fmt: skip
    fake = FakeTranscriber(
        [(0.0, 3.0, "A stereo recording at forty four kilohertz.")],
        [(0.0, 0.8, "Thank you.")],
        long_segments,
    )
    out = tmp_path / "training" / "alice"
    options = DatasetOptions(slice_start_offset_s=-0.1, slice_end_offset_s=0.2)
    steps = []
    summary = prepare_dataset(voice, out, fake, "English", options, lambda f, d: steps.append((f, d)),
                              tokenizer=tokenizer)  # fmt: skip
    return summary, out, fake, steps


def test_prepare_writes_clips_lists_and_whisper_json(prepared):
    summary, out, fake, steps = prepared
    assert len(fake.calls) == 3 and fake.unloads == 1
    assert fake.calls[0] == pytest.approx(3.0 * 16000, abs=2)  # Whisper gets 16 kHz audio
    train, validation = read_list(out / "train.txt"), read_list(out / "validation.txt")
    assert train == [
        ["audio/a_stereo.wav", "A stereo recording at forty four kilohertz."],
        ["audio/c_long_00000.wav", "Um, this is the first sentence of the long take. Right."],
        ["audio/c_long_00001.wav", "Here comes the second one, 100 % sure."],
    ]
    assert validation == [["audio/b_short.wav", "Thank you."]]
    expected_s = {"a_stereo": 3.0, "b_short": 0.8, "c_long_00000": 5.3 + 0.2, "c_long_00001": 9.2 - 5.2}
    for stem, seconds in expected_s.items():
        info = sf.info(out / "audio" / f"{stem}.wav")
        assert (info.samplerate, info.channels, info.subtype) == (SR, 1, "PCM_16")
        assert info.frames == pytest.approx(seconds * SR, abs=2), stem
    assert sorted(p.name for p in (out / "audio").iterdir()) == sorted(f"{s}.wav" for s in expected_s)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left
    results = json.loads((out / "whisper.json").read_text(encoding="utf-8"))
    assert sorted(results) == ["a_stereo.wav", "b_short.flac", "c_long.wav"]
    assert results["b_short.flac"]["segments"][0]["text"] == " Thank you."
    assert "\t" in (out / "whisper.json").read_text(encoding="utf-8")
    assert steps[0] == (0.0, "Transcribing clip 1 of 5: a_stereo.wav") and steps[-1][0] == 1.0
    labels = [text.split(":")[0] for _, text in steps[:5]]
    assert labels == [f"Transcribing clip {i} of 5" for i in range(1, 6)]


def test_prepare_summary_reports_counts_skips_flags_and_warnings(prepared):
    summary, out, _, _ = prepared
    assert (summary.train_count, summary.validation_count) == (3, 1)
    assert summary.total_minutes == pytest.approx((3.0 + 0.8 + 5.5 + 4.0) / 60, abs=1e-3)
    assert [s.name for s in summary.skipped] == ["d_corrupt.wav", "e_silent.wav"]
    assert "cannot be read" in summary.skipped[0].reason and "silent" in summary.skipped[1].reason
    by_path = {c.path: c for c in summary.clips}
    assert by_path["audio/c_long_00002.wav"].split == "dropped"
    assert by_path["audio/c_long_00002.wav"].flags == (ClipFlag.EMPTY_TEXT,)
    assert by_path["audio/c_long_00001.wav"].flags == (ClipFlag.UNKNOWN_CHARACTERS,)
    assert by_path["audio/c_long_00001.wav"].unknown_characters == "%"
    assert by_path["audio/a_stereo.wav"].source == "a_stereo.wav"
    text = "\n".join(summary.warnings)
    assert "d_corrupt.wav" in text and "Slices left out: 1" in text and "(%)" in text
    assert "Processed dataset to:" in summary.message and str(out) in summary.message


def test_a_file_over_the_text_limit_is_sliced_even_when_short(tmp_path):
    voice = tmp_path / "v"
    voice.mkdir()
    write_wav(voice / "take.wav", 8.0)
    sentence = "word " * 25  # 125 characters each, 250 together
    fake = FakeTranscriber([(0.0, 4.0, sentence), (4.0, 8.0, sentence)])
    summary = prepare_dataset(voice, tmp_path / "ds", fake)
    assert [c.path for c in summary.clips] == ["audio/take_00000.wav", "audio/take_00001.wav"]
    halves = FakeTranscriber([(0.0, 4.0, "First half of the take."), (4.0, 8.0, "Second half of the take.")])
    sliced = prepare_dataset(voice, tmp_path / "ds2", halves, options=DatasetOptions(always_slice=True))
    assert [c.path for c in sliced.clips] == ["audio/take_00000.wav", "audio/take_00001.wav"]
    assert MAX_CLIP_S == pytest.approx(11.6097505669)


def test_everything_in_validation_names_the_thresholds(tmp_path):
    voice = tmp_path / "v"
    voice.mkdir()
    write_wav(voice / "one.wav", 2.0)
    write_wav(voice / "two.wav", 2.0)
    summary = prepare_dataset(
        voice, tmp_path / "ds", FakeTranscriber([(0, 2, "Hi there.")], [(0, 2, "Okay.")])
    )
    assert (summary.train_count, summary.validation_count) == (0, 2)
    assert (tmp_path / "ds" / "train.txt").read_text() == ""
    assert any(
        "train.txt is empty" in w and "Validation Text Length Threshold" in w for w in summary.warnings
    )


def test_a_single_clip_dataset_is_warned_about(tmp_path):
    voice = tmp_path / "v"
    voice.mkdir()
    write_wav(voice / "one.wav", 2.0)
    summary = prepare_dataset(voice, tmp_path / "ds", FakeTranscriber([(0, 2, "Only one sentence here.")]))
    assert summary.train_count == 1 and any("only one clip" in w for w in summary.warnings)


def test_no_audio_and_missing_voice_are_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no audio")
    with pytest.raises(DatasetEmpty, match="has no audio files"):
        prepare_dataset(tmp_path / "empty", tmp_path / "ds", FakeTranscriber())
    with pytest.raises(VoiceNotFound):
        prepare_dataset(tmp_path / "nowhere", tmp_path / "ds", FakeTranscriber())


def test_no_speech_anywhere_is_an_error_and_keeps_the_previous_dataset(tmp_path):
    voice = tmp_path / "v"
    voice.mkdir()
    write_wav(voice / "noise.wav", 2.0)
    out = tmp_path / "ds"
    prepare_dataset(voice, out, FakeTranscriber([(0, 2, "An earlier dataset sentence.")]))
    before = (out / "train.txt").read_text()
    fake = FakeTranscriber([])
    with pytest.raises(DatasetEmpty, match="noise.wav: no speech was recognised"):
        prepare_dataset(voice, out, fake)
    assert fake.unloads == 1  # unloaded on errors too
    assert (out / "train.txt").read_text() == before and (out / "audio" / "noise.wav").is_file()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_formats_libsndfile_cannot_read_go_through_ffmpeg(tmp_path):
    voice = tmp_path / "v"
    voice.mkdir()
    source = write_wav(tmp_path / "src.wav", 2.0)
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(source), "-c:a", "aac", str(voice / "take.m4a")],
                   check=True)  # fmt: skip
    summary = prepare_dataset(voice, tmp_path / "ds", FakeTranscriber([(0, 2, "Decoded by ffmpeg.")]))
    info = sf.info(tmp_path / "ds" / "audio" / "take.wav")
    assert summary.train_count == 1 and (info.samplerate, info.channels) == (SR, 1)
    assert info.duration == pytest.approx(2.0, abs=0.05)


# --- review table: edit and delete ---


def test_edit_and_delete_rewrite_the_lists(prepared, tokenizer):
    _, out, _, _ = prepared
    clip = edit_clip_text(out, "audio/c_long_00001.wav", "Here comes the second one,\nfully sure.", tokenizer)
    assert clip.text == "Here comes the second one, fully sure." and clip.flags == ()
    assert read_list(out / "train.txt")[2] == [
        "audio/c_long_00001.wav",
        "Here comes the second one, fully sure.",
    ]
    edit_clip_text(out, "audio/b_short.wav", "Thanks.")
    assert read_list(out / "validation.txt") == [["audio/b_short.wav", "Thanks."]]
    with pytest.raises(InvalidInput, match=r"'\|'"):
        edit_clip_text(out, "audio/b_short.wav", "a|b")
    with pytest.raises(InvalidInput, match="delete the clip"):
        edit_clip_text(out, "audio/b_short.wav", "  ")
    with pytest.raises(ClipNotFound):
        edit_clip_text(out, "audio/nope.wav", "text")

    transcriptions = json.loads((out / "whisper.json").read_text(encoding="utf-8"))
    assert "a_stereo.wav" in transcriptions and len(transcriptions["c_long.wav"]["segments"]) == 5
    delete_clip(out, "audio/a_stereo.wav")
    delete_clip(out, "audio/c_long_00001.wav", delete_audio=False)  # whisper.json follows the review
    transcriptions = json.loads((out / "whisper.json").read_text(encoding="utf-8"))
    assert "a_stereo.wav" not in transcriptions and "b_short.flac" in transcriptions
    assert "Here comes the second one" not in json.dumps(transcriptions["c_long.wav"]["segments"])
    assert "the first sentence" in json.dumps(transcriptions["c_long.wav"]["segments"])
    train = read_list(out / "train.txt")
    (out / "train.txt").write_text("\n".join("|".join(r) for r in train + [["audio/c_long_00001.wav",
                                  "Here comes the second one, fully sure."]]), encoding="utf-8")  # fmt: skip
    assert [row[0] for row in read_list(out / "train.txt")] == [
        "audio/c_long_00000.wav",
        "audio/c_long_00001.wav",
    ]
    assert not (out / "audio" / "a_stereo.wav").exists()
    delete_clip(out, "audio/b_short.wav", delete_audio=False)
    assert read_list(out / "validation.txt") == [] and (out / "audio" / "b_short.wav").exists()
    with pytest.raises(ClipNotFound):
        delete_clip(out, "audio/a_stereo.wav")

    rows = load_dataset(out, tokenizer)
    assert [(r.path, r.split) for r in rows] == [
        ("audio/c_long_00000.wav", "train"),
        ("audio/c_long_00001.wav", "train"),
    ]
    assert rows[0].duration_s == pytest.approx(5.5, abs=1e-3)
    with pytest.raises(DatasetEmpty):
        load_dataset(out / "nothing-here")


# --- the real thing: Piper speech, faster-whisper tiny.en ---


@pytest.mark.slow
def test_prepare_real_speech_with_faster_whisper(tmp_path):
    from tests.speech import require_speech_packages

    require_speech_packages()
    voice = tmp_path / "voices" / "joe"
    say(FOX, voice / "fox.wav")
    say(THANKS, voice / "thanks.wav")
    say(PARAGRAPH, voice / "paragraph.wav")
    assert sf.info(voice / "paragraph.wav").duration > MAX_CLIP_S  # too long to use whole: it gets sliced
    transcriber = FasterWhisperTranscriber(str(ct2_tiny_en_dir()), device="cpu", compute_type="int8")
    out = tmp_path / "training" / "joe"
    summary = prepare_dataset(voice, out, transcriber, "en")
    assert not transcriber.is_loaded and summary.skipped == []

    train, validation = read_list(out / "train.txt"), read_list(out / "validation.txt")
    assert [path for path, _ in validation] == ["audio/thanks.wav"]
    assert_heard(validation[0][1], THANKS)
    paths = [path for path, _ in train]
    assert "audio/fox.wav" in paths and "audio/fox.wav" == paths[0]
    assert_heard(train[0][1], FOX)
    pieces = [text for path, text in train if path.startswith("audio/paragraph_")]
    assert len(pieces) >= 2
    assert_heard(" ".join(pieces), PARAGRAPH, fraction=0.7)
    for path, _ in train + validation:
        info = sf.info(out / path)
        assert (info.samplerate, info.channels, info.subtype) == (SR, 1, "PCM_16")
        assert 0.6 <= info.duration <= MAX_CLIP_S
    assert sf.info(out / "audio" / "fox.wav").duration == pytest.approx(
        sf.info(voice / "fox.wav").duration, abs=0.01
    )
    results = json.loads((out / "whisper.json").read_text(encoding="utf-8"))
    assert sorted(results) == ["fox.wav", "paragraph.wav", "thanks.wav"]
    assert results["paragraph.wav"]["language"] == "en"
