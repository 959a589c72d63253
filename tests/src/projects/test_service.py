"""ProjectService: create, render, regenerate, pick, re-stitch only the changed span, edit/insert/delete,
embedded metadata, two tabs, hand-edited folders, too-long and empty segments."""

import json

import numpy as np
import pytest
import soundfile as sf

from src.errors import InvalidInput
from src.metadata import read_metadata
from src.projects import Edit
from src.projects.state import COMBINED_FILE, DONE, PENDING, STATE_FILE
from src.projects.stitch import span_bounds
from tests.src.projects.conftest import SIX


def render_all(service, name="book"):
    project = service.open("amy", name).project
    for row in project.rows:
        service.render_row("amy", name, row.id)
    return service.open("amy", name).project


def combined(service, name="book"):
    data, rate = sf.read(str(service.folder("amy", name) / COMBINED_FILE), dtype="int16")
    return data, rate


def test_create_splits_into_rows_and_saves_state(service, values):
    project = service.create("book", "amy", SIX, values)
    assert [row.text for row in project.rows] == [
        "One.", "Two two.", "Three three three.", "Four four.", "Five.", "Six six six six.",
    ]  # fmt: skip
    assert all(row.status == PENDING and row.seed == 1234 for row in project.rows)
    state = json.loads((service.folder("amy", "book") / STATE_FILE).read_text())
    assert len(state["rows"]) == 6 and state["schema_version"] == 1
    assert service.list_projects() == ["amy/book"]


@pytest.mark.parametrize(
    "name, text, message",
    [("", SIX, "name"), ("../x", SIX, "cannot be a project name"), ("ok", "  \n ", "empty")],
)
def test_bad_create_input_gives_a_message(service, values, name, text, message):
    with pytest.raises(InvalidInput, match=message):
        service.create(name, "amy", text, values)


def test_a_second_project_of_the_same_name_is_refused(service, values):
    service.create("book", "amy", SIX, values)
    with pytest.raises(InvalidInput, match="already exists"):
        service.create("book", "amy", "Other.", values)


def test_render_writes_tagged_segments_and_a_combined_file_with_pauses(service, values):
    service.create("book", "amy", SIX, values, pause_s=0.5)
    project = render_all(service)
    assert all(row.status == DONE and len(row.candidates) == 1 for row in project.rows)
    folder = service.folder("amy", "book")
    for index, row in enumerate(project.rows):
        meta = read_metadata(folder / row.candidates[0].file)
        assert (meta.text, meta.voice, meta.seed) == (row.text, "amy", 1234)
        assert meta.extra["project_row_id"] == row.id and meta.extra["project_row_index"] == index
    data, rate = combined(service)
    durations = sum(round(row.duration_s * rate) for row in project.rows)
    assert len(data) == durations + 5 * round(0.5 * rate)  # no pause after the last segment
    assert read_metadata(folder / COMBINED_FILE).text.startswith("One. Two two.")


def test_regenerate_and_pick_rewrites_only_that_span(service, values):
    service.create("book", "amy", SIX, values)
    project = render_all(service)
    before, _ = combined(service)
    old_bounds = span_bounds(project)
    third = project.rows[2]
    change = service.render_row("amy", "book", third.id, new_seed=True)
    row = change.project.rows[2]
    assert len(row.candidates) == 2 and row.candidates[1].seed != 1234
    service.pick("amy", "book", third.id, 0)
    restored, _ = combined(service)
    assert np.array_equal(restored, before)  # picking the first take again gives the same file
    project = service.pick("amy", "book", third.id, 1).project
    after, _ = combined(service)
    start, old_end = old_bounds[third.id]
    new_end = span_bounds(project)[third.id][1]
    assert np.array_equal(after[:start], before[:start])
    assert np.array_equal(after[new_end:], before[old_end:])
    assert not np.array_equal(after[start:new_end], before[start:old_end])


def test_edit_insert_delete_and_pause(service, values):
    service.create("book", "amy", SIX, values)
    project = render_all(service)
    first, second = project.rows[0].id, project.rows[1].id
    old_file = service.folder("amy", "book") / project.rows[1].candidates[0].file
    project = service.edit_text("amy", "book", second, "Changed words.").project
    assert project.rows[1].text == "Changed words." and project.rows[1].status == PENDING
    assert project.rows[1].candidates == [] and not old_file.exists()
    assert len(project.combined["spans"]) == 1  # combined.wav stops before the pending row
    project = service.insert_row("amy", "book", first, "Inserted.").project
    assert [r.text for r in project.rows[:3]] == ["One.", "Inserted.", "Changed words."]
    project = service.delete_row("amy", "book", project.rows[1].id).project
    assert len(project.rows) == 6
    project = service.set_pause("amy", "book", first, 1.25).project
    assert project.rows[0].pause_s == 1.25
    for row in project.rows:
        if row.chosen is None:
            service.render_row("amy", "book", row.id)
    data, rate = combined(service)
    project = service.open("amy", "book").project
    takes = sum(round(r.duration_s * rate) for r in project.rows)
    assert len(data) == takes + round(1.25 * rate) + 4 * round(0.3 * rate)


@pytest.mark.parametrize("pause", [-1, 31, "x"])
def test_bad_pause_is_refused(service, values, pause):
    project = service.create("book", "amy", SIX, values)
    with pytest.raises(InvalidInput, match="Pause"):
        service.set_pause("amy", "book", project.rows[0].id, pause)


def test_empty_rows_are_refused(service, values):
    project = service.create("book", "amy", "One.\n\n\nTwo.", values)
    assert len(project.rows) == 2
    with pytest.raises(InvalidInput, match="cannot be empty"):
        service.edit_text("amy", "book", project.rows[0].id, "   ")
    with pytest.raises(InvalidInput, match="text first"):
        service.insert_row("amy", "book", None, "")
    service.delete_row("amy", "book", project.rows[0].id)
    with pytest.raises(InvalidInput, match="at least one segment"):
        service.delete_row("amy", "book", project.rows[1].id)


def test_two_tabs_keep_both_edits_and_the_earlier_tab_is_told(service, values):
    project = service.create("book", "amy", SIX, values)
    base = project.edit_revision
    one, two = project.rows[0].id, project.rows[1].id
    first = service.edit_text("amy", "book", one, "Tab A.", Edit("A", base))
    assert first.notes == ()
    second = service.edit_text("amy", "book", two, "Tab B.", Edit("B", base))
    assert "another tab" in second.notes[0] and "applied to the latest" in second.notes[0]
    texts = [r.text for r in second.project.rows[:2]]
    assert texts == ["Tab A.", "Tab B."]  # no lost edits
    third = service.edit_text("amy", "book", one, "Tab B again.", Edit("B", base))
    assert "replaced theirs" in third.notes[0]
    assert third.project.rows[0].text == "Tab B again."  # the later save wins
    assert third.project.last_edit["tab"] == "B"


def test_missing_wavs_are_reported_and_rows_go_back_to_pending(service, values):
    service.create("book", "amy", SIX, values)
    project = render_all(service)
    folder = service.folder("amy", "book")
    (folder / project.rows[3].candidates[0].file).unlink()
    change = service.open("amy", "book")
    assert any("Segment 4" in note and "missing" in note for note in change.notes)
    assert change.project.rows[3].status == PENDING and change.project.rows[3].chosen is None
    assert len(change.project.combined["spans"]) == 3  # combined.wav rebuilt up to the gap
    data, rate = combined(service)
    takes = sum(round(r.duration_s * rate) for r in change.project.rows[:3])
    assert len(data) == takes + 3 * round(0.3 * rate)


@pytest.mark.parametrize("damage", ["garbage", "delete", "wrong types"])
def test_corrupt_state_is_rebuilt_from_the_segments(service, values, damage):
    service.create("book", "amy", SIX, values)
    project = render_all(service)
    state = service.folder("amy", "book") / STATE_FILE
    if damage == "garbage":
        state.write_text("{not json")
    elif damage == "delete":
        state.unlink()
    else:
        state.write_text(json.dumps({"name": 3, "voice": None, "rows": "x"}))
    change = service.open("amy", "book")
    assert change.notes
    assert [r.text for r in change.project.rows] == [r.text for r in project.rows]
    assert all(r.status == DONE for r in change.project.rows)
    if damage != "delete":
        assert (state.parent / "project.json.corrupt").is_file()


def test_a_folder_with_nothing_to_open_is_reported(service, values):
    service.create("book", "amy", SIX, values)
    (service.folder("amy", "book") / STATE_FILE).write_text("[]")
    with pytest.raises(InvalidInput, match="nothing to open"):
        service.open("amy", "book")


def test_wrong_values_in_a_row_fall_back_and_are_noted(service, values):
    service.create("book", "amy", SIX, values)
    state = service.folder("amy", "book") / STATE_FILE
    data = json.loads(state.read_text())
    data["rows"][0]["pause_s"] = "long"
    data["rows"][1]["chosen"] = 7
    state.write_text(json.dumps(data))
    change = service.open("amy", "book")
    assert change.project.rows[0].pause_s == 0.3
    assert change.project.rows[1].chosen is None
    assert any("pause_s" in note for note in change.notes)


def test_a_segment_too_long_for_one_pass_is_split_not_rejected(service, values, tts):
    long_text = "word " * 40 + "and some more words, with a clause in the middle of it all here"
    project = service.create("book", "amy", long_text.strip(), values)
    assert len(project.rows) == 1  # under the splitter's limit, over FakeTTS's 120 characters
    change = service.render_row("amy", "book", project.rows[0].id)
    rows = change.project.rows
    assert len(rows) > 1 and all(r.status == DONE for r in rows)
    assert " ".join(r.text for r in rows).split() == long_text.split()
    assert all(len(text) <= 120 for text, _ in tts.calls[-len(rows) :])


def test_row_voice_and_settings_override_the_project(service, values, ctx):
    from tests.app_doubles import make_voice

    make_voice(ctx.paths.voices_dir, "bob", (1.0,), seed=5)
    project = service.create("book", "amy", "One. Two.", values)
    row = project.rows[1]

    def change(p):
        p.row(row.id).voice = "bob"

    service._update("amy", "book", change)
    project = service.render_row("amy", "book", row.id, overrides={"temperature": 0.5}).project
    meta = read_metadata(service.folder("amy", "book") / project.rows[1].candidates[0].file)
    assert meta.voice == "bob" and meta.temperature == 0.5
    assert project.rows[1].settings == {"temperature": 0.5}
