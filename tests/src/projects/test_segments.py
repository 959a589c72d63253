"""split_segments: lines, sentences, clause and word cuts under the token limit; halve."""

import pytest

from src.errors import InvalidInput
from src.projects.segments import halve, split_segments
from tests.conftest import REFERENCE_DIR
from tortoise.tokenizer import VoiceBpeTokenizer


def test_lines_then_sentences():
    text = "First line. Second sentence!\n\n  Third line? Yes.  "
    assert split_segments(text) == ["First line.", "Second sentence!", "Third line?", "Yes."]


def test_a_long_sentence_is_cut_at_clauses_under_the_token_limit():
    tokenizer = VoiceBpeTokenizer(REFERENCE_DIR / "tokenizer.json")
    sentence = ", ".join(f"clause number {i} has several plain words" for i in range(6)) + "."
    pieces = split_segments(sentence, tokenizer, max_tokens=40)
    assert len(pieces) > 1
    assert all(len(tokenizer.encode(piece)) <= 40 for piece in pieces)
    assert " ".join(pieces).split() == sentence.split()


def test_a_sentence_without_clauses_is_cut_between_words():
    sentence = " ".join(["word"] * 120)
    pieces = split_segments(sentence)
    assert len(pieces) > 1 and all(len(p) <= 300 for p in pieces)
    assert sum(len(p.split()) for p in pieces) == 120


def test_empty_text_is_refused():
    with pytest.raises(InvalidInput, match="empty"):
        split_segments(" \n\n ")


def test_halve_prefers_clauses_then_words():
    assert halve("one two, three four") == ["one two,", "three four"]
    assert halve("a b c d") == ["a b", "c d"]
    assert halve("abcdef") == ["abc", "def"]
