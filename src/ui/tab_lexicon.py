"""The Lexicon & Preview tab: edit the global pronunciation lexicon or a project's own (saved atomically)
and preview what TorToiSe reads for a prompt: the respelled, cleaned text with unencodable characters
marked, the token ids and the count against the one-pass limit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

from src.context import AppContext
from src.lexicon import (
    build_lexicon,
    global_lexicon_path,
    load_lexicon,
    read_lexicon_rows,
    save_lexicon,
)
from src.projects import parse_ref
from src.ui.errors import ui_handler
from src.ui.token_view import render_preview

PRIVATE: dict[str, Any] = {"api_visibility": "private"}
HEADERS = ["Word", "Respelling"]
GLOBAL = "Global (every generation)"
INTRO = (
    "Words the cleaners mispronounce (names, acronyms, foreign words) are replaced by a respelling before "
    "TorToiSe reads the text. Whole words only; an entry in lower case matches any case, an entry with "
    "capitals only that spelling. Rows left blank are ignored. A project's own lexicon adds to the global "
    "one (its entries win) for that project's segments."
)


def build(ctx: AppContext) -> dict[str, Any]:
    """Lay out the tab inside the current gr.Tab and wire its events.

    Returns:
        Components: `scope`, `table`, `save`, `reload`, `status`, `text`, `preview`, `cleaned`, `summary`,
        `ids`.
    """
    c: dict[str, Any] = {}
    gr.Markdown(INTRO)
    with gr.Row(equal_height=False):
        with gr.Column():
            c["scope"] = gr.Dropdown(
                scope_choices(ctx), value=GLOBAL, label="Lexicon of", elem_id="lexicon-scope",
                info="The global lexicon, or a project's own entries on top of it.",
            )  # fmt: skip
            c["table"] = gr.Dataframe(
                value=[["", ""]], headers=HEADERS, datatype=["str", "str"], column_count=2,
                row_count=1, interactive=True, label="Lexicon", elem_id="lexicon-table",
            )  # fmt: skip
            with gr.Row():
                c["save"] = gr.Button("Save Lexicon", variant="primary", elem_id="lexicon-save")
                c["reload"] = gr.Button("Reload", elem_id="lexicon-reload")
            c["status"] = gr.Markdown(elem_id="lexicon-status")
        with gr.Column():
            c["text"] = gr.Textbox(
                label="Text to preview", lines=4, elem_id="preview-text",
                info="A prompt or segment; [pause 0.8s] and {speed 0.9}...{/speed} markup is shown split.",
            )  # fmt: skip
            c["preview"] = gr.Button("Preview Tokens", elem_id="preview-run")
            c["cleaned"] = gr.HTML(label="Cleaned text", elem_id="preview-cleaned")
            c["summary"] = gr.Markdown(elem_id="preview-summary")
            c["ids"] = gr.Textbox(label="Token ids", lines=3, interactive=False, elem_id="preview-ids")
    c["save"].click(lambda table, scope: save_clicked(ctx, table, scope), inputs=[c["table"], c["scope"]],
                    outputs=[c["table"], c["status"]], **PRIVATE)  # fmt: skip
    c["reload"].click(lambda scope: load_table(ctx, scope), inputs=c["scope"],
                      outputs=[c["table"], c["status"]], **PRIVATE)  # fmt: skip
    c["scope"].focus(lambda: gr.update(choices=scope_choices(ctx)), outputs=c["scope"], **PRIVATE)
    c["scope"].input(lambda scope: load_table(ctx, scope), inputs=c["scope"],
                     outputs=[c["table"], c["status"]], **PRIVATE)  # fmt: skip
    c["preview"].click(
        lambda text, table, scope: preview_clicked(ctx, text, table, scope),
        inputs=[c["text"], c["table"], c["scope"]], outputs=[c["cleaned"], c["summary"], c["ids"]], **PRIVATE,
    )  # fmt: skip
    return c


def scope_choices(ctx: AppContext) -> list[str]:
    """The global lexicon, then every project (`voice/name`)."""
    return [GLOBAL, *ctx.projects.list_projects()]


def _lexicon_path(ctx: AppContext, scope: str | None) -> Path:
    if not scope or scope == GLOBAL:
        return global_lexicon_path(ctx.paths.config_dir)
    voice, name = parse_ref(scope)
    return ctx.projects.lexicon_file(voice, name)


def _rows(table: Any) -> list[list[Any]]:
    """Table value (a pandas DataFrame, or a list of rows in tests) -> list of [word, respelling]."""
    if table is None:
        return []
    if hasattr(table, "values") and hasattr(table, "columns"):
        return table.values.tolist()
    return [list(row) for row in table]


@ui_handler
def load_table(ctx: AppContext, scope: str | None = None) -> tuple[list[list[str]], str]:
    """The saved lexicon rows of the scope (at least one blank row to type into) and a status line."""
    loaded = read_lexicon_rows(_lexicon_path(ctx, scope))
    for warning in loaded.warnings:
        gr.Warning(warning)
    rows = [list(row) for row in loaded.rows] or [["", ""]]
    return rows, f"{len(loaded.rows)} entries."


@ui_handler
def save_clicked(ctx: AppContext, table: Any, scope: str | None = None) -> tuple[list[list[str]], str]:
    """Check and save the table; a refused table is left as typed and nothing is written. A project's
    table is also checked together with the global lexicon (a loop across the two is refused)."""
    rows = _rows(table)
    if scope and scope != GLOBAL:
        load_lexicon(global_lexicon_path(ctx.paths.config_dir)).merged(build_lexicon(rows))
    lexicon = save_lexicon(_lexicon_path(ctx, scope), rows)
    where = "" if not scope or scope == GLOBAL else f" for {scope}"
    return lexicon.rows() or [["", ""]], f"Saved {len(lexicon.entries)} entries{where}."


@ui_handler
def preview_clicked(ctx: AppContext, text: str, table: Any = None, scope: str | None = None
                    ) -> tuple[str, str, str]:  # fmt: skip
    """(cleaned text HTML with unencodable characters marked, summary, token ids) for `text`, with the
    lexicon as the table shows it (saved or not; a project's table over the global lexicon); without a
    table, the saved lexicon."""
    if table is None:
        rows: list[Any] = list(read_lexicon_rows(_lexicon_path(ctx, scope)).rows)
    else:
        rows = _rows(table)
    lexicon = build_lexicon(rows)
    if scope and scope != GLOBAL:
        lexicon = load_lexicon(global_lexicon_path(ctx.paths.config_dir)).merged(lexicon)
    return render_preview(ctx.tokenizers.get(), text, lexicon)
