"""Pure prompt preparation: line splitting, emotion prefixes, seed policy."""

import random
import re

import pytest

from src.errors import InvalidInput
from src.prompting import (
    EMOTIONS,
    MAX_SEED,
    apply_emotion,
    emotion_prefix,
    normalize_delimiter,
    prepare_prompts,
    resolve_seed,
    split_text,
    strip_emotion_prefix,
)

LONG_TEXT = " ".join(f"This is sentence number {i} of a rather long paragraph." for i in range(30))


def test_normalize_delimiter():
    assert normalize_delimiter("\\n") == "\n"
    assert normalize_delimiter(None) == "\n"
    assert normalize_delimiter("") == ""
    assert normalize_delimiter("|") == "|"


@pytest.mark.parametrize("delimiter", ["\\n", "\n"])
def test_newline_delimiter_gives_one_line_per_clip_skipping_empty_ones(delimiter):
    result = split_text("First line.\n\n  Second line.  \n\nThird.\n", delimiter)
    assert result.lines == ("First line.", "Second line.", "Third.")
    assert not result.auto_split


def test_custom_delimiter_and_absent_delimiter():
    assert split_text("a | b || c", "|").lines == ("a", "b", "c")
    assert split_text("One line only.", "|").lines == ("One line only.",)


def test_blank_delimiter_keeps_short_text_whole():
    result = split_text("  Hello there.\nHow are you?  ", "")
    assert result.lines == ("Hello there.\nHow are you?",) and not result.auto_split


def test_blank_delimiter_splits_long_text_and_says_so():
    result = split_text(LONG_TEXT, "")
    assert len(result.lines) > 1 and result.auto_split
    assert all(len(line) <= 300 for line in result.lines)
    assert " ".join(result.lines) == LONG_TEXT


def test_too_long_delimited_line_is_split_further():
    result = split_text(f"Short.\n{LONG_TEXT}", "\\n")
    assert result.lines[0] == "Short." and len(result.lines) > 2 and result.auto_split


@pytest.mark.parametrize("text", ["", "   ", "\n\n"])
def test_empty_text_rejected(text):
    with pytest.raises(InvalidInput, match="Please provide text"):
        split_text(text, "\\n")


@pytest.mark.parametrize("emotion", ["Happy", "Sad", "Angry", "Disgusted", "Arrogant"])
def test_emotion_prefixes(emotion):
    assert apply_emotion("Hello.", emotion) == f"[I am really {emotion.lower()},] Hello."


def test_no_emotion_and_custom():
    assert emotion_prefix("None") == "" and emotion_prefix(None) == ""
    assert emotion_prefix("Custom", "   ") == ""
    assert apply_emotion("Hi.", "Custom", "whispering softly") == "[whispering softly,] Hi."
    assert apply_emotion("Hi.", "Custom", "[whispering,]") == "[whispering,] Hi."  # never doubled
    assert emotion_prefix("sad") == "[I am really sad,] "
    assert "Custom" in EMOTIONS and "None" in EMOTIONS
    with pytest.raises(InvalidInput, match="Unknown emotion"):
        emotion_prefix("Bored")


def test_strip_emotion_prefix():
    assert strip_emotion_prefix("[I am really sad,] Hello.", "Sad") == "Hello."
    assert strip_emotion_prefix("[calm,] Hello.", "Custom", "calm") == "Hello."
    assert strip_emotion_prefix("Hello.", "Sad") == "Hello."
    assert strip_emotion_prefix("[I am really sad,] Hello.", "Bored") == "[I am really sad,] Hello."


def test_prepare_prompts():
    prepared = prepare_prompts("One.\nTwo.", "\\n", "Happy")
    assert prepared.lines == ("One.", "Two.")
    assert prepared.prompts == ("[I am really happy,] One.", "[I am really happy,] Two.")
    assert not prepared.auto_split


def test_seed_policy():
    assert resolve_seed(1234) == 1234
    assert resolve_seed(77.0) == 77
    first = resolve_seed(0, random.Random(5))
    assert first == resolve_seed(None, random.Random(5))
    assert 1 <= first <= MAX_SEED
    assert 1 <= resolve_seed(0) <= MAX_SEED
    for bad in (-1, 1.5, MAX_SEED + 1, float("nan"), True):
        with pytest.raises(InvalidInput, match="Seed"):
            resolve_seed(bad)


# --------------------------------------------------------------------------- control characters, tokens

from src.prompting import check_control_characters, token_budget  # noqa: E402
from tests.conftest import REFERENCE_DIR  # noqa: E402
from tortoise.tokenizer import VoiceBpeTokenizer  # noqa: E402


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("Hello \x1b[31mred\x1b[0m world", "ESC (U+001B) at character 7 and 1 more"),
        ("Null\x00 byte", "NUL (U+0000) at character 5"),
        ("Ring\x07 the bell", "BEL (U+0007) at character 5"),
        ("odd \x02 one", "control character (U+0002) at character 5"),
    ],
)
def test_control_characters_are_refused_by_name(text, named):
    with pytest.raises(InvalidInput, match=re.escape(named)) as caught:
        prepare_prompts(text, "", "None")
    assert "Unbalanced" not in str(caught.value)


def test_only_control_characters_says_so_and_newlines_tabs_are_fine():
    with pytest.raises(InvalidInput, match="holds nothing else"):
        check_control_characters("\x1b\x00\x07")
    check_control_characters("Line one.\r\n\tLine two.")


def test_token_budget_counts_the_emotion_prefix_and_numbers():
    tokenizer = VoiceBpeTokenizer(REFERENCE_DIR / "tokenizer.json")
    count = lambda text: len(tokenizer.encode(text))  # noqa: E731
    text = "In 1999 we paid $1,234.56 and 42,000 pounds on the 21st of May. " * 30
    prepared = prepare_prompts(text, "", "Happy", count_tokens=count, token_limit=60)
    assert prepared.auto_split and len(prepared.lines) > 5
    assert all(count(prompt) <= 60 for prompt in prepared.prompts)
    assert all(p.startswith("[I am really happy,] ") for p in prepared.prompts)
    budget = token_budget(count, 396)
    assert (budget.desired, budget.maximum) == (120, 180)


def test_a_word_too_long_for_a_line_is_named():
    with pytest.raises(InvalidInput, match="The word 'aaaa"):
        split_text("Say " + "a" * 500 + " now.", "")


# --------------------------------------------------------------------------- markup and lexicon

from src.lexicon import build_lexicon  # noqa: E402
from src.markup import MarkupError  # noqa: E402


def test_plain_text_has_no_timing():
    prepared = prepare_prompts("One.\nTwo.", "\\n", "None")
    assert prepared.speeds == (1.0, 1.0) and prepared.pauses_after_s == (0.0, 0.0)
    assert prepared.pause_before_s == 0.0 and not prepared.has_pauses
    assert prepared.marked_line(1) == "Two."


def test_markup_pieces_split_into_lines_that_carry_speed_and_pauses():
    text = "[pause 1s]Intro. [pause 0.5s] {speed 0.8}Slow one.\nSlow two.{/speed} [pause .2][pause .3s] End."
    prepared = prepare_prompts(text, "\\n", "Sad")
    assert prepared.lines == ("Intro.", "Slow one.", "Slow two.", "End.")
    assert prepared.prompts == tuple(f"[I am really sad,] {line}" for line in prepared.lines)
    assert prepared.speeds == (1.0, 0.8, 0.8, 1.0)
    assert prepared.pauses_after_s == (0.5, 0.0, 0.5, 0.0)  # consecutive pauses add up
    assert prepared.pause_before_s == 1.0 and prepared.has_pauses
    assert prepared.marked_line(2) == "{speed 0.8}Slow two.{/speed}" and prepared.marked_line(3) == "End."


def test_markup_errors_and_only_pauses_are_refused():
    with pytest.raises(MarkupError, match="character 7"):
        prepare_prompts("Hello {speed 9}x{/speed}", "", "None")
    with pytest.raises(InvalidInput, match="nothing to say"):
        prepare_prompts("[pause 1s]", "", "None")


def test_respelling_reaches_the_prompts_only_and_lines_are_measured_respelled():
    lexicon = build_lexicon([("SQL", "sequel"), ("sad", "blue")])
    prepared = prepare_prompts("SQL is not MySQL. [pause 1s] So sad.", "", "Sad", respell=lexicon.apply)
    assert prepared.lines == ("SQL is not MySQL.", "So sad.")
    assert prepared.prompts == ("[I am really sad,] sequel is not MySQL.", "[I am really sad,] So blue.")
    long = build_lexicon([("x", "a very long way of saying the letter ecks " * 5)])
    assert len(prepare_prompts("x x x. y y y.", "", "None").lines) == 1
    respelled = prepare_prompts("x x x. y y y.", "", "None", respell=long.apply)
    assert respelled.auto_split and len(respelled.lines) > 1 and " ".join(respelled.lines) == "x x x. y y y."
    assert all(len(prompt) <= 300 for prompt in respelled.prompts)  # the character budget, respelled
