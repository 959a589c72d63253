"""Multi-voice scripts: parsing, voice checks before rendering, rows, and a two-voice render into one
combined file (FakeTTS for the bookkeeping, the tiny real models end to end)."""

import pytest
import soundfile as sf

from src.errors import InvalidInput
from src.generate import GenerateRequest
from src.lexicon import build_lexicon
from src.markup import Pause, SpeechPiece
from src.metadata import read_metadata
from src.script import (
    SCRIPT_RESULTS_VOICE_KEY,
    ScriptRow,
    ScriptVoicesError,
    check_voices,
    parse_script,
    render_script,
    script_rows,
    script_voices,
)
from src.settings import AppSettings
from tests.app_doubles import TINY_TTS_OPTIONS, FakeTTS, make_context, make_voice, tiny_tts

SCRIPT = """# a comment
Narrator: It was late.
Alice: Who is there?
  It is so dark. [pause 0.5s] Hello?
Bob:
Only me. {speed 1.25}Sorry!{/speed}
10:30 is late, he said.
"""


def test_labels_continuations_and_default_voice():
    segments = parse_script("Before any label.\n" + SCRIPT, default_voice="amy")
    assert [(s.voice, s.text, s.line, s.turn) for s in segments] == [
        ("amy", "Before any label.", 1, 0),
        ("Narrator", "It was late.", 3, 1),
        ("Alice", "Who is there?", 4, 2),
        ("Alice", "It is so dark. [pause 0.5s] Hello?", 5, 2),
        ("Bob", "Only me. {speed 1.25}Sorry!{/speed}", 7, 3),
        ("Bob", "10:30 is late, he said.", 8, 3),
    ]
    assert segments[3].pieces == (
        SpeechPiece("It is so dark.", 1.0, 0), Pause(0.5, 15), SpeechPiece("Hello?", 1.0, 28)
    )
    assert script_voices(segments) == {"amy": (1,), "Narrator": (3,), "Alice": (4, 5), "Bob": (7, 8)}


def test_escaped_label_and_urls_are_text():
    segments = parse_script("Alice: see http://example.com\n\\Note: this is Alice too.")
    assert [(s.voice, s.text) for s in segments] == [
        ("Alice", "see http://example.com"), ("Alice", "Note: this is Alice too.")
    ]


def test_rows_fold_pauses_into_the_row_before():
    script = "A: [pause 1s] one [pause 0.5s]\n[pause 0.25s] two\nB: {speed 2}three{/speed}"
    rows = script_rows(parse_script(script, "A"))
    assert rows == [
        ScriptRow("A", "one", 1.0, 0.75, 1),
        ScriptRow("A", "two", 1.0, 0.0, 2),
        ScriptRow("B", "three", 2.0, 0.0, 3),
    ]


@pytest.mark.parametrize(
    "script, default, message",
    [
        ("", "amy", "The script is empty"),
        ("  \n\n", "amy", "The script is empty"),
        ("Alice:\nBob:\n", "amy", "only speaker labels"),
        ("# just a comment", "amy", "nothing to say"),
        ("Alice: [pause 1s]", "amy", "nothing to say"),
        ("Hello there.", None, "Line 1 has no speaker"),
        ("Alice: fine\nBob: bad [pause x]", "amy", "Line 2: markup error at character 10: 'x'"),
    ],
)
def test_bad_scripts_are_plain_messages(script, default, message):
    with pytest.raises(InvalidInput, match=message.replace("[", r"\[")):
        parse_script(script, default)


@pytest.fixture
def fake():
    return FakeTTS()


@pytest.fixture
def ctx(tmp_path, fake):
    context = make_context(tmp_path, fake, settings=AppSettings(output_sample_rate=24000))
    make_voice(context.paths.voices_dir, "alice", (1.5,), seed=1)
    make_voice(context.paths.voices_dir, "bob", (1.5,), seed=5)
    (context.paths.voices_dir / "empty").mkdir()
    only_latents = context.paths.voices_dir / "latents_only"
    only_latents.mkdir()
    (only_latents / "cond_latents.pth").write_bytes(b"x")
    return context


def test_unknown_voices_and_voices_without_clips_are_listed(ctx):
    segments = parse_script(
        "alice: hi\nghost: boo\nempty: ...\nghost: again\nlatents_only: ok\nalice&bob: both\n"
        "random: anyone\nmicrophone: me\nalice&nobody: blend"
    )
    problems = {p.voice: p for p in check_voices(segments, ctx.voices)}
    assert sorted(problems) == ["alice&nobody", "empty", "ghost", "microphone"]
    assert problems["ghost"].lines == (2, 4) and "unknown voice" in problems["ghost"].reason
    assert "Known voices: alice, bob, empty, latents_only" in problems["ghost"].reason
    assert "voices/empty/ has no clips" in problems["empty"].reason
    assert "nobody" in problems["alice&nobody"].reason
    assert "'ghost' (lines 2, 4)" in problems["ghost"].message()


def test_render_refuses_before_anything_renders(ctx, fake):
    request = GenerateRequest(text="alice: hi\nempty: hello\nghost: boo", voice="alice")
    with pytest.raises(ScriptVoicesError) as caught:
        render_script(ctx.generator, request)
    assert [p.voice for p in caught.value.problems] == ["empty", "ghost"]
    assert "nothing was rendered" in str(caught.value)
    assert not fake.calls
    assert not (ctx.paths.results_dir / "alice").exists()


def test_two_voices_render_one_combined_file_with_voices_in_metadata(ctx, fake):
    request = GenerateRequest(
        text="Hi from Alice. [pause 0.5s] Still Alice.\nbob: {speed 2}Bob here.{/speed}",
        voice="alice", num_autoregressive_samples=2, diffusion_iterations=2, seed=7,
    )  # fmt: skip
    lexicon = build_lexicon([["Bob", "Bobb"]])
    result = render_script(ctx.generator, request, lexicon=lexicon)
    assert [call[0] for call in fake.calls] == ["Hi from Alice.", "Still Alice.", "Bobb here."]
    meta = read_metadata(result.file)
    rows = meta.extra[SCRIPT_RESULTS_VOICE_KEY]
    assert [(r["voice"], r["text"], r["speed"]) for r in rows] == [
        ("alice", "Hi from Alice.", 1.0), ("alice", "Still Alice.", 1.0), ("bob", "Bob here.", 2.0)
    ]
    assert meta.voice == "alice" and result.file.parent.parent.name == "alice"
    for row, file in zip(rows, result.row_files, strict=True):
        assert read_metadata(file).voice == row["voice"] and read_metadata(file).text == row["text"]
        assert file.parent.parent.name == row["voice"]
    # durations: row files, the 0.5 s pause, and Bob's row at double speed
    lengths = [sf.info(f).frames for f in result.row_files]
    expected = lengths[0] + 12000 + lengths[1] + round(lengths[2] / 2)
    assert sf.info(result.file).frames == expected
    assert rows[1]["start_s"] == pytest.approx((lengths[0] + 12000) / 24000, abs=1e-4)


@pytest.mark.slow
def test_two_voice_script_with_the_tiny_models(tmp_path, tiny_models):
    ctx = make_context(tmp_path, tiny_tts(tiny_models), tts_options=TINY_TTS_OPTIONS,
                       settings=AppSettings(output_sample_rate=24000))  # fmt: skip
    make_voice(ctx.paths.voices_dir, "alice", (1.5,), seed=1)
    make_voice(ctx.paths.voices_dir, "bob", (1.5,), seed=5)
    request = GenerateRequest(text="alice: Hi.\nbob: Bye.", voice="alice", num_autoregressive_samples=2,
                              diffusion_iterations=2, seed=3)  # fmt: skip
    result = render_script(ctx.generator, request)
    rows = read_metadata(result.file).extra[SCRIPT_RESULTS_VOICE_KEY]
    assert [r["voice"] for r in rows] == ["alice", "bob"]
    assert sf.info(result.file).frames == sum(sf.info(f).frames for f in result.row_files) > 0
    for voice in ("alice", "bob"):
        assert (ctx.paths.voices_dir / voice / "cond_latents_tiny0001.pth").is_file()
