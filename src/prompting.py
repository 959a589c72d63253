"""Pure text preparation for the Generate tab: line splitting, hidden emotion prefixes, seed policy.

No I/O and no models: every function maps its arguments to a result, so the rules are easy to test.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from src.errors import InvalidInput
from tortoise import split_and_recombine_text

EMOTIONS = ("None", "Happy", "Sad", "Angry", "Disgusted", "Arrogant", "Custom")
NO_EMOTION = "None"
CUSTOM_EMOTION = "Custom"
MAX_SEED = 2**32 - 1  # numpy's limit; torch accepts it too
# Chunk sizes of TorToiSe's long-text splitter, in characters (as tortoise/read.py uses them).
SPLIT_DESIRED_LENGTH = 200
SPLIT_MAX_LENGTH = 300


@dataclass(frozen=True)
class SplitText:
    """The lines to generate, in order.

    Attributes:
        lines: non-empty, stripped lines; one clip (per candidate) is generated for each.
        auto_split: True when TorToiSe's splitter cut the text (blank delimiter) or a line that was too
            long; the UI should tell the user so.
    """

    lines: tuple[str, ...]
    auto_split: bool


@dataclass(frozen=True)
class PreparedPrompts:
    """Lines and the text actually sent to TorToiSe for each.

    Attributes:
        lines: the user's lines without prefixes (what metadata stores).
        prompts: each line with its hidden emotion prefix.
        auto_split: see SplitText.
    """

    lines: tuple[str, ...]
    prompts: tuple[str, ...]
    auto_split: bool


def normalize_delimiter(delimiter: str | None) -> str:
    """None and the two characters `\\n` mean a newline; an empty string means "split automatically"."""
    if delimiter is None or delimiter == "\\n":
        return "\n"
    return delimiter


def split_text(
    text: str,
    delimiter: str | None,
    *,
    desired_length: int = SPLIT_DESIRED_LENGTH,
    max_length: int = SPLIT_MAX_LENGTH,
) -> SplitText:
    """Split the prompt into the lines to generate.

    - A delimiter that occurs in the text splits it there; pieces are stripped and empty ones skipped
      (so `\\n` gives one clip per non-empty line). A piece longer than `max_length` characters is cut
      further with TorToiSe's splitter, and `auto_split` says so.
    - A blank delimiter (the default) hands the whole text to TorToiSe's `split_and_recombine_text`,
      which makes chunks of about `desired_length` characters at sentence ends.
    - A delimiter that does not occur leaves the text as one line (cut only if too long).

    Args:
        text: the Prompt box.
        delimiter: the Line Delimiter box (see `normalize_delimiter`).
        desired_length: chunk size the splitter aims for, in characters.
        max_length: longest chunk the splitter makes, and longest delimited line kept whole.

    Returns:
        The lines and whether any automatic split happened.

    Raises:
        InvalidInput: the text is empty or only whitespace/delimiters.
    """
    if not text or not text.strip():
        raise InvalidInput("Please provide text.")
    separator = normalize_delimiter(delimiter)
    if not separator:
        chunks = split_and_recombine_text(text, desired_length, max_length)
        if len(chunks) <= 1:
            return SplitText((text.strip(),), False)
        return SplitText(tuple(chunks), True)

    pieces = [piece.strip() for piece in text.split(separator)]
    lines: list[str] = []
    auto_split = False
    for piece in pieces:
        if len(piece) > max_length:
            chunks = split_and_recombine_text(piece, desired_length, max_length)
            auto_split = auto_split or len(chunks) > 1
            lines.extend(chunks)
        elif piece:
            lines.append(piece)
    if not lines:
        raise InvalidInput("Please provide text: every line is empty.")
    return SplitText(tuple(lines), auto_split)


def _check_emotion(emotion: str | None) -> str:
    if emotion is None or not str(emotion).strip():
        return NO_EMOTION
    by_lower = {name.lower(): name for name in EMOTIONS}
    name = by_lower.get(str(emotion).strip().lower())
    if name is None:
        raise InvalidInput(f"Unknown emotion '{emotion}'. Choose one of: {', '.join(EMOTIONS)}.")
    return name


def _clean_custom(custom_emotion: str | None) -> str:
    """The custom text without surrounding brackets or a trailing comma, so prefixes never double."""
    cleaned = (custom_emotion or "").strip()
    if cleaned.startswith("[") and cleaned.endswith("]"):
        cleaned = cleaned[1:-1].strip()
    return cleaned.rstrip(",").strip()


def emotion_prefix(emotion: str | None, custom_emotion: str | None = "") -> str:
    """The hidden prefix for a line: TorToiSe hears `[...]` but does not speak it.

    Args:
        emotion: one of EMOTIONS (case-insensitive); None or "None" means no prefix.
        custom_emotion: the text used when emotion is "Custom"; blank means no prefix.

    Returns:
        `"[I am really sad,] "`, `"[<custom text>,] "` or `""`.

    Raises:
        InvalidInput: the emotion is not one of EMOTIONS.
    """
    name = _check_emotion(emotion)
    if name == NO_EMOTION:
        return ""
    if name == CUSTOM_EMOTION:
        custom = _clean_custom(custom_emotion)
        return f"[{custom},] " if custom else ""
    return f"[I am really {name.lower()},] "


def apply_emotion(line: str, emotion: str | None, custom_emotion: str | None = "") -> str:
    """`line` with its hidden emotion prefix (see `emotion_prefix`)."""
    return emotion_prefix(emotion, custom_emotion) + line


def strip_emotion_prefix(text: str, emotion: str | None, custom_emotion: str | None = "") -> str:
    """Remove the prefix `apply_emotion` would add, if `text` starts with it (for old metadata files).

    Unknown emotions leave the text unchanged rather than raising, since this only reads old files.
    """
    try:
        prefix = emotion_prefix(emotion, custom_emotion)
    except InvalidInput:
        return text
    if prefix and text.startswith(prefix):
        return text[len(prefix) :]
    return text


def prepare_prompts(
    text: str, delimiter: str | None, emotion: str | None, custom_emotion: str | None = ""
) -> PreparedPrompts:
    """Split the text (see `split_text`) and prefix every line with the emotion (see `emotion_prefix`).

    Raises:
        InvalidInput: empty text or an unknown emotion.
    """
    prefix = emotion_prefix(emotion, custom_emotion)
    split = split_text(text, delimiter)
    return PreparedPrompts(split.lines, tuple(prefix + line for line in split.lines), split.auto_split)


def resolve_seed(seed: int | float | None, rng: random.Random | None = None) -> int:
    """The seed to use: the user's seed, or a fresh random one when it is 0 or empty.

    Args:
        seed: the Seed box; 0 or None means random. Whole-number floats (Gradio numbers) are accepted.
        rng: source of random seeds (default: the operating system's).

    Returns:
        A seed in [1, MAX_SEED]; store it in the metadata so the run can be repeated.

    Raises:
        InvalidInput: a negative, fractional or too large seed.
    """
    if seed is None or seed == 0:
        return (rng or random.SystemRandom()).randint(1, MAX_SEED)
    try:
        whole = int(seed)
        usable = not isinstance(seed, bool) and float(seed) == whole and 0 < whole <= MAX_SEED
    except (TypeError, ValueError, OverflowError):  # NaN, infinity, text
        usable = False
    if not usable:
        raise InvalidInput(f"Seed must be 0 (random) or a whole number from 1 to {MAX_SEED}; got {seed}.")
    return whole
