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


# --------------------------------------------------------------------------- split_text_by_tokens

from tortoise.text import split_text_by_tokens  # noqa: E402
from tortoise.tokenizer import VoiceBpeTokenizer  # noqa: E402

NUMBERS_SENTENCES = (
    "On March 3rd, 2021 the company paid $1,234.56 for 1,500 widgets.",
    "By 12/25/1999 the budget had grown to 42,000,000 pounds, or about 17.5% more than in 1987.",
    "Dr. Smith arrived at 10:30 on the 21st, carrying £3,500 and 2 bags.",
    "Between 1850 and 2007 the population rose from 12,345 to 987,654; prices went from $0.05 to $19.99.",
    "The 1st, 2nd and 3rd prizes were $10,000, $5,000 and $2,500 — paid on 04/05/2026.",
)


def numbers_text(length: int = 3000) -> str:
    text, i = "", 0
    while len(text) < length:
        text += NUMBERS_SENTENCES[i % len(NUMBERS_SENTENCES)] + " "
        i += 1
    return text.strip()


@pytest.fixture(scope="module")
def tokens():
    tokenizer = VoiceBpeTokenizer(REFERENCE_DIR / "tokenizer.json")
    return lambda text: len(tokenizer.encode(text))


def words(text: str) -> list[str]:
    return text.split()


def test_numbers_dates_and_currency_fit_after_cleaning(tokens):
    text = numbers_text()
    assert len(text) >= 3000
    assert tokens(text) > 2000  # the cleaners expand the numbers: far more tokens than one pass takes
    chunks = split_text_by_tokens(text, tokens, max_tokens=180, desired_tokens=120)
    assert all(tokens(chunk) <= 180 for chunk in chunks), [tokens(c) for c in chunks]
    assert words(" ".join(chunks)) == words(text)  # nothing lost, nothing reordered
    assert len(chunks) > 10
    # a small model's limit too: clause and word cuts keep every chunk under it
    small = split_text_by_tokens(text, tokens, max_tokens=36)
    assert all(tokens(chunk) <= 36 for chunk in small) and words(" ".join(small)) == words(text)


def test_sentences_are_packed_and_cut_at_sentence_ends(tokens):
    text = "First sentence here. Second one! Third one? Fourth and last."
    assert split_text_by_tokens(text, tokens, max_tokens=100) == [text]
    chunks = split_text_by_tokens(text, tokens, max_tokens=14)
    assert all(chunk[-1] in ".!?" for chunk in chunks) and len(chunks) > 1
    assert words(" ".join(chunks)) == words(text)


def test_a_long_sentence_is_cut_at_clauses_before_words():
    text = "alpha beta gamma, delta epsilon zeta; eta theta iota: kappa lambda mu"
    chunks = split_text_by_tokens(text, len, max_tokens=40)
    assert chunks == ["alpha beta gamma, delta epsilon zeta;", "eta theta iota: kappa lambda mu"]
    no_clauses = "one two three four five six seven eight nine ten eleven twelve"
    cut = split_text_by_tokens(no_clauses, len, max_tokens=20)
    assert all(len(c) <= 20 for c in cut) and words(" ".join(cut)) == words(no_clauses)


def test_brackets_are_never_cut():
    text = "Hello [I am really sad, so sad. Truly.] there, my friend. Goodbye now."
    for limit in (45, 50, 70):
        chunks = split_text_by_tokens(text, len, max_tokens=limit)
        assert all(c.count("[") == c.count("]") for c in chunks), chunks


def test_a_single_word_too_long_is_named(tokens):
    word = "x" * 500
    with pytest.raises(InvalidInputError, match=r"The word 'x{30}\.\.\.x{6}' \(500 characters"):
        split_text_by_tokens(f"Say this: {word} please.", tokens, max_tokens=180)
    with pytest.raises(InvalidInputError, match="cannot split|Cannot split"):
        split_text_by_tokens("Hi.", tokens, max_tokens=0)


def test_ten_thousand_characters_emoji_and_right_to_left(tokens):
    long = ("This is a fairly ordinary sentence of plain words. " * 200).strip()
    chunks = split_text_by_tokens(long, tokens, max_tokens=180, desired_tokens=120)
    assert len(long) >= 10_000 and all(tokens(c) <= 180 for c in chunks)
    mixed = "Hello 😀 world. שלום עולם, مرحبا بالعالم. " * 20
    chunks = split_text_by_tokens(mixed, tokens, max_tokens=30)
    assert all(tokens(c) <= 30 for c in chunks) and words(" ".join(chunks)) == words(mixed)
    assert split_text_by_tokens("", tokens, max_tokens=10) == []
