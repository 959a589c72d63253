"""Whisper QA: word alignment and flags (pure), real speech from Piper checked by Whisper tiny.en with one
word cut out, and auto-retry keeping the best of seeded takes from a scripted model."""

import numpy as np
import pytest
import soundfile as sf
import torch

from src.projects import ProjectService
from src.qa import (
    FLAG_CUT_OFF,
    FLAG_DROPPED,
    FLAG_REPEATED,
    FLAG_SILENCE,
    QaReport,
    QaSettings,
    SegmentChecker,
    align_words,
    normalize_words,
    score_take,
)
from src.settings import AppSettings, GenerateDefaults
from src.training.asr import FasterWhisperTranscriber
from tests.app_doubles import FakeTTS, make_context, make_voice
from tests.speech import FOX, ct2_tiny_en_dir, say
from tortoise.api import TTSResult
from tortoise.audio import OUTPUT_SAMPLE_RATE, resample
from tortoise.options import GenerationOptions

RATE = 16000


def tone(seconds, rate=RATE):
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * 200 * t) * np.hanning(len(t))).astype(np.float64)


def test_words_are_normalised_like_the_cleaners():
    words = normalize_words("Dr. Smith paid $5, [quietly] twice!")
    assert words == ["doctor", "smith", "paid", "five", "dollars", "twice"]
    assert normalize_words("It's 2 o'clock.") == ["it's", "two", "o'clock"]


def test_alignment_counts_each_kind_of_error():
    ops = align_words("a b c d".split(), "a x c c d".split())
    assert sorted(op for op, _, _ in ops) == ["=", "=", "=", "ins", "sub"]
    assert [op for op, _, _ in align_words("a b c".split(), "a c".split())] == ["=", "del", "="]


def test_a_clean_take_is_not_flagged():
    report = score_take("The fox jumps.", "the fox jumps", tone(1.0), RATE, QaSettings())
    assert report.wer == 0 and not report.flagged


def test_dropped_repeated_and_cut_off_words_are_flagged():
    dropped = score_take("the quick brown fox jumps", "the quick fox jumps", tone(1.0), RATE, QaSettings())
    assert dropped.dropped == ("brown",) and dropped.flags == (FLAG_DROPPED,)
    repeated = score_take("the fox jumps", "the fox fox jumps", tone(1.0), RATE, QaSettings())
    assert repeated.repeated == ("fox",) and FLAG_REPEATED in repeated.flags
    cut = score_take("the fox jumps over it", "the fox jumps", tone(1.0), RATE, QaSettings())
    assert cut.cut_off and cut.dropped == () and FLAG_CUT_OFF in cut.flags


def test_an_ending_cut_mid_sound_is_flagged_even_when_the_words_are_heard():
    t = np.arange(RATE) / RATE
    abrupt = 0.3 * np.sin(2 * np.pi * 200 * t)  # loud up to the last sample
    report = score_take("the fox", "the fox", abrupt, RATE, QaSettings())
    assert report.cut_off and FLAG_CUT_OFF in report.flags


def test_long_internal_silences_are_flagged_but_not_leading_or_trailing_ones():
    gap = np.concatenate([np.zeros(RATE), tone(0.5), np.zeros(int(1.5 * RATE)), tone(0.5), np.zeros(RATE)])
    report = score_take("a b", "a b", gap, RATE, QaSettings(max_silence_s=1.0))
    assert len(report.silences) == 1 and FLAG_SILENCE in report.flags
    start, end = report.silences[0]
    assert 1.45 <= start <= 1.6 and 2.9 <= end <= 3.1
    short = score_take("a b", "a b", gap, RATE, QaSettings(max_silence_s=2.0))
    assert short.silences == ()


def test_reports_round_trip_and_settings_ignore_bad_values():
    report = score_take("the fox jumps", "the fox", tone(1.0), RATE, QaSettings())
    assert QaReport.from_dict(report.to_dict()) == report
    assert QaSettings.from_dict({"enabled": "yes", "max_retries": 2.0, "odd": 1}) == QaSettings(max_retries=2)


@pytest.fixture(scope="module")
def transcriber():
    return FasterWhisperTranscriber(str(ct2_tiny_en_dir()), device="cpu", compute_type="int8")


@pytest.fixture(scope="module")
def fox(tmp_path_factory, transcriber):
    """Piper saying FOX, and the same audio with the word "fox" cut out (found by Whisper's word times)."""
    path = say(FOX, tmp_path_factory.mktemp("qa") / "fox.wav")
    wav, rate = sf.read(str(path), dtype="float32")
    transcriber.load()
    segments, _ = transcriber._model.transcribe(str(path), word_timestamps=True, language="en")
    words = [w for s in segments for w in s.words]
    word = next(w for w in words if w.word.strip(" .").lower() == "fox")
    cut = np.concatenate([wav[: int(word.start * rate)], wav[int(word.end * rate) :]])
    return wav, cut, rate


def test_whisper_qa_flags_the_segment_with_a_word_cut_out(fox, transcriber):
    wav, cut, rate = fox
    checker = SegmentChecker(lambda: transcriber)
    clean = checker.check(FOX, wav, rate, QaSettings())
    assert not clean.flagged, clean
    broken = checker.check(FOX, cut, rate, QaSettings())
    assert broken.flagged and "fox" in broken.dropped and broken.wer > clean.wer


class ScriptedTTS(FakeTTS):
    """Says the Piper take for seeds listed in `good`, the take with the cut word for any other seed."""

    def __init__(self, clean, cut, good):
        super().__init__()
        self.takes = {True: clean, False: cut}
        self.good = set(good)

    def tts(self, text, voice_samples=None, conditioning_latents=None, preset=None, seed=None, **overrides):
        options = GenerationOptions.from_preset(preset, **{k: v for k, v in overrides.items()
                                                           if k not in ("progress", "cancel")})  # fmt: skip
        self.calls.append((text, dict(seed=seed)))
        wave = self.takes[seed in self.good]
        return TTSResult([wave] * options.k, options, int(seed), notes=[], timings_s={})


def qa_service(tmp_path, transcriber, tts) -> ProjectService:
    ctx = make_context(tmp_path, tts, settings=AppSettings(output_sample_rate=24000))
    make_voice(ctx.paths.voices_dir, "amy", (1.0,))
    return ProjectService(
        ctx.paths, ctx.generator, ctx.current_settings, lambda: SegmentChecker(lambda: transcriber)
    )


def to_24k(wav, rate):
    return resample(torch.from_numpy(wav).reshape(1, -1), rate, OUTPUT_SAMPLE_RATE)


@pytest.mark.slow
def test_auto_retry_keeps_the_best_of_the_seeded_takes(tmp_path, fox, transcriber):
    wav, cut, rate = fox
    first_retry_seed = (100 + 7919) % (2**32 - 1) + 1
    tts = ScriptedTTS(to_24k(wav, rate), to_24k(cut, rate), good={first_retry_seed})
    service = qa_service(tmp_path, transcriber, tts)
    values = GenerateDefaults(seed=100, num_autoregressive_samples=2, candidates=1)
    project = service.create("qa", "amy", FOX, values, qa=QaSettings(enabled=True, max_retries=3))
    row = service.render_row("amy", "qa", project.rows[0].id).project.rows[0]
    assert [c.seed for c in row.candidates] == [100, first_retry_seed]  # stopped once a take passed
    assert "fox" in row.candidates[0].qa["dropped"] and not row.candidates[1].qa["flags"]
    assert row.chosen == 1 and row.qa["wer"] < row.candidates[0].qa["wer"]


@pytest.mark.slow
def test_when_every_retry_is_flagged_the_lowest_score_is_kept(tmp_path, fox, transcriber):
    wav, cut, rate = fox
    tts = ScriptedTTS(to_24k(wav, rate), to_24k(cut, rate), good=set())
    service = qa_service(tmp_path, transcriber, tts)
    values = GenerateDefaults(seed=100, num_autoregressive_samples=2, candidates=1)
    project = service.create("qa", "amy", FOX, values, qa=QaSettings(enabled=True, max_retries=1))
    row = service.render_row("amy", "qa", project.rows[0].id).project.rows[0]
    assert len(row.candidates) == 2 and all(c.qa["flags"] for c in row.candidates)
    assert row.chosen == 0  # equal scores: the earlier take
