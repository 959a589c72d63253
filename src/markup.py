"""Inline markup of a line: `[pause 0.8s]` (silence) and `{speed 0.9}...{/speed}` (a pitch-preserving
time-stretch after the vocoder). Parsing is pure; `stretch` and `assemble` are pure audio functions.

Markup never reaches the tokenizer: a line becomes speech pieces (plain text, each rendered on its own)
and pauses. Any other `[bracket]` is TorToiSe prompt engineering and stays inside its piece untouched.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import librosa
import numpy as np
import torch

from src.errors import InvalidInput

MIN_SPEED = 0.5
MAX_SPEED = 2.0
MAX_PAUSE_S = 30.0
# `[pause <number>s]`; any bracket whose content starts with the word "pause" is treated as markup.
_PAUSE_RE = re.compile(r"\[\s*pause\s+(?P<value>[^\]\s]*?)\s*(?P<unit>s?)\s*\]", re.IGNORECASE)
_PAUSE_START_RE = re.compile(r"\[\s*pause(?:\s|\])", re.IGNORECASE)
_SPEED_OPEN_RE = re.compile(r"\{\s*speed\s+(?P<value>[^}\s]*)\s*\}", re.IGNORECASE)
_SPEED_CLOSE_RE = re.compile(r"\{\s*/\s*speed\s*\}", re.IGNORECASE)
_NUMBER_RE = re.compile(r"[0-9]+(?:\.[0-9]+)?|\.[0-9]+")


class MarkupError(InvalidInput):
    """Markup that cannot be used; the message names the position (1-based character) and the fix."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(f"Markup error at character {position + 1}: {message}")
        self.position = position
        self.detail = message


@dataclass(frozen=True)
class SpeechPiece:
    """Text to render in one pass, and the speed its audio is stretched to (1.0 = unchanged).

    Attributes:
        text: plain text (may hold `[bracket]` prompt engineering), stripped, never empty.
        speed: playback speed factor in 0.5-2.0; the audio lasts `1 / speed` times as long.
        position: 0-based offset of the piece in the marked-up text (for messages).
    """

    text: str
    speed: float = 1.0
    position: int = 0


@dataclass(frozen=True)
class Pause:
    """Silence of `seconds` inserted at this point."""

    seconds: float
    position: int = 0


Piece = SpeechPiece | Pause


def _number(raw: str, what: str, position: int, low: float, high: float, unit: str = "") -> float:
    if not _NUMBER_RE.fullmatch(raw or ""):
        raise MarkupError(f"'{raw}' is not a number; write it like {what}.", position)
    value = float(raw)
    if not low <= value <= high:
        raise MarkupError(f"{value:g}{unit} is outside {low:g}{unit}-{high:g}{unit}.", position)
    return value


def _bracket_end(text: str, start: int) -> int:
    """Index of the `]` closing the `[` at `start`; refuses markup or another `[` inside it."""
    for index in range(start + 1, len(text)):
        char = text[index]
        if char == "]":
            return index
        if char == "[" and _PAUSE_START_RE.match(text, index):
            raise MarkupError("a [pause ...] cannot go inside [brackets]; move it outside.", index)
        if char == "[":
            raise MarkupError("[brackets] cannot be nested; close the first one before opening another.",
                              index)  # fmt: skip
        if char in "{}":
            raise MarkupError("{speed} markup cannot go inside [brackets]; put the whole bracket inside "
                              "the speed span instead.", index)  # fmt: skip
    raise MarkupError("this [ is never closed; add the ].", start)


def parse_markup(text: str) -> list[Piece]:
    """Split a line into speech pieces and pauses.

    `[pause 0.8s]` (seconds, 0-30; the `s` may be left out) splits the text and inserts silence.
    `{speed X}...{/speed}` renders the enclosed text as its own piece and stretches it to speed X
    (0.5-2.0; 0.9 is 10 % slower) without changing the pitch. Other `[brackets]` are prompt engineering
    and are kept in the text. Pieces that are only whitespace or punctuation are dropped.

    Args:
        text: one line or segment.

    Returns:
        Pieces in order; consecutive pauses are kept as they are (their lengths add up).

    Raises:
        MarkupError: bad numbers, speed out of range, an unclosed or stray `{speed}`/`{/speed}`, nested
            speed spans, markup inside `[brackets]`, an unknown `{tag}` or an unclosed `[`.
    """
    pieces: list[Piece] = []
    buffer: list[str] = []
    buffer_start = 0
    speed, speed_open_at = 1.0, -1
    index = 0

    def flush(at: int) -> None:
        nonlocal buffer_start
        chunk = "".join(buffer)
        outside_brackets = re.sub(r"\[[^\]]*\]", "", chunk)
        if re.search(r"\w", outside_brackets):
            lead = len(chunk) - len(chunk.lstrip())
            pieces.append(SpeechPiece(chunk.strip(), speed, buffer_start + lead))
        elif "[" in chunk:
            raise MarkupError("this [bracket] has no words beside it before the next markup; put it "
                              "next to the words it should shape.", buffer_start + chunk.index("["))
        buffer.clear()
        buffer_start = at

    while index < len(text):
        char = text[index]
        if char == "[":
            if _PAUSE_START_RE.match(text, index):
                match = _PAUSE_RE.match(text, index)
                end = text.find("]", index)
                if match is None or end < 0:
                    raise MarkupError("write a pause as [pause 0.8s].", index)
                seconds = _number(match.group("value"), "[pause 0.8s]", index, 0.0, MAX_PAUSE_S, " s")
                flush(match.end())
                pieces.append(Pause(seconds, index))
                index = match.end()
                continue
            end = _bracket_end(text, index)
            buffer.append(text[index : end + 1])
            index = end + 1
            continue
        if char == "{":
            opening = _SPEED_OPEN_RE.match(text, index)
            closing = _SPEED_CLOSE_RE.match(text, index)
            if opening:
                if speed_open_at >= 0:
                    raise MarkupError("speed spans cannot be nested; close the first with {/speed}.", index)
                value = _number(opening.group("value"), "{speed 0.9}", index, MIN_SPEED, MAX_SPEED, "x")
                flush(opening.end())
                speed, speed_open_at = value, index
                index = opening.end()
                continue
            if closing:
                if speed_open_at < 0:
                    raise MarkupError("this {/speed} has no {speed X} before it.", index)
                flush(closing.end())
                speed, speed_open_at = 1.0, -1
                index = closing.end()
                continue
            raise MarkupError("unknown {...} markup; the only one is {speed 0.9}...{/speed}.", index)
        if char == "}":
            raise MarkupError("this } does not close any {speed ...} markup.", index)
        if char == "]":
            raise MarkupError("this ] has no [ before it.", index)
        buffer.append(char)
        index += 1
    if speed_open_at >= 0:
        raise MarkupError("this {speed ...} is never closed; end the span with {/speed}.", speed_open_at)
    flush(len(text))
    return pieces


def has_markup(text: str) -> bool:
    """True when the text holds `[pause ...]` or `{...}` markup (cheap check before parsing)."""
    return bool(_PAUSE_START_RE.search(text)) or "{" in text or "}" in text


def spoken_text(pieces: Sequence[Piece]) -> str:
    """The speech pieces' text joined by spaces: what a line says with its markup removed."""
    return " ".join(piece.text for piece in pieces if isinstance(piece, SpeechPiece))


def stretch(wav: torch.Tensor, speed: float) -> torch.Tensor:
    """Time-stretch a waveform by `speed` keeping its pitch (librosa's phase vocoder).

    Args:
        wav: (samples,) or (channels, samples) float waveform.
        speed: 0.5-2.0; the result has round(samples / speed) samples.

    Raises:
        InvalidInput: speed out of range.
    """
    if not math.isfinite(speed) or not MIN_SPEED <= speed <= MAX_SPEED:
        raise InvalidInput(f"Speed must be between {MIN_SPEED:g} and {MAX_SPEED:g}, got {speed}.")
    if speed == 1.0 or wav.shape[-1] == 0:
        return wav
    samples = wav.detach().cpu().double().numpy()
    target = round(samples.shape[-1] / speed)
    # n_fft 512 keeps the stretch fine-grained on short spans; fix_length makes the length exact
    stretched = librosa.effects.time_stretch(samples, rate=speed, n_fft=512)
    stretched = librosa.util.fix_length(stretched, size=target, axis=-1)
    return torch.from_numpy(np.ascontiguousarray(stretched)).to(wav.dtype)


def assemble(
    pieces: Sequence[Piece],
    render: Callable[[SpeechPiece], torch.Tensor],
    sample_rate: int,
) -> torch.Tensor:
    """Render each speech piece, stretch it to its speed and join everything with the pauses.

    Args:
        pieces: from `parse_markup`.
        render: returns the waveform of one piece, (1, samples) or (samples,) at `sample_rate`.
        sample_rate: Hz; pauses become round(seconds * sample_rate) zero samples.

    Returns:
        (1, samples) float waveform.

    Raises:
        InvalidInput: nothing to say (only pauses).
    """
    if not any(isinstance(piece, SpeechPiece) for piece in pieces):
        raise InvalidInput("There is nothing to say: the text holds only pauses. Add some words.")
    parts: list[torch.Tensor] = []
    for piece in pieces:
        if isinstance(piece, Pause):
            parts.append(torch.zeros(1, round(piece.seconds * sample_rate)))
        else:
            parts.append(stretch(render(piece).reshape(1, -1).float(), piece.speed))
    return torch.cat(parts, dim=-1)
