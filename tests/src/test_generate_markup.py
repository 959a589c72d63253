"""Generator (src/generate.py) and Fast mode (src/fast_generate.py) with the global pronunciation lexicon
and inline markup: what TorToiSe hears is respelled while the files keep the user's text, `[pause]` inserts
exact silence, `{speed}` stretches a line's audio, bad markup and bad lexicons stop a run before it starts."""

import json

import numpy as np
import pytest
import soundfile as sf

from src.errors import InvalidInput
from src.generate import GenerateRequest
from src.lexicon import LexiconError, global_lexicon_path, save_lexicon
from src.markup import MarkupError
from src.metadata import read_metadata
from src.settings import AppSettings
from tests.app_doubles import (
    TINY_TTS_OPTIONS,
    FakeAligner,
    FakeTTS,
    TokenizedFakeTTS,
    make_context,
    make_voice,
    tiny_tts,
)
from tests.conftest import REFERENCE_DIR
from tortoise import StreamSettings
from tortoise.audio import OUTPUT_SAMPLE_RATE
from tortoise.tokenizer import VoiceBpeTokenizer

SMALL = dict(num_autoregressive_samples=4, diffusion_iterations=4)
KEEP_ALL = AppSettings(output_sample_rate=OUTPUT_SAMPLE_RATE, delete_non_final_output=False)


def request(**changes):
    return GenerateRequest(**{"text": "Hello there.", "voice": "amy", "seed": 11, **SMALL, **changes})


def context(tmp_path, tts, settings=KEEP_ALL, **kwargs):
    ctx = make_context(tmp_path, tts, settings=settings, **kwargs)
    make_voice(ctx.paths.voices_dir, "amy", (1.5, 2.0))
    return ctx


def run_dirs(ctx):
    folder = ctx.paths.results_dir / "amy"
    return sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []


def frames(path):
    return sf.info(path).frames


def samples(path):
    return sf.read(path, dtype="float32")[0]


@pytest.fixture(scope="module")
def model(tiny_models):
    return tiny_tts(tiny_models)


@pytest.fixture
def heard(model, monkeypatch):
    """The prompts the tiny TextToSpeech receives (its real tts/tts_stream, wrapped)."""
    prompts: list[str] = []
    tts, tts_stream = model.tts, model.tts_stream

    def record_tts(text, *args, **kwargs):
        prompts.append(text)
        return tts(text, *args, **kwargs)

    def record_stream(text, *args, **kwargs):
        prompts.append(text)
        return tts_stream(text, *args, **kwargs)

    monkeypatch.setattr(model, "tts", record_tts)
    monkeypatch.setattr(model, "tts_stream", record_stream)
    return prompts


@pytest.fixture
def tiny_ctx(tmp_path, model):
    ctx = context(tmp_path, model, tts_options=TINY_TTS_OPTIONS)
    ctx.fast_generator.stream_settings = StreamSettings(4, 4, 256)
    return ctx


# ------------------------------------------------------------------ lexicon


def test_the_lexicon_respells_what_tortoise_hears_and_the_files_keep_what_was_typed(tiny_ctx, heard):
    save_lexicon(global_lexicon_path(tiny_ctx.paths.config_dir), [("SQL", "sequel"), ("nginx", "engine x")])
    text = "SQL beats MySQL.\nNginx serves it."
    result = tiny_ctx.generator.generate(request(text=text, delimiter="\\n"))
    assert heard == ["sequel beats MySQL.", "Engine x serves it."]  # whole words only; capital kept
    assert result.lines == ("SQL beats MySQL.", "Nginx serves it.")
    assert read_metadata(result.run_dir / "combined.wav").text == text
    assert read_metadata(result.run_dir / "result_0_0.wav").text == "SQL beats MySQL."
    assert json.loads((result.run_dir / "input.txt").read_text())["text"] == text


def test_the_lexicon_is_read_at_each_run(tiny_ctx, heard):
    tiny_ctx.generator.generate(request(text="SQL."))
    save_lexicon(global_lexicon_path(tiny_ctx.paths.config_dir), [("SQL", "sequel")])
    tiny_ctx.generator.generate(request(text="SQL."))
    assert heard == ["SQL.", "sequel."]


def test_the_lexicon_applies_in_fast_mode(tiny_ctx, heard):
    save_lexicon(global_lexicon_path(tiny_ctx.paths.config_dir), [("SQL", "sequel")])
    result = tiny_ctx.generator.generate(request(text="SQL rocks.", generation_mode="Fast"))
    assert heard == ["sequel rocks."]
    assert read_metadata(result.files[0]).text == "SQL rocks."


def test_the_emotion_prefix_is_not_respelled(tmp_path):
    fake = FakeTTS()
    ctx = context(tmp_path, fake)
    save_lexicon(global_lexicon_path(ctx.paths.config_dir), [("sad", "blue"), ("Hello", "Howdy")])
    ctx.generator.generate(request(emotion="Sad"))
    assert fake.calls[0][0] == "[I am really sad,] Howdy there."


def test_line_splitting_measures_the_respelled_text(tmp_path):
    tts = TokenizedFakeTTS(VoiceBpeTokenizer(REFERENCE_DIR / "tokenizer.json"), text_token_limit=40)
    ctx = context(tmp_path, tts)
    long_respelling = "structured query language as spoken by database people"
    save_lexicon(global_lexicon_path(ctx.paths.config_dir), [("SQL", long_respelling)])
    text = "SQL and SQL and SQL and SQL."
    assert tts.count_text_tokens(text) <= 40 < tts.count_text_tokens(text.replace("SQL", long_respelling))
    result = ctx.generator.generate(request(text=text))
    prompts = [call[0] for call in tts.calls]
    assert len(prompts) >= 2 and all(tts.count_text_tokens(p) <= 40 for p in prompts)
    assert all("SQL" not in p for p in prompts)
    assert " ".join(result.lines) == text and read_metadata(result.files[0]).text == text


def test_a_lexicon_file_with_a_loop_stops_the_run_before_anything_renders(tmp_path):
    fake = FakeTTS()
    ctx = context(tmp_path, fake)
    entries = [{"word": "tomato", "respelling": "tomahto"}, {"word": "tomahto", "respelling": "tomato"}]
    data = {"schema_version": 1, "entries": entries}
    global_lexicon_path(ctx.paths.config_dir).write_text(json.dumps(data))  # by hand: never checked
    for mode in ("Standard", "Fast"):
        with pytest.raises(LexiconError, match=r"(?s)Rows 1, 2 form a loop.*Lexicon & Preview tab"):
            ctx.generator.generate(request(generation_mode=mode))
    assert fake.calls == [] and run_dirs(ctx) == []
    assert global_lexicon_path(ctx.paths.config_dir).is_file()  # kept for the user to fix


def test_an_unreadable_lexicon_is_set_aside_with_a_note(tmp_path):
    ctx = context(tmp_path, FakeTTS())
    global_lexicon_path(ctx.paths.config_dir).write_text("{not json")
    result = ctx.generator.generate(request())
    assert any("lexicon.json.bak" in note for note in result.notes)
    assert (ctx.paths.config_dir / "lexicon.json.bak").read_text() == "{not json"


# ------------------------------------------------------------------ markup


def test_a_pause_inserts_exactly_that_much_silence(tiny_ctx, heard):
    result = tiny_ctx.generator.generate(request(text="Hello there. [pause 0.8s] Goodbye now."))
    assert heard == ["Hello there.", "Goodbye now."]  # markup never reaches the tokenizer
    assert [p.name for p in result.files] == ["combined.wav"]
    first, second = result.run_dir / "result_0_0.wav", result.run_dir / "result_1_0.wav"
    gap = round(0.8 * OUTPUT_SAMPLE_RATE)
    assert frames(result.files[0]) == frames(first) + gap + frames(second)
    combined = samples(result.files[0])
    start = frames(first)
    assert not combined[start : start + gap].any()
    np.testing.assert_array_equal(combined[:start], samples(first))
    np.testing.assert_array_equal(combined[start + gap :], samples(second))
    assert read_metadata(result.files[0]).text == "Hello there. [pause 0.8s] Goodbye now."
    assert read_metadata(first).text == "Hello there." and read_metadata(second).text == "Goodbye now."


def test_a_speed_span_stretches_its_line(tiny_ctx, heard):
    plain = tiny_ctx.generator.generate(request(text="Hello there."))
    slow = tiny_ctx.generator.generate(request(text="{speed 0.5}Hello there.{/speed}"))
    assert heard == ["Hello there.", "Hello there."]
    ratio = frames(slow.files[0]) / frames(plain.files[0])
    assert ratio == pytest.approx(2.0, rel=0.02)
    stretched, original = samples(slow.files[0]), samples(plain.files[0])
    tail = len(stretched) // 4  # stretched, not padded: the end carries sound where the original does
    assert np.abs(stretched[-tail:]).max() > 0.1 * np.abs(original[-tail // 2 :]).max()
    assert read_metadata(slow.files[0]).text == "{speed 0.5}Hello there.{/speed}"


def test_markup_pieces_become_lines_with_their_own_speed_and_pause(tmp_path):
    fake = FakeTTS()
    ctx = context(tmp_path, fake)
    text = "[pause 0.25] Hello {speed 0.5}slow words{/speed} there. [pause 0.5s]"
    result = ctx.generator.generate(request(text=text))
    assert [call[0] for call in fake.calls] == ["Hello", "slow words", "there."]
    clips = [result.run_dir / f"result_{i}_0.wav" for i in range(3)]
    assert [read_metadata(c).text for c in clips] == ["Hello", "{speed 0.5}slow words{/speed}", "there."]

    def fake_frames(line):  # FakeTTS speaks 0.2 s + 10 ms per character
        return int((0.2 + 0.01 * len(line)) * OUTPUT_SAMPLE_RATE)

    assert frames(clips[1]) == 2 * fake_frames("slow words")
    expected = sum(frames(c) for c in clips) + round(0.75 * OUTPUT_SAMPLE_RATE)
    assert frames(result.files[0]) == expected
    combined = samples(result.files[0])
    assert not combined[: OUTPUT_SAMPLE_RATE // 4].any() and not combined[-OUTPUT_SAMPLE_RATE // 2 :].any()
    assert read_metadata(result.files[0]).text == text


def test_a_delimiter_splits_inside_a_speed_span(tmp_path):
    fake = FakeTTS()
    ctx = context(tmp_path, fake)
    result = ctx.generator.generate(request(text="{speed 2}One.\nTwo.{/speed}\nThree.", delimiter="\\n"))
    assert [call[0] for call in fake.calls] == ["One.", "Two.", "Three."]
    texts = [read_metadata(result.run_dir / f"result_{i}_0.wav").text for i in range(3)]
    assert texts == ["{speed 2}One.{/speed}", "{speed 2}Two.{/speed}", "Three."]


def test_bracket_prompt_engineering_still_works_beside_markup(tmp_path):
    tts = TokenizedFakeTTS(VoiceBpeTokenizer(REFERENCE_DIR / "tokenizer.json"), aligner=FakeAligner())
    ctx = context(tmp_path, tts)
    ctx.generator.generate(request(text="[whispering] Hello [pause 0.5s] {speed 0.8}[angry] Go.{/speed}"))
    assert [call[0] for call in tts.calls] == ["[whispering] Hello", "[angry] Go."]
    assert tts.redacted == ["[whispering] Hello", "[angry] Go."]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Wait [pause x] here.", r"character 6: 'x' is not a number"),
        ("Slowly {speed 0.9}now.", r"character 8: this \{speed ...\} is never closed"),
        ("{speed 3.0}Fast.{/speed}", r"character 1: 3x is outside 0.5x-2x"),
        ("[sad {speed 0.9}] Hello.{/speed}", r"character 6: \{speed\} markup cannot go inside \[brackets\]"),
        ("Hi {/speed} there.", r"character 4: this \{/speed\} has no \{speed X\}"),
    ],
)
@pytest.mark.parametrize("mode", ["Standard", "Fast"])
def test_bad_markup_is_refused_before_anything_renders(tmp_path, text, message, mode):
    fake = FakeTTS()
    ctx = context(tmp_path, fake)
    with pytest.raises(MarkupError, match=r"Markup error at " + message):
        ctx.generator.generate(request(text=text, generation_mode=mode))
    assert fake.calls == [] and run_dirs(ctx) == []


def test_only_pauses_is_nothing_to_say(tmp_path):
    fake = FakeTTS()
    ctx = context(tmp_path, fake)
    with pytest.raises(InvalidInput, match="nothing to say"):
        ctx.generator.generate(request(text="[pause 1s] [pause 2s]"))
    assert fake.calls == [] and run_dirs(ctx) == []


def test_fast_mode_plays_pauses_and_stretched_lines_as_saved(tiny_ctx, heard):
    text = "Hello there. [pause 0.5s] {speed 0.5}Goodbye now.{/speed}"
    updates = list(tiny_ctx.fast_generator.stream(request(text=text, generation_mode="Fast")))
    result = updates[-1].result
    assert heard == ["Hello there.", "Goodbye now."]
    assert [p.name for p in result.files] == ["combined.wav"]
    played = np.concatenate([u.audio for u in updates if u.audio is not None])
    saved = samples(result.files[0])
    assert saved.shape == played.shape
    np.testing.assert_allclose(saved, played, atol=1.5 / 32768)  # 16-bit PCM
    first, second = result.run_dir / "result_0_0.wav", result.run_dir / "result_1_0.wav"
    gap = round(0.5 * OUTPUT_SAMPLE_RATE)
    assert not saved[frames(first) : frames(first) + gap].any()
    assert len(saved) == frames(first) + gap + frames(second)
    assert [u.line for u in updates if u.audio is not None][-1] == 1
    assert read_metadata(second).text == "{speed 0.5}Goodbye now.{/speed}"
    assert read_metadata(result.files[0]).text == text


def test_fast_mode_stretches_a_speed_span(tiny_ctx, heard):
    plain = tiny_ctx.generator.generate(request(text="Goodbye now.", generation_mode="Fast"))
    slow_text = "{speed 0.5}Goodbye now.{/speed}"
    slow = tiny_ctx.generator.generate(request(text=slow_text, generation_mode="Fast"))
    assert frames(slow.files[0]) / frames(plain.files[0]) == pytest.approx(2.0, rel=0.02)
