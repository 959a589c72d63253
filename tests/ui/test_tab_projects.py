"""The Projects tab's formatting and view logic without a browser: the segment table and its flagged-only
filter, the status line, the notice about another tab's edit, and reopening a rendering project on load."""

import pytest

from src.errors import InvalidInput
from src.projects import Edit
from src.qa import FLAG_DROPPED
from src.settings import AppSettings, GenerateDefaults
from src.ui import tab_projects
from tests.app_doubles import make_context, make_voice

VALUES = GenerateDefaults(seed=5, num_autoregressive_samples=2, candidates=1)


def make(tmp_path):
    ctx = make_context(tmp_path, settings=AppSettings(output_sample_rate=24000))
    make_voice(ctx.paths.voices_dir, "amy", (1.0,))
    project = ctx.projects.create("book", "amy", "One. Two. Three.", VALUES)
    return ctx, project


def test_table_status_and_flagged_filter(tmp_path):
    ctx, project = make(tmp_path)
    for row in project.rows:
        ctx.projects.render_row("amy", "book", row.id)

    def flag(p):
        p.rows[1].candidates[0].qa = {"wer": 0.5, "flags": [FLAG_DROPPED], "dropped": ["two"]}

    project = ctx.projects._update("amy", "book", flag).project
    table = tab_projects.row_table(project)
    assert [line[0] for line in table] == [1, 2, 3]
    assert table[1][1:5] == ["amy", "Two.", "done", "50"] and table[1][6:8] == [FLAG_DROPPED, 1.0]
    assert table[1][5] == "" and table[1][10:] == [1, 1]  # no voice-match score: the check was off
    assert [line[0] for line in tab_projects.row_table(project, flagged_only=True)] == [2]
    assert tab_projects.summary(project) == "**book** (amy): 3/3 segments done, 1 flagged by QA."


def test_a_tab_is_told_when_another_tab_edited_the_project(tmp_path):
    ctx, project = make(tmp_path)
    first = tab_projects._view(ctx, "amy/book", False, None, force=True)
    session = first[4]
    assert "Another tab" not in first[0]
    ctx.projects.edit_text("amy", "book", project.rows[0].id, "Changed.", Edit("other-tab", 0))
    second = tab_projects._view(ctx, "amy/book", False, session)
    assert "Another tab changed this project" in second[0]
    assert second[1][0][2] == "Changed."
    unchanged = tab_projects._view(ctx, "amy/book", False, second[4])
    assert unchanged[1] == tab_projects.gr.update()  # nothing new: the table and player are left alone


def test_a_rendering_project_is_reopened_after_a_reload(tmp_path):
    ctx, _ = make(tmp_path)
    assert tab_projects.on_load(ctx) == tab_projects.gr.update()
    ctx.job_runner.enqueue_project("amy/book")  # not started: the job stays waiting
    assert tab_projects.on_load(ctx)["value"] == "amy/book"


def test_a_segment_preview_reads_the_project_lexicon(tmp_path, tokenizer_path):
    import shutil

    from src.lexicon import project_lexicon_path, save_lexicon

    ctx, project = make(tmp_path)
    shutil.copy(tokenizer_path, ctx.paths.tortoise_models_dir / "tokenizer.json")
    save_lexicon(project_lexicon_path(ctx.projects.folder("amy", "book")), [["Two", "too"]])
    html, summary, ids = tab_projects.preview_segment(ctx, "amy/book", "Two {speed 0.9}cats.{/speed}")
    assert html.startswith("<p>too</p><p>cats.</p>") and "/ 398 tokens" in summary
    assert len(ids.splitlines()) == 2 and all(part.isdigit() for part in ids.split())
    with pytest.raises(InvalidInput, match="Pick a project first"):
        tab_projects.preview_segment(ctx, None, "Two.")
    with pytest.raises(InvalidInput, match="Pick a segment"):
        tab_projects.preview_segment(ctx, "amy/book", "  ")
