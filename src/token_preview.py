"""Token preview: what TorToiSe will read for a prompt or segment. Markup is removed, the lexicon
applied, the text cleaned and tokenized; characters the tokenizer cannot encode and the token count
against the one-pass limit are reported per piece. Also finds the tokenizer without loading the TTS.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from src.errors import AppError, InvalidInput
from src.lexicon import Lexicon
from src.markup import SpeechPiece, parse_markup
from tortoise import OFFICIAL_TEXT_TOKEN_LIMIT, UNK_TOKEN_ID, TortoiseError, VoiceBpeTokenizer

# TextToSpeech.encode_text refuses len(ids) + 1 >= 400 (the stop token is appended): 398 ids fit.
TOKEN_LIMIT = OFFICIAL_TEXT_TOKEN_LIMIT - 2
# Prompt-engineering brackets reach the model as [UNK] ids, as in TorToiSe; they are not a problem.
_EXPECTED_UNKNOWN = set("[]")


@dataclass(frozen=True)
class PiecePreview:
    """One speech piece as the model will read it.

    Attributes:
        text: the piece after the lexicon (markup removed).
        cleaned: `text` after the cleaners (what is tokenized).
        ids: BPE ids, without the stop token.
        unknown: (position in `cleaned`, character) of each character the vocabulary lacks; each becomes
            an [UNK] id and is not spoken.
        speed: the piece's `{speed}` factor.
    """

    text: str
    cleaned: str
    ids: tuple[int, ...]
    unknown: tuple[tuple[int, str], ...]
    speed: float = 1.0

    @property
    def token_count(self) -> int:
        return len(self.ids)

    @property
    def fits(self) -> bool:
        return self.token_count <= TOKEN_LIMIT


@dataclass(frozen=True)
class TextPreview:
    """Every speech piece of a text, and its pauses (seconds, in order)."""

    pieces: tuple[PiecePreview, ...]
    pause_s: tuple[float, ...]
    limit: int = TOKEN_LIMIT

    @property
    def fits(self) -> bool:
        return all(piece.fits for piece in self.pieces)

    def summary(self) -> str:
        """One line per piece: token count against the limit, and unknown characters."""
        lines = []
        for number, piece in enumerate(self.pieces, start=1):
            state = "fits" if piece.fits else "TOO LONG: split it"
            line = f"Piece {number}: {piece.token_count} / {self.limit} tokens ({state})"
            if piece.unknown:
                chars = "".join(dict.fromkeys(char for _, char in piece.unknown))
                line += f"; cannot encode {chars!r} (not spoken)"
            lines.append(line)
        return "\n".join(lines)


def preview_text(text: str, tokenizer: VoiceBpeTokenizer, lexicon: Lexicon | None = None) -> TextPreview:
    """Preview a prompt or segment.

    Args:
        text: raw text with markup and `[bracket]` prompt engineering.
        tokenizer: TorToiSe's tokenizer (its cleaner is applied).
        lexicon: respellings applied before the cleaners, or None.

    Raises:
        InvalidInput: bad markup (the message names the position) or empty text.
    """
    if not text or not text.strip():
        raise InvalidInput("Type a prompt or segment to preview.")
    pieces, pauses = [], []
    encodable: dict[str, bool] = {}
    for piece in parse_markup(text):
        if not isinstance(piece, SpeechPiece):
            pauses.append(piece.seconds)
            continue
        respelled = lexicon.apply(piece.text) if lexicon else piece.text
        cleaned = tokenizer.clean(respelled)
        unknown = []
        for position, char in enumerate(cleaned):
            if char.isspace() or char in _EXPECTED_UNKNOWN:
                continue
            if char not in encodable:
                encodable[char] = UNK_TOKEN_ID not in tokenizer.encode_cleaned(char)
            if not encodable[char]:
                unknown.append((position, char))
        ids = tuple(tokenizer.encode_cleaned(cleaned))
        pieces.append(PiecePreview(respelled, cleaned, ids, tuple(unknown), piece.speed))
    return TextPreview(tuple(pieces), tuple(pauses))


def highlight_html(piece: PiecePreview) -> str:
    """The cleaned text as HTML with each unencodable character in a <mark>."""
    marks = {position for position, _ in piece.unknown}
    out = []
    for position, char in enumerate(piece.cleaned):
        escaped = html.escape(char)
        out.append(f'<mark title="cannot be encoded">{escaped}</mark>' if position in marks else escaped)
    return "".join(out)


class TokenizerSource:
    """Finds TorToiSe's tokenizer: the loaded TTS's own, else `tokenizer.json` in the models folder.

    Args:
        models_dir: `models/tortoise/` (the file is downloaded there with the weights).
        loaded: returns the loaded TextToSpeech or None (never loads it).
    """

    def __init__(self, models_dir: Path, loaded: Callable[[], object | None] = lambda: None) -> None:
        self.models_dir = Path(models_dir)
        self.loaded = loaded
        self._tokenizer: VoiceBpeTokenizer | None = None

    def find(self) -> VoiceBpeTokenizer | None:
        """The tokenizer, or None while tokenizer.json is not downloaded (for checks that are optional)."""
        try:
            return self.get()
        except AppError:
            return None

    def get(self) -> VoiceBpeTokenizer:
        """The tokenizer.

        Raises:
            AppError: the models (and with them tokenizer.json) are not downloaded yet.
        """
        tts = self.loaded()
        if tts is not None and getattr(tts, "tokenizer", None) is not None:
            return tts.tokenizer
        if self._tokenizer is None:
            try:
                self._tokenizer = VoiceBpeTokenizer(self.models_dir / "tokenizer.json")
            except TortoiseError as error:
                raise AppError(
                    f"The preview needs TorToiSe's tokenizer.json in {self.models_dir}; it is downloaded "
                    f"with the models on the first generation. ({error})"
                ) from error
        return self._tokenizer
