"""Pure text preparation for the Generate tab: line splitting, hidden emotion prefixes, inline markup
(pauses and speed spans) and lexicon respelling of what TorToiSe hears, seed policy.

No I/O and no models: every function maps its arguments to a result, so the rules are easy to test.
"""

from __future__ import annotations

import random
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

from src.errors import InvalidInput
from src.markup import Pause, has_markup, parse_markup
from tortoise import InvalidInputError, split_text_by_tokens

EMOTIONS = ("None", "Happy", "Sad", "Angry", "Disgusted", "Arrogant", "Custom")
NO_EMOTION = "None"
CUSTOM_EMOTION = "Custom"
MAX_SEED = 2**32 - 1  # numpy's limit; torch accepts it too
# Chunk sizes of TorToiSe's long-text splitter, in characters (as tortoise/read.py uses them).
SPLIT_DESIRED_LENGTH = 200
SPLIT_MAX_LENGTH = 300
# The same sizes in tokens after cleaning (plain English is about 1.7 characters per token): a chunk
# of 180 tokens is about 20 s of speech, within what one pass can say before max_mel_tokens.
SPLIT_DESIRED_TOKENS = 120
SPLIT_MAX_TOKENS = 180
ALLOWED_CONTROL = "\n\r\t"
CONTROL_NAMES = {
    0x00: "NUL", 0x07: "BEL", 0x08: "BS", 0x0B: "VT", 0x0C: "FF", 0x1B: "ESC", 0x7F: "DEL",
}  # fmt: skip


@dataclass(frozen=True)
class TokenBudget:
    """How chunk lengths are measured: `count` maps text to its length (tokens after cleaning, or
    characters); chunks aim for `desired` and never exceed `maximum`."""

    count: Callable[[str], int]
    desired: int
    maximum: int


CHARACTER_BUDGET = TokenBudget(len, SPLIT_DESIRED_LENGTH, SPLIT_MAX_LENGTH)


def token_budget(
    count_tokens: Callable[[str], int], limit: int, prefix: str = "",
    respell: Callable[[str], str] | None = None,
) -> TokenBudget:  # fmt: skip
    """A budget in tokens for lines spoken after `prefix` (the hidden emotion), within one pass's `limit`.

    With `respell` (the lexicon), a line is measured as TorToiSe will hear it: respelled, prefix untouched.
    """
    say = respell or _unchanged
    maximum = min(SPLIT_MAX_TOKENS, limit)
    return TokenBudget(
        lambda text: count_tokens(prefix + say(text)), min(SPLIT_DESIRED_TOKENS, maximum), maximum
    )


def _unchanged(text: str) -> str:
    return text


def check_control_characters(text: str) -> None:
    """Refuse text with control characters (ESC, NUL, BEL...), naming them; line breaks and tabs are fine.

    Terminal colour codes such as ESC[31m would otherwise be read as [brackets].

    Raises:
        InvalidInput: naming each control character found, where it first occurs and how often.
    """
    found: dict[str, list[int]] = {}
    for position, char in enumerate(text):
        if char not in ALLOWED_CONTROL and unicodedata.category(char) == "Cc":
            code = ord(char)
            name = f"{CONTROL_NAMES.get(code, 'control character')} (U+{code:04X})"
            found.setdefault(name, []).append(position + 1)
    if not found:
        return
    listed = "; ".join(
        f"{name} at character {spots[0]}" + (f" and {len(spots) - 1} more" if len(spots) > 1 else "")
        for name, spots in found.items()
    )
    only = " The prompt holds nothing else." if not any(
        c.strip() and unicodedata.category(c) != "Cc" for c in text
    ) else ""
    raise InvalidInput(
        f"The prompt contains control characters that cannot be spoken: {listed}.{only} "
        "They often come from text copied out of a terminal; delete them and run again."
    )


@dataclass(frozen=True)
class SplitText:
    """The lines to generate, in order.

    Attributes:
        lines: non-empty, stripped lines; one clip (per candidate) is generated for each.
        auto_split: True when the splitter cut the text (blank delimiter) or a line that was too
            long; the UI should tell the user so.
    """

    lines: tuple[str, ...]
    auto_split: bool


@dataclass(frozen=True)
class PreparedPrompts:
    """Lines and the text actually sent to TorToiSe for each, with the timing the markup asks for.

    Attributes:
        lines: the user's lines without prefixes, respellings or markup.
        prompts: each line respelled by the lexicon, with its hidden emotion prefix (what TorToiSe hears).
        auto_split: see SplitText.
        speeds: per line, the `{speed X}` time-stretch of its audio (1.0 = none); empty means all 1.0.
        pauses_after_s: per line, the `[pause]` silence after it, in seconds; empty means none.
        pause_before_s: silence before the first line (a `[pause]` at the very start).
    """

    lines: tuple[str, ...]
    prompts: tuple[str, ...]
    auto_split: bool
    speeds: tuple[float, ...] = ()
    pauses_after_s: tuple[float, ...] = ()
    pause_before_s: float = 0.0

    def __post_init__(self) -> None:
        count = len(self.lines)
        if not self.speeds:
            object.__setattr__(self, "speeds", (1.0,) * count)
        if not self.pauses_after_s:
            object.__setattr__(self, "pauses_after_s", (0.0,) * count)
        assert len(self.prompts) == len(self.speeds) == len(self.pauses_after_s) == count

    @property
    def has_pauses(self) -> bool:
        """True when some silence must be inserted (the lines cannot be saved one clip per line alone)."""
        return self.pause_before_s > 0 or any(pause > 0 for pause in self.pauses_after_s)

    def marked_line(self, index: int) -> str:
        """Line `index` as the user wrote it: wrapped in its `{speed X}` markup when it has one."""
        line, speed = self.lines[index], self.speeds[index]
        return line if speed == 1.0 else f"{{speed {speed:g}}}{line}{{/speed}}"


def normalize_delimiter(delimiter: str | None) -> str:
    """None and the two characters `\\n` mean a newline; an empty string means "split automatically"."""
    if delimiter is None or delimiter == "\\n":
        return "\n"
    return delimiter


def split_text(
    text: str, delimiter: str | None, *, budget: TokenBudget = CHARACTER_BUDGET
) -> SplitText:
    """Split the prompt into the lines to generate.

    - A delimiter that occurs in the text splits it there; pieces are stripped and empty ones skipped
      (so `\\n` gives one clip per non-empty line). A piece longer than `budget.maximum` is cut further
      (see `split_text_by_tokens`), and `auto_split` says so.
    - A blank delimiter (the default) packs whole sentences into lines of about `budget.desired`,
      cutting a sentence too long for `budget.maximum` at clauses, then at spaces.
    - A delimiter that does not occur leaves the text as one line (cut only if too long).

    Args:
        text: the Prompt box.
        delimiter: the Line Delimiter box (see `normalize_delimiter`).
        budget: how lines are measured; the app measures tokens after cleaning (`token_budget`), so
            numbers and currency that the cleaners expand cannot push a line over the limit.

    Returns:
        The lines and whether any automatic split happened.

    Raises:
        InvalidInput: the text is empty or only whitespace/delimiters, or one word is too long for a
            line (the message names it).
    """
    if not text or not text.strip():
        raise InvalidInput("Please provide text.")
    separator = normalize_delimiter(delimiter)
    if not separator:
        if budget.count(text.strip()) <= budget.maximum:
            return SplitText((text.strip(),), False)
        chunks = _split_long(text, budget)
        return SplitText(tuple(chunks), len(chunks) > 1)

    lines: list[str] = []
    auto_split = False
    for piece in (piece.strip() for piece in text.split(separator)):
        if piece and budget.count(piece) > budget.maximum:
            chunks = _split_long(piece, budget)
            auto_split = auto_split or len(chunks) > 1
            lines.extend(chunks)
        elif piece:
            lines.append(piece)
    if not lines:
        raise InvalidInput("Please provide text: every line is empty.")
    return SplitText(tuple(lines), auto_split)


def _split_long(text: str, budget: TokenBudget) -> list[str]:
    try:
        return split_text_by_tokens(text, budget.count, budget.maximum, budget.desired)
    except InvalidInputError as error:
        raise InvalidInput(str(error)) from error


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
    text: str,
    delimiter: str | None,
    emotion: str | None,
    custom_emotion: str | None = "",
    *,
    count_tokens: Callable[[str], int] | None = None,
    token_limit: int = 0,
    respell: Callable[[str], str] | None = None,
) -> PreparedPrompts:
    """Split the text (see `split_text`) and prefix every line with the emotion (see `emotion_prefix`).

    Text with inline markup (`src.markup`) is cut at every `[pause]` and `{speed}` span first; each
    speech piece is then split as plain text, its lines carry its speed, and the last of them the pause
    that follows. Markup never reaches the prompts.

    Args:
        count_tokens / token_limit: measure lines in tokens after cleaning, the emotion prefix
            included, within `token_limit` tokens per pass; None splits by characters.
        respell: the pronunciation lexicon (`Lexicon.apply`), applied to each line of the prompts (never
            to the emotion prefix or `lines`); lines are measured respelled. None leaves the text as is.

    Raises:
        InvalidInput: empty text, control characters, an unknown emotion, a word too long, only pauses.
        MarkupError: bad markup (an InvalidInput naming the character).
    """
    check_control_characters(text)
    prefix = emotion_prefix(emotion, custom_emotion)
    say = respell or _unchanged
    budget = CHARACTER_BUDGET
    if count_tokens is not None and token_limit > 0:
        budget = token_budget(count_tokens, token_limit, prefix, respell)
    elif respell is not None:
        budget = TokenBudget(lambda line: len(say(line)), SPLIT_DESIRED_LENGTH, SPLIT_MAX_LENGTH)
    if not has_markup(text):
        split = split_text(text, delimiter, budget=budget)
        prompts = tuple(prefix + say(line) for line in split.lines)
        return PreparedPrompts(split.lines, prompts, split.auto_split)
    lines: list[str] = []
    speeds: list[float] = []
    pauses: list[float] = []
    pause_before_s, auto_split = 0.0, False
    for piece in parse_markup(text):
        if isinstance(piece, Pause):
            if pauses:
                pauses[-1] = round(pauses[-1] + piece.seconds, 6)
            else:
                pause_before_s = round(pause_before_s + piece.seconds, 6)
            continue
        split = split_text(piece.text, delimiter, budget=budget)
        auto_split = auto_split or split.auto_split
        lines.extend(split.lines)
        speeds.extend(piece.speed for _ in split.lines)
        pauses.extend(0.0 for _ in split.lines)
    if not lines:
        raise InvalidInput("There is nothing to say: the text holds only pauses. Add some words.")
    prompts = tuple(prefix + say(line) for line in lines)
    return PreparedPrompts(tuple(lines), prompts, auto_split, tuple(speeds), tuple(pauses), pause_before_s)


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
