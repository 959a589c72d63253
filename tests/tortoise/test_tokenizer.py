"""tortoise/tokenizer.py: ids, decoded text and errors match the official VoiceBpeTokenizer."""

import json
import re

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer
from tokenizers.models import BPE

from tests.conftest import GOLDEN_DIR, REFERENCE_DIR
from tortoise.errors import ModelDownloadError, TortoiseError
from tortoise.tokenizer import SPACE_TOKEN_ID, STOP_TOKEN_ID, UNK_TOKEN_ID, VoiceBpeTokenizer


def case_id(index: int, text: str) -> str:
    slug = re.sub(r"\W+", "_", text.encode("ascii", "replace").decode())[:32].strip("_")
    return f"{index:02d}-{slug or 'blank'}"


GOLDEN = json.loads((GOLDEN_DIR / "tokenizer.json").read_text(encoding="utf-8"))
EXAMPLES = json.loads((REFERENCE_DIR / "derived" / "tokenizer_examples.json").read_text(encoding="utf-8"))
CASES = [pytest.param(case, id=case_id(i, case["input"])) for i, case in enumerate(GOLDEN["cases"])]
DERIVED = [pytest.param(example, id=case_id(i, example["text"])) for i, example in enumerate(EXAMPLES)]


@pytest.fixture(scope="module")
def tokenizer(tokenizer_path):
    return VoiceBpeTokenizer(tokenizer_path)


@pytest.fixture(scope="module")
def basic_tokenizer(tokenizer_path):
    return VoiceBpeTokenizer(tokenizer_path, use_basic_cleaners=True)


@pytest.fixture(scope="module")
def alphabet(tokenizer_path):
    """Characters that have their own id; every other character encodes to [UNK]."""
    vocab = json.loads(tokenizer_path.read_text(encoding="utf-8"))["model"]["vocab"]
    return {token for token in vocab if len(token) == 1}


def test_special_ids_match_golden(tokenizer):
    named = {"[STOP]": STOP_TOKEN_ID, "[UNK]": UNK_TOKEN_ID, "[SPACE]": SPACE_TOKEN_ID}
    assert GOLDEN["special_token_ids"] == named
    assert (STOP_TOKEN_ID, UNK_TOKEN_ID, SPACE_TOKEN_ID) == (0, 1, 2)
    assert tokenizer.vocab_size == GOLDEN["tokenizer_vocab_size"] == 255


@pytest.mark.parametrize("case", CASES)
def test_encode_matches_golden(tokenizer, case):
    assert tokenizer.encode(case["input"]) == case["token_ids"]


@pytest.mark.parametrize("case", CASES)
def test_decode_matches_golden(tokenizer, case):
    assert tokenizer.decode(case["token_ids"]) == case["decoded"]


@pytest.mark.parametrize("case", CASES)
def test_encode_with_basic_cleaners_matches_golden(basic_tokenizer, case):
    assert basic_tokenizer.clean(case["input"]) == case["basic_cleaners"]
    assert basic_tokenizer.encode(case["input"]) == case["token_ids_basic_cleaners"]


@pytest.mark.parametrize("example", DERIVED)
def test_derived_examples(tokenizer, example):
    assert tokenizer.clean(example["text"]) == example["cleaned"]
    assert tokenizer.encode(example["text"]) == example["ids"]
    assert tokenizer.decode(example["ids"]) == example["decoded"]


@pytest.mark.parametrize("case", CASES)
def test_round_trip_loses_only_unknown_characters(tokenizer, alphabet, case):
    cleaned = tokenizer.clean(case["input"])
    known = "".join(char for char in cleaned if char == " " or char in alphabet)
    assert tokenizer.decode(tokenizer.encode(case["input"])) == known


@pytest.mark.parametrize("case", CASES)
def test_basic_round_trip_loses_only_unknown_characters(basic_tokenizer, alphabet, case):
    cleaned = basic_tokenizer.clean(case["input"])
    known = "".join(char for char in cleaned if char == " " or char in alphabet)
    assert basic_tokenizer.decode(basic_tokenizer.encode(case["input"])) == known


def test_one_unk_per_unknown_character(tokenizer):
    assert tokenizer.encode("%&*#") == [UNK_TOKEN_ID] * 4
    ids = tokenizer.encode("a[b]")
    assert ids.count(UNK_TOKEN_ID) == 2
    assert tokenizer.decode(ids) == "ab"


def test_spaces_become_space_tokens(tokenizer):
    ids = tokenizer.encode("  a\t b ")
    assert ids == [SPACE_TOKEN_ID, 14, SPACE_TOKEN_ID, 15, SPACE_TOKEN_ID]
    assert tokenizer.decode(ids) == " a b "


def test_decode_drops_stop_tokens(tokenizer):
    ids = tokenizer.encode("hello world.")
    assert tokenizer.decode([*ids, STOP_TOKEN_ID, STOP_TOKEN_ID]) == "hello world."


def test_decode_accepts_tensors_and_arrays(tokenizer):
    ids = tokenizer.encode("Hello world.")
    assert tokenizer.decode(torch.tensor(ids, dtype=torch.int32)) == "hello world."
    assert tokenizer.decode(np.array(ids)) == "hello world."
    assert tokenizer.decode(tuple(ids)) == "hello world."


def test_empty_text_has_no_ids(tokenizer):
    assert tokenizer.encode("") == []
    assert tokenizer.decode([]) == ""


def test_missing_vocab_file_is_a_clear_error(tmp_path):
    missing = tmp_path / "tokenizer.json"
    with pytest.raises(ModelDownloadError, match="not found") as info:
        VoiceBpeTokenizer(missing)
    assert isinstance(info.value, TortoiseError)
    assert str(missing) in str(info.value)


def test_corrupt_vocab_file_is_a_clear_error(tmp_path):
    broken = tmp_path / "tokenizer.json"
    broken.write_text("{not json", encoding="utf-8")
    with pytest.raises(ModelDownloadError, match="cannot be read"):
        VoiceBpeTokenizer(broken)


def test_foreign_vocab_file_is_rejected(tmp_path):
    other = tmp_path / "tokenizer.json"
    vocab = {"[UNK]": 0, "[STOP]": 1, "[SPACE]": 2, "a": 3}
    Tokenizer(BPE(vocab=vocab, merges=[], unk_token="[UNK]")).save(str(other))
    with pytest.raises(ModelDownloadError, match="not the TorToiSe tokenizer"):
        VoiceBpeTokenizer(other)


def test_accepts_str_paths(tokenizer_path):
    assert VoiceBpeTokenizer(str(tokenizer_path)).encode("a") == [14]


@pytest.mark.parametrize("text", ["Mr. Smith paid $3.50 for 2 books.", "50% & [softly] more", ""])
def test_encode_is_clean_then_encode_cleaned(tokenizer, text):
    assert tokenizer.encode(text) == tokenizer.encode_cleaned(tokenizer.clean(text))
    assert tokenizer.encode_cleaned("%") == [1]  # a character outside the vocabulary is one [UNK]
