"""Text front-end of the TTS core: cleaners (ASCII, numbers, abbreviations) and long-text splitting.

Both reproduce official TorToiSe exactly (`utils/tokenizer.py` cleaners, `utils/text.py` splitter),
because the AR and CLVP checkpoints were trained on text cleaned this way. `split_text_by_tokens`
is the app's splitter: it measures chunks in tokens after cleaning, so every chunk fits one pass.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

import inflect
from unidecode import unidecode

from tortoise.errors import InvalidInputError

_WHITESPACE_RE = re.compile(r"\s+")

# Applied in this order; "mrs" must come before "mr". Each needs a word start and eats the period.
_ABBREVIATIONS = tuple(
    (re.compile(rf"\b{short}\.", re.IGNORECASE), full)
    for short, full in (
        ("mrs", "misess"),
        ("mr", "mister"),
        ("dr", "doctor"),
        ("st", "saint"),
        ("co", "company"),
        ("jr", "junior"),
        ("maj", "major"),
        ("gen", "general"),
        ("drs", "doctors"),
        ("rev", "reverend"),
        ("lt", "lieutenant"),
        ("hon", "honorable"),
        ("sgt", "sergeant"),
        ("capt", "captain"),
        ("esq", "esquire"),
        ("ltd", "limited"),
        ("col", "colonel"),
        ("ft", "fort"),
    )
)

_DIGIT_GROUPS_RE = re.compile(r"[0-9][0-9,]+[0-9]")
_POUNDS_RE = re.compile(r"£([0-9,]*[0-9]+)")
# The amount admits any mix of dots and commas ("$3.5.6" is matched and read as a plain number).
_DOLLARS_RE = re.compile(r"\$([0-9.,]*[0-9]+)")
_DECIMAL_RE = re.compile(r"[0-9]+\.[0-9]+")
_ORDINAL_RE = re.compile(r"[0-9]+(?:st|nd|rd|th)")
_INTEGER_RE = re.compile(r"[0-9]+")

# split_and_recombine_text: characters that end a sentence, and chunks too empty to keep.
_SENTENCE_END = "!?\n"
_SENTENCE_END_RUN = "!?."
_WORD_BREAK = "!?.\n "
_PUNCTUATION_ONLY_RE = re.compile(r"[\s.,;:!?]*")


@functools.lru_cache(maxsize=1)
def _inflect_engine() -> inflect.engine:
    return inflect.engine()


def _spell(number: int | str, **options) -> str:
    return _inflect_engine().number_to_words(number, **options)


def _read_dollars(match: re.Match) -> str:
    amount = match.group(1)
    parts = amount.split(".")
    if len(parts) > 2:
        # Not a currency amount; the decimal and integer rules read the digits later.
        return f"{amount} dollars"
    # Official code calls int() on the raw parts and crashes on a stray comma ("$1,.5"); dropping the
    # comma reads it instead and changes nothing for amounts the official code accepts.
    dollars = int(parts[0].replace(",", "") or 0)
    cents = int(parts[1].replace(",", "") or 0) if len(parts) > 1 else 0
    dollar_unit = "dollar" if dollars == 1 else "dollars"
    cent_unit = "cent" if cents == 1 else "cents"
    # Digits are left in place here; the integer rule below spells them.
    if dollars and cents:
        return f"{dollars} {dollar_unit}, {cents} {cent_unit}"
    if dollars:
        return f"{dollars} {dollar_unit}"
    if cents:
        return f"{cents} {cent_unit}"
    return "zero dollars"


def _read_integer(match: re.Match) -> str:
    number = int(match.group(0))
    if not 1000 < number < 3000:
        return _spell(number, andword="")
    # 1001..2999 are read like years.
    if number == 2000:
        return "two thousand"
    if 2000 < number < 2010:
        return "two thousand " + _spell(number % 100)
    if number % 100 == 0:
        return _spell(number // 100) + " hundred"
    return _spell(number, andword="", zero="oh", group=2).replace(", ", " ")


def expand_numbers(text: str) -> str:
    """Spell out the numbers in lowercase text the way official TorToiSe does.

    Rules run in order: drop commas inside digit groups, pounds, dollars and cents, decimals
    ("a point b"), ordinals (inflect, which keeps its "and"), then every remaining integer, with
    1001..2999 read like years ("eighteen oh one", "two thousand seven", "nineteen hundred").

    Args:
        text: text to expand; the ordinal suffixes must already be lowercase.

    Returns:
        The text with every run of digits replaced by words. Signs, "%" and "&" are left as they are.
    """
    text = _DIGIT_GROUPS_RE.sub(lambda m: m.group(0).replace(",", ""), text)
    text = _POUNDS_RE.sub(r"\1 pounds", text)
    text = _DOLLARS_RE.sub(_read_dollars, text)
    text = _DECIMAL_RE.sub(lambda m: m.group(0).replace(".", " point "), text)
    text = _ORDINAL_RE.sub(lambda m: _spell(m.group(0)), text)
    return _INTEGER_RE.sub(_read_integer, text)


def expand_abbreviations(text: str) -> str:
    """Replace titles and similar abbreviations ("dr.", "st.", "ltd.") with full words.

    Args:
        text: text to expand; matching ignores case, the replacements are lowercase.

    Returns:
        The text with each abbreviation and its trailing period replaced.
    """
    for pattern, full in _ABBREVIATIONS:
        text = pattern.sub(full, text)
    return text


def collapse_whitespace(text: str) -> str:
    """Replace every run of whitespace (newlines and tabs included) with one space, without stripping."""
    return _WHITESPACE_RE.sub(" ", text)


def basic_cleaners(text: str) -> str:
    """Lowercase and collapse whitespace only, for text that must not be transliterated.

    Args:
        text: raw input text.

    Returns:
        The cleaned text. Leading and trailing whitespace is collapsed to one space, not removed.
    """
    return collapse_whitespace(text.lower())


def english_cleaners(text: str) -> str:
    """Clean English text for the tokenizer, exactly as official TorToiSe's default cleaner does.

    Steps: transliterate to ASCII (unidecode), lowercase, expand numbers, expand abbreviations,
    collapse whitespace, remove double quotes.

    Args:
        text: raw input text in any script.

    Returns:
        The cleaned text. Leading and trailing whitespace is collapsed to one space, not removed.
    """
    text = unidecode(text).lower()
    text = expand_numbers(text)
    text = expand_abbreviations(text)
    text = collapse_whitespace(text)
    return text.replace('"', "")


class _Scanner:
    """Cursor over the text being split: the current chunk, the quote state and candidate cut points.

    It mirrors the official splitter's bookkeeping, quirks included: moving back toggles the quote
    state on the character it lands on (not the one it leaves), and looking at the last character or
    beyond gives "" (which `in` treats as a member of every string).
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.last = len(text) - 1
        self.pos = -1
        self.in_quote = False
        self.chunk = ""
        self.cut_points: list[int] = []
        self.chunks: list[str] = []

    def forward(self) -> str:
        self.pos += 1
        char = self.text[self.pos]
        self.chunk += char
        if char == '"':
            self.in_quote = not self.in_quote
        return char

    def back(self) -> str:
        self.pos -= 1
        self.chunk = self.chunk[:-1]
        char = self.text[self.pos]
        if char == '"':
            self.in_quote = not self.in_quote
        return char

    def peek(self, offset: int) -> str:
        index = self.pos + offset
        return self.text[index] if 0 <= index < self.last else ""

    def commit(self) -> None:
        self.chunks.append(self.chunk)
        self.chunk = ""
        self.cut_points = []


def split_and_recombine_text(text: str, desired_length: int = 200, max_length: int = 300) -> list[str]:
    """Split long text into chunks of about `desired_length` characters, keeping sentences whole.

    Reproduces official TorToiSe's splitter (used by read.py) exactly. Whitespace runs become one
    space and curly double quotes become '"'. A sentence ends at "!" or "?", or at "." before a space,
    outside quotes; a closing quote followed by a space is also a candidate cut. A chunk is cut at
    the first sentence end once it holds `desired_length` characters. A chunk that reaches
    `max_length` goes back to its last sentence end, or else to a space, but never below
    `desired_length` characters.

    Args:
        text: the text to split.
        desired_length: shortest chunk, in characters, that is cut at a sentence end (default 200).
        max_length: length, in characters, at which a chunk is cut by force (default 300).

    Returns:
        The stripped chunks in order; chunks of only whitespace and punctuation are dropped.

    Raises:
        InvalidInputError: if `desired_length` is below 1 or `max_length` is below `desired_length`.
    """
    if desired_length < 1 or max_length < desired_length:
        raise InvalidInputError(
            f"Cannot split text with desired_length={desired_length} and max_length={max_length}: "
            "both must be positive and max_length must be at least desired_length."
        )
    text = re.sub(r"\n\n+", "\n", text)
    text = collapse_whitespace(text)
    text = re.sub("[\u201c\u201d]", '"', text)

    scan = _Scanner(text)
    while scan.pos < scan.last:
        char = scan.forward()
        if len(scan.chunk) >= max_length:
            if scan.cut_points and len(scan.chunk) > desired_length / 2:
                for _ in range(scan.pos - scan.cut_points[-1]):
                    scan.back()
            else:
                # No sentence end to go back to: back off to a word break, but keep desired_length.
                while char not in _WORD_BREAK and scan.pos > 0 and len(scan.chunk) > desired_length:
                    char = scan.back()
            scan.commit()
        elif not scan.in_quote and (char in _SENTENCE_END or (char == "." and scan.peek(1) in "\n ")):
            # "?!", "..." and "!!!" end one sentence together.
            while scan.pos < scan.last and len(scan.chunk) < max_length and scan.peek(1) in _SENTENCE_END_RUN:
                char = scan.forward()
            scan.cut_points.append(scan.pos)
            if len(scan.chunk) >= desired_length:
                scan.commit()
        elif scan.in_quote and scan.peek(1) == '"' and scan.peek(2) in "\n ":
            # Take the closing quote and its space; this can be a cut point but never cuts by itself.
            scan.forward()
            scan.forward()
            scan.cut_points.append(scan.pos)
    scan.commit()

    chunks = (chunk.strip() for chunk in scan.chunks)
    return [chunk for chunk in chunks if chunk and not _PUNCTUATION_ONLY_RE.fullmatch(chunk)]


# split_text_by_tokens: a sentence ends at ".", "!" or "?" (with any closing quotes or brackets) before
# whitespace, or at a line break; a clause at ",", ";", ":" or a dash before whitespace.
_SENTENCE_RE = re.compile(r"(?<=[.!?])[\"'\u201d\u2019)\]]*\s+|\n+")
_CLAUSE_RE = re.compile(r"(?<=[,;:\u2013\u2014])\s+|\s+(?=[\u2013\u2014-]\s)")
_BRACKETED_RE = re.compile(r"\[[^\[\]]*\]")


def split_text_by_tokens(
    text: str,
    count_tokens: Callable[[str], int],
    max_tokens: int,
    desired_tokens: int | None = None,
) -> list[str]:
    """Split text into chunks that each fit one TTS pass, measured in tokens after cleaning.

    Sentences are packed together while a chunk stays within `desired_tokens`; a sentence longer than
    `max_tokens` is cut at clause boundaries (",", ";", ":", dashes), and a clause still too long at
    spaces. A [bracketed] span is never cut. Every chunk returned was measured whole with
    `count_tokens`, so each is at most `max_tokens` long even though cleaning (numbers, currency,
    abbreviations) changes the length of the text.

    Args:
        text: the text to split; whitespace runs (line breaks included) become one space.
        count_tokens: the length of a piece of text in tokens, e.g. `len(tokenizer.encode(s))`
            (`len` splits by characters).
        max_tokens: the longest chunk allowed, in tokens.
        desired_tokens: sentences are joined while the chunk stays within this many tokens
            (default and upper bound: `max_tokens`).

    Returns:
        The stripped, non-empty chunks in order.

    Raises:
        InvalidInputError: a single word (or [bracketed] span) is longer than `max_tokens`; the message
            names it. Also for `max_tokens` below 1.
    """
    if max_tokens < 1:
        raise InvalidInputError(f"Cannot split text into chunks of {max_tokens} tokens.")
    desired = max_tokens if desired_tokens is None else max(1, min(desired_tokens, max_tokens))
    chunks: list[str] = []
    for sentence in _pieces(text.strip(), _SENTENCE_RE):
        if count_tokens(sentence) <= max_tokens:
            chunks.append(sentence)
            continue
        for clause in _pack(_pieces(sentence, _CLAUSE_RE), count_tokens, max_tokens):
            if count_tokens(clause) <= max_tokens:
                chunks.append(clause)
            else:
                chunks.extend(_pack(_pieces(clause, re.compile(r"\s+")), count_tokens, max_tokens, True))
    return _pack(chunks, count_tokens, desired)


def _pieces(text: str, separator: re.Pattern) -> list[str]:
    """`text` cut where `separator` matches, except inside [brackets]; stripped, empty pieces dropped."""
    protected = [(m.start(), m.end()) for m in _BRACKETED_RE.finditer(text)]
    pieces, start = [], 0
    for match in separator.finditer(text):
        if any(first < match.start() < last for first, last in protected):
            continue
        pieces.append(text[start : match.start()])
        start = match.end()
    pieces.append(text[start:])
    return [collapse_whitespace(piece).strip() for piece in pieces if piece.strip()]


def _pack(
    pieces: list[str], count_tokens: Callable[[str], int], limit: int, words: bool = False
) -> list[str]:
    """Join consecutive pieces with spaces while the joined text stays within `limit` tokens.

    With `words`, a single piece over the limit is an error naming it; otherwise it is kept alone (the
    caller cuts it further).
    """
    packed: list[str] = []
    current = ""
    for piece in pieces:
        joined = f"{current} {piece}" if current else piece
        if count_tokens(joined) <= limit:
            current = joined
            continue
        if current:
            packed.append(current)
        if words and count_tokens(piece) > limit:
            shown = piece if len(piece) <= 40 else f"{piece[:30]}...{piece[-6:]}"
            what = "[bracketed] text" if piece.startswith("[") else "word"
            raise InvalidInputError(
                f"The {what} '{shown}' ({len(piece)} characters, {count_tokens(piece)} tokens) is too long "
                f"to speak in one pass (the limit is {limit} tokens). Shorten it or add spaces."
            )
        current = piece
    if current:
        packed.append(current)
    return packed
