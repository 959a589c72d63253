"""Token preview: respelling and token ids, unencodable characters with positions, the 398 limit,
markup kept away from the tokenizer, and finding the tokenizer without loading the TTS."""

import shutil

import pytest

from src.errors import AppError, InvalidInput
from src.lexicon import build_lexicon
from src.token_preview import TOKEN_LIMIT, TokenizerSource, highlight_html, preview_text
from tortoise import VoiceBpeTokenizer


@pytest.fixture(scope="module")
def tokenizer(tokenizer_path):
    return VoiceBpeTokenizer(tokenizer_path)


def test_preview_shows_the_respelling_and_its_token_ids(tokenizer):
    lex = build_lexicon([["Nguyen", "win"], ["SQL", "sequel"]])
    preview = preview_text("Mr. Nguyen likes SQL, not MySQL.", tokenizer, lex)
    (piece,) = preview.pieces
    assert piece.text == "Mr. win likes sequel, not MySQL."
    assert piece.cleaned == "mister win likes sequel, not mysql."
    assert list(piece.ids) == tokenizer.encode("mister win likes sequel, not mysql.")
    assert tokenizer.decode(piece.ids) == piece.cleaned
    assert piece.unknown == () and piece.fits and preview.fits
    plain = preview_text("Mr. Nguyen likes SQL, not MySQL.", tokenizer).pieces[0]
    assert plain.ids != piece.ids and "nguyen" in plain.cleaned


def test_unencodable_characters_are_reported_with_positions_and_highlighted(tokenizer):
    piece = preview_text("50% & more [softly] ok", tokenizer).pieces[0]
    assert piece.cleaned == "fifty% & more [softly] ok"
    assert piece.unknown == ((5, "%"), (7, "&"))  # the prompt brackets are expected, not flagged
    assert piece.ids.count(1) == 4  # [UNK] for % & [ ]
    html = highlight_html(piece)
    mark = '<mark title="cannot be encoded">{}</mark>'
    assert html.startswith(f"fifty{mark.format('%')} {mark.format('&amp;')} more [softly]")
    assert "cannot encode '%&'" in preview_text("50% & more", tokenizer).summary()


def test_markup_never_reaches_the_tokenizer(tokenizer):
    preview = preview_text("One. [pause 0.8s] {speed 1.5}Two.{/speed}", tokenizer)
    assert [p.cleaned for p in preview.pieces] == ["one.", "two."]
    assert preview.pause_s == (0.8,) and preview.pieces[1].speed == 1.5
    assert all(1 not in p.ids for p in preview.pieces)


def test_token_count_against_the_limit(tokenizer):
    long_text = "supercalifragilistic " * 60
    piece = preview_text(long_text, tokenizer).pieces[0]
    assert piece.token_count > TOKEN_LIMIT == 398 and not piece.fits
    assert "TOO LONG" in preview_text(long_text, tokenizer).summary()


def test_bad_input(tokenizer):
    with pytest.raises(InvalidInput, match="Type a prompt"):
        preview_text("  ", tokenizer)
    with pytest.raises(InvalidInput, match="character 5"):
        preview_text("Hi. [pause x]", tokenizer)


def test_tokenizer_source_prefers_the_loaded_tts_then_the_models_folder(tmp_path, tokenizer_path):
    source = TokenizerSource(tmp_path)
    with pytest.raises(AppError, match="downloaded with the models"):
        source.get()
    shutil.copy(tokenizer_path, tmp_path / "tokenizer.json")
    assert source.get().vocab_size == 255

    class Loaded:
        tokenizer = "the tts's own"

    assert TokenizerSource(tmp_path, lambda: Loaded()).get() == "the tts's own"
