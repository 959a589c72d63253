"""How the UI shows what TorToiSe reads for a text: the respelled, cleaned text with the characters the
tokenizer cannot encode marked, a summary with the token count against the one-pass limit, the token ids."""

from __future__ import annotations

from typing import Any

from src.lexicon import Lexicon
from src.token_preview import TOKEN_LIMIT, highlight_html, preview_text


def render_preview(tokenizer: Any, text: str, lexicon: Lexicon) -> tuple[str, str, str]:
    """(cleaned text HTML with unencodable characters marked, summary, token ids) of `text` read with
    `lexicon` and `tokenizer` (the Lexicon tab's preview and the Projects tab's segment preview)."""
    preview = preview_text(text, tokenizer, lexicon)
    blocks = [f"<p>{highlight_html(piece)}</p>" for piece in preview.pieces]
    if preview.pause_s:
        blocks.append(f"<p><em>Pauses: {', '.join(f'{s:g} s' for s in preview.pause_s)}</em></p>")
    summary = preview.summary()
    if not preview.fits:
        summary += (f"\n\nOne pass reads at most {TOKEN_LIMIT} tokens: split a piece that is too long into "
                    "shorter lines.")
    ids = "\n".join(" ".join(str(i) for i in piece.ids) for piece in preview.pieces)
    return "".join(blocks), summary.replace("\n", "  \n"), ids
