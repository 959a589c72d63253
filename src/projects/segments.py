"""Splitting a project's text into segments that each fit one TorToiSe pass.

`split_segments` is the one entry point; its body is meant to be swapped for the token-based splitter of
src/prompting.py once that lands (same contract: cleaned text in, segments under the token limit out).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from src.errors import InvalidInput
from tortoise.text import split_and_recombine_text

MAX_SEGMENT_TOKENS = 398  # official TorToiSe: len(ids) + 1 < 400 text tokens per pass
MAX_SEGMENT_CHARS = 300  # the splitter's hard cut when no tokenizer is at hand
_CLAUSE_RE = re.compile(r"(?<=[,;:])\s+")

TokenCounter = Callable[[str], int]


def _token_counter(tokenizer: object | None) -> TokenCounter:
    if tokenizer is None:
        return lambda text: 0
    encode = getattr(tokenizer, "encode", None)
    if encode is None:
        raise TypeError("tokenizer needs an encode(text) method")
    return lambda text: len(encode(text))


def _fits(text: str, count: TokenCounter, max_tokens: int) -> bool:
    return len(text) <= MAX_SEGMENT_CHARS and count(text) <= max_tokens


def _split_long(text: str, count: TokenCounter, max_tokens: int) -> list[str]:
    """Cut a sentence that is too long at clause marks, then between words, into pieces that fit."""
    if _fits(text, count, max_tokens):
        return [text]
    pieces = _CLAUSE_RE.split(text)
    if len(pieces) == 1:
        pieces = text.split()
        if len(pieces) == 1:  # one enormous "word": cut it by characters
            half = len(text) // 2
            return _split_long(text[:half], count, max_tokens) + _split_long(text[half:], count, max_tokens)
    out: list[str] = []
    current = ""
    for piece in pieces:
        joined = f"{current} {piece}".strip()
        if current and not _fits(joined, count, max_tokens):
            out.extend(_split_long(current, count, max_tokens))
            current = piece
        else:
            current = joined
    if current:
        out.extend(_split_long(current, count, max_tokens))
    return out


def split_segments(
    text: str, tokenizer: object | None = None, *, max_tokens: int = MAX_SEGMENT_TOKENS
) -> list[str]:
    """Split a text into segments: one per line, each line cut at sentence ends, and anything still too
    long for one pass cut at clause marks, then between words.

    Args:
        text: the whole text (blank lines are skipped).
        tokenizer: anything with `encode(text) -> ids` (the TorToiSe tokenizer); None checks characters only.
        max_tokens: the most text tokens one segment may have.

    Returns:
        The segments, stripped and non-empty, in order.

    Raises:
        InvalidInput: the text has no words.
    """
    count = _token_counter(tokenizer)
    segments: list[str] = []
    for line in (text or "").splitlines():
        if not line.strip():
            continue
        for sentence in split_and_recombine_text(line.strip(), 1, MAX_SEGMENT_CHARS):
            segments.extend(s.strip() for s in _split_long(sentence.strip(), count, max_tokens) if s.strip())
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
