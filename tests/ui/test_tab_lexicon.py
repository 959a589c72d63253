"""The Lexicon & Preview tab with a FakeTTS: load/save the table (atomic, refused rows keep the file),
preview with the table's entries, marked characters and token ids, and the tab in the app."""

import json
import shutil

import gradio as gr
import pandas as pd
import pytest

from src.lexicon import global_lexicon_path
from src.ui import tab_lexicon
from src.ui.app_ui import TABS, build_ui
from tests.app_doubles import FakeTTS, make_context


@pytest.fixture
def ctx(tmp_path, tokenizer_path):
    context = make_context(tmp_path / "app", FakeTTS())
    shutil.copy(tokenizer_path, context.paths.tortoise_models_dir / "tokenizer.json")
    return context


def table(rows):
    return pd.DataFrame(rows, columns=tab_lexicon.HEADERS)


def test_empty_lexicon_offers_a_blank_row(ctx):
    assert tab_lexicon.load_table(ctx) == ([["", ""]], "0 entries.")


def test_save_and_reload(ctx):
    rows, status = tab_lexicon.save_clicked(ctx, table([["Nguyen", "win"], ["", ""], ["SQL", " sequel "]]))
    assert rows == [["Nguyen", "win"], ["SQL", "sequel"]] and status == "Saved 2 entries."
    saved = json.loads(global_lexicon_path(ctx.paths.config_dir).read_text(encoding="utf-8"))
    assert [e["word"] for e in saved["entries"]] == ["Nguyen", "SQL"]
    assert tab_lexicon.load_table(ctx) == ([["Nguyen", "win"], ["SQL", "sequel"]], "2 entries.")


def test_refused_rows_are_a_message_and_keep_the_file(ctx):
    tab_lexicon.save_clicked(ctx, table([["Nguyen", "win"]]))
    before = global_lexicon_path(ctx.paths.config_dir).read_bytes()
    with pytest.raises(gr.Error, match="form a loop"):
        tab_lexicon.save_clicked(ctx, table([["A", "B"], ["B", "A"]]))
    with pytest.raises(gr.Error, match="has no respelling"):
        tab_lexicon.save_clicked(ctx, table([["Nguyen", ""]]))
    assert global_lexicon_path(ctx.paths.config_dir).read_bytes() == before


def test_preview_uses_the_table_as_typed(ctx):
    html, summary, ids = tab_lexicon.preview_clicked(ctx, "Nguyen got 50% [pause 1s] Bye.",
                                                     table([["Nguyen", "win"]]))  # fmt: skip
    assert html.startswith("<p>win got fifty<mark") and "Pauses: 1 s" in html
    assert "Piece 1:" in summary and "/ 398 tokens (fits)" in summary and "cannot encode '%'" in summary
    first, second = ids.splitlines()
    assert all(part.isdigit() for part in first.split()) and second
    with pytest.raises(gr.Error, match="Markup error at character"):
        tab_lexicon.preview_clicked(ctx, "Hi [pause x]", table([["", ""]]))


def test_preview_without_the_tokenizer_says_where_it_comes_from(ctx):
    (ctx.paths.tortoise_models_dir / "tokenizer.json").unlink()
    with pytest.raises(gr.Error, match="downloaded with the models"):
        tab_lexicon.preview_clicked(ctx, "Hello.", None)


def test_the_tab_is_in_the_app(ctx):
    demo = build_ui(ctx)
    assert "Lexicon & Preview" in TABS
    assert set(demo.app_components["lexicon"]) >= {"table", "save", "preview", "cleaned", "summary", "ids"}


def test_a_project_has_its_own_lexicon_over_the_global_one(ctx):
    from src.lexicon import project_lexicon_path
    from src.settings import GenerateDefaults
    from tests.app_doubles import make_voice

    make_voice(ctx.paths.voices_dir, "amy", (1.0,))
    ctx.projects.create("book", "amy", "Hello.", GenerateDefaults(num_autoregressive_samples=2))
    assert tab_lexicon.scope_choices(ctx) == [tab_lexicon.GLOBAL, "amy/book"]
    tab_lexicon.save_clicked(ctx, table([["SQL", "sequel"]]))
    rows, status = tab_lexicon.save_clicked(ctx, table([["Nguyen", "win"]]), "amy/book")
    assert status == "Saved 1 entries for amy/book."
    saved = json.loads(project_lexicon_path(ctx.projects.folder("amy", "book")).read_text(encoding="utf-8"))
    assert [e["word"] for e in saved["entries"]] == ["Nguyen"]
    assert tab_lexicon.load_table(ctx, "amy/book") == ([["Nguyen", "win"]], "1 entries.")
    assert tab_lexicon.load_table(ctx, tab_lexicon.GLOBAL) == ([["SQL", "sequel"]], "1 entries.")
    html, _, _ = tab_lexicon.preview_clicked(ctx, "Nguyen knows SQL.", table([["Nguyen", "win"]]), "amy/book")
    assert html.startswith("<p>win knows sequel.")  # the project's entries over the global ones
    with pytest.raises(gr.Error, match="form a loop"):  # a loop across the two files is refused
        tab_lexicon.save_clicked(ctx, table([["sequel", "SQL"]]), "amy/book")
    with pytest.raises(gr.Error, match="no project"):
        tab_lexicon.load_table(ctx, "amy/missing")
