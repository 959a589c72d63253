"""Splitting a project's text into segments that each fit one TorToiSe pass: one row per sentence, cut
by tokens after cleaning (`tortoise.split_text_by_tokens`, the splitter the Generate tab uses too)."""

from __future__ import annotations

import re
from collections.abc import Callable

from src.errors import InvalidInput
from tortoise import InvalidInputError, split_text_by_tokens

MAX_SEGMENT_TOKENS = 398  # official TorToiSe: len(ids) + 1 < 400 text tokens per pass
MAX_SEGMENT_CHARS = 300  # the splitter's hard cut when no tokenizer is at hand
_CLAUSE_RE = re.compile(r"(?<=[,;:])\s+")

TokenCounter = Callable[[str], int]


def _token_counter(tokenizer: object | None) -> TokenCounter:
    if tokenizer is None:  # no tokenizer at hand: measure characters, as TorToiSe's own splitter does
        return len
    encode = getattr(tokenizer, "encode", None)
    if encode is None:
        raise TypeError("tokenizer needs an encode(text) method")
    return lambda text: len(encode(text))


def split_segments(
    text: str, tokenizer: object | None = None, *, max_tokens: int = MAX_SEGMENT_TOKENS
) -> list[str]:
    """Split a text into segments: one per line, each line cut at sentence ends, and anything still too
    long for one pass cut at clause marks, then between words (measured in tokens after cleaning).

    Args:
        text: the whole text (blank lines are skipped).
        tokenizer: anything with `encode(text) -> ids` (the TorToiSe tokenizer); None checks characters only.
        max_tokens: the most text tokens one segment may have.

    Returns:
        The segments, stripped and non-empty, in order.

    Raises:
        InvalidInput: the text has no words, or a single word is too long for one pass (named).
    """
    count = _token_counter(tokenizer)
    if tokenizer is None:
        max_tokens = min(max_tokens, MAX_SEGMENT_CHARS)
    segments: list[str] = []
    for line in (text or "").splitlines():
        if not line.strip():
            continue
        try:  # desired 1: sentences are never packed together, so each is its own row
            segments.extend(split_text_by_tokens(line, count, max_tokens, desired_tokens=1))
        except InvalidInputError as error:
            raise InvalidInput(str(error)) from error
    if not segments:
        raise InvalidInput("Please provide text: the project text is empty.")
    return segments


def halve(text: str) -> list[str]:
    """Cut a segment the model refused as too long into two halves, at a clause mark when there is one
    near the middle, else between words (else between characters)."""
    text = text.strip()
    pieces = _CLAUSE_RE.split(text)
    if len(pieces) < 2:
        pieces = text.split()
    if len(pieces) < 2:
        middle = len(text) // 2
        return [text[:middle], text[middle:]] if middle else [text]
    total, running, cut = len(text), 0, 1
    for index, piece in enumerate(pieces[:-1], start=1):
        running += len(piece) + 1
        cut = index
        if running >= total / 2:
            break
    return [" ".join(pieces[:cut]), " ".join(pieces[cut:])]
