"""From a project's text to its rows: plain text or a multi-voice script (`Voice: text` lines), with the
inline markup of `src.markup` turned into row speeds and pauses, and every piece cut into segments that
fit one pass (measured in tokens after the lexicon's respellings).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from src.errors import InvalidInput
from src.lexicon import Lexicon
from src.markup import Pause, SpeechPiece, has_markup, parse_markup
from src.projects.segments import split_segments
from src.projects.state import MAX_PAUSE_S
from src.script import ScriptVoicesError, check_voices, parse_script, script_rows
from src.voices import VoiceLibrary


@dataclass(frozen=True)
class PlannedRow:
    """One row to create.

    Attributes:
        text: what it says (no markup; `[bracket]` prompt engineering kept).
        voice: its speaker, or None for the project's voice.
        speed: the time-stretch of its takes (1.0 = none).
        pause_s: silence after it in combined.wav.
    """

    text: str
    voice: str | None
    speed: float
    pause_s: float


class _RespellingTokenizer:
    """Counts tokens of the text as the model will read it: after the lexicon."""

    def __init__(self, tokenizer: object, respell: Callable[[str], str]) -> None:
        self._encode = tokenizer.encode
        self._respell = respell

    def encode(self, text: str) -> list[int]:
        return self._encode(self._respell(text))


def plan_rows(
    text: str,
    voice: str,
    *,
    script: bool,
    library: VoiceLibrary,
    tokenizer: object | None,
    lexicon: Lexicon | None,
    default_pause_s: float,
) -> list[PlannedRow]:
    """The rows of a new project.

    Each line (or each speaker line of a script) becomes one row per sentence, as for plain text. A
    `{speed}` span is a row of its own with that speed; a `[pause Ns]` sets the silence after the row
    before it. Rows of one line that a speed span cut apart follow each other with no pause; otherwise
    the silence between rows is `default_pause_s`.

    Args:
        text: the project's text or script.
        voice: the project's voice (and a script's default speaker).
        script: read `Voice: text` labels (and `#` comments) when True.
        library: checks the script's voices before anything is created.
        tokenizer: measures segments (None: characters).
        lexicon: respellings the model will read (segments are measured after them).
        default_pause_s: the project's pause between segments.

    Raises:
        InvalidInput: no text, bad markup (with line and character), pauses over 30 s after one row.
        ScriptVoicesError: the script names voices that cannot be used (every one is listed).
    """
    if not (text or "").strip():
        raise InvalidInput("Please provide text: the project text is empty.")
    segments = parse_script(text, voice, labels=script)
    if script:
        problems = check_voices(segments, library)
        if problems:
            raise ScriptVoicesError(problems)
    if tokenizer is not None and lexicon is not None and lexicon.entries:
        tokenizer = _RespellingTokenizer(tokenizer, lexicon.apply)
    rows = script_rows(segments)
    planned: list[PlannedRow] = []
    for index, row in enumerate(rows):
        if row.pause_after_s > MAX_PAUSE_S:
            raise InvalidInput(
                f"Line {row.line}: the pauses after it add up to {row.pause_after_s:g} s; a segment can be "
                f"followed by at most {MAX_PAUSE_S:g} s of silence."
            )
        same_line_next = index + 1 < len(rows) and rows[index + 1].line == row.line
        gap = row.pause_after_s if row.pause_after_s > 0 else (0.0 if same_line_next else default_pause_s)
        pieces = split_segments(row.text, tokenizer)
        row_voice = None if row.voice == voice else row.voice
        for number, piece in enumerate(pieces, start=1):
            pause = gap if number == len(pieces) else default_pause_s
            planned.append(PlannedRow(piece, row_voice, row.speed, round(pause, 3)))
    return planned


@dataclass(frozen=True)
class SegmentEdit:
    """A segment's text as typed in the editor, read for markup.

    Attributes:
        text: the words (markup removed).
        speed: from a `{speed}` span around the whole text, else None (the row keeps its speed).
        pause_s: from a `[pause]` at its end, else None (the row keeps its pause).
    """

    text: str
    speed: float | None
    pause_s: float | None


def read_segment_edit(text: str) -> SegmentEdit:
    """One segment's text with optional markup: a speed span around it and pauses after it.

    Raises:
        InvalidInput: empty, bad markup (with the character), or markup that would make several segments
            (a pause or speed change inside the text: use Insert After for another segment).
    """
    pieces = parse_markup((text or "").strip())
    speech = [p for p in pieces if isinstance(p, SpeechPiece)]
    if not speech:
        raise InvalidInput("A segment needs words; use Delete to remove it.")
    first = pieces.index(speech[0])
    if len(speech) > 1 or first > 0:
        raise InvalidInput(
            "This text holds markup that makes several segments (a pause or a speed change inside it). "
            "Keep one segment here and add the rest with Insert After; a [pause] may end the text."
        )
    pauses = [p.seconds for p in pieces[first + 1 :] if isinstance(p, Pause)]
    marked = has_markup(text)
    speed = speech[0].speed if marked else None
    pause = round(sum(pauses), 3) if pauses else None
    return SegmentEdit(speech[0].text, speed, pause)
