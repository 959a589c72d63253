"""tortoise/text.py: cleaners and the long-text splitter reproduce the official golden outputs exactly."""

import json
import re

import pytest

from tests.conftest import GOLDEN_DIR, REFERENCE_DIR
from tortoise.errors import InvalidInputError, TortoiseError
from tortoise.text import basic_cleaners, english_cleaners, split_and_recombine_text

# Read at collection time so that every case becomes its own, named test.
GOLDEN = json.loads((GOLDEN_DIR / "tokenizer.json").read_text(encoding="utf-8"))
EXAMPLES = json.loads((REFERENCE_DIR / "derived" / "tokenizer_examples.json").read_text(encoding="utf-8"))


def case_id(index: int, text: str) -> str:
    slug = re.sub(r"\W+", "_", text.encode("ascii", "replace").decode())[:32].strip("_")
    return f"{index:02d}-{slug or 'blank'}"


CASES = [pytest.param(case, id=case_id(i, case["input"])) for i, case in enumerate(GOLDEN["cases"])]
SPLITS = [
    pytest.param(entry, id=f"{i}-desired{entry['desired_length']}-max{entry['max_length']}")
    for i, entry in enumerate(GOLDEN["split_and_recombine_text"])
]
DERIVED = [pytest.param(example, id=case_id(i, example["text"])) for i, example in enumerate(EXAMPLES)]


def test_golden_has_all_cases():
    assert len(GOLDEN["cases"]) == 42
    assert len(GOLDEN["split_and_recombine_text"]) == 4


@pytest.mark.parametrize("case", CASES)
def test_english_cleaners_match_golden(case):
    assert english_cleaners(case["input"]) == case["english_cleaners"]


@pytest.mark.parametrize("case", CASES)
def test_basic_cleaners_match_golden(case):
    assert basic_cleaners(case["input"]) == case["basic_cleaners"]


@pytest.mark.parametrize("example", DERIVED)
def test_english_cleaners_match_derived_examples(example):
    assert english_cleaners(example["text"]) == example["cleaned"]


@pytest.mark.parametrize("entry", SPLITS)
def test_split_and_recombine_matches_golden(entry):
    chunks = split_and_recombine_text(entry["input"], entry["desired_length"], entry["max_length"])
    assert chunks == entry["output"]


@pytest.mark.parametrize("entry", SPLITS)
def test_split_keeps_every_character(entry):
    # Chunks are cut from the normalised text, so only whitespace may go missing.
    chunks = split_and_recombine_text(entry["input"], entry["desired_length"], entry["max_length"])
    normalised = re.sub(r"\s+", "", entry["input"]).replace("\u201c", '"').replace("\u201d", '"')
    assert "".join(re.sub(r"\s+", "", chunk) for chunk in chunks) == normalised


def test_split_defaults_are_200_and_300():
    entry = GOLDEN["split_and_recombine_text"][0]
    assert (entry["desired_length"], entry["max_length"]) == (200, 300)
    assert split_and_recombine_text(entry["input"]) == entry["output"]


def test_split_cuts_a_run_without_breaks_at_desired_length():
    chunks = split_and_recombine_text("x" * 25, desired_length=10, max_length=15)
    assert chunks == ["x" * 10, "x" * 10, "x" * 5]


def test_split_reads_the_last_character_as_blank_like_the_official_code():
    # Looking ahead at the last character gives "", which joins it to the sentence end before it.
    assert split_and_recombine_text("Wait!x", desired_length=1, max_length=10) == ["Wait!x"]
    assert split_and_recombine_text("Ok!a b", desired_length=1, max_length=10) == ["Ok!", "a b"]


def test_split_short_text_is_one_stripped_chunk():
    assert split_and_recombine_text("  One sentence.  Two.\n\n") == ["One sentence. Two."]


@pytest.mark.parametrize("text", ["", " ", "\n\n", "... !?"])
def test_split_drops_chunks_without_words(text):
    assert split_and_recombine_text(text) == []


@pytest.mark.parametrize("desired, maximum", [(0, 10), (-5, 10), (20, 10)])
def test_split_rejects_bad_lengths(desired, maximum):
    with pytest.raises(InvalidInputError) as info:
        split_and_recombine_text("Some text.", desired_length=desired, max_length=maximum)
    assert isinstance(info.value, TortoiseError)
    assert "max_length" in str(info.value)


def test_english_cleaners_read_a_stray_comma_in_dollars():
    # The official cleaner raises ValueError here; ours reads the amount.
    assert english_cleaners("$1,.5") == "one dollar, five cents"
