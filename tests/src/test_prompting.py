"""Pure prompt preparation: line splitting, emotion prefixes, seed policy."""

import random

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
