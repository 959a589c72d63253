"""Pronunciation lexicon: whole-word and case rules, bad entries and loops, atomic files, overlays."""

import json

import pytest

from src.lexicon import (
    Lexicon,
    LexiconError,
    build_lexicon,
    effective_lexicon,
    global_lexicon_path,
    load_lexicon,
    project_lexicon_path,
    read_lexicon_rows,
    save_lexicon,
)

ROWS = [["Nguyen", "win"], ["SQL", "sequel"], ["nginx", "engine x"], ["New York", "new yawk"]]


def test_whole_words_only_and_case_rules():
    lex = build_lexicon(ROWS)
    assert lex.apply("Mr. Nguyen's SQL query.") == "Mr. win's sequel query."
    # a word inside another word is not replaced
    assert lex.apply("Nguyenson and MySQL and SQLite stay.") == "Nguyenson and MySQL and SQLite stay."
    # lower-case entries match any case; capitalised entries only their own spelling
    assert lex.apply("NGINX or Nginx or nginx") == "Engine x or Engine x or engine x"
    assert lex.apply("sql is not SQL") == "sql is not sequel"
    # phrases match across any whitespace, and before punctuation
    assert lex.apply("In New  York, nginx-based.") == "In new yawk, engine x-based."


def test_one_pass_never_respells_a_respelling_and_longer_words_win():
    lex = build_lexicon([["York", "yawk"], ["New York", "the big apple"], ["apple", "pear"]])
    assert lex.apply("New York and York") == "the big apple and yawk"


@pytest.mark.parametrize(
    "rows, message",
    [
        ([["Nguyen", ""]], "Row 1: 'Nguyen' has no respelling"),
        ([["", "win"]], "Row 1: the respelling 'win' has no word"),
        ([["ok", "fine"], ["  ", "win"]], "Row 2: the respelling 'win' has no word"),
        ([["--", "dash"]], "has no letter or digit"),
        ([["pause", "[pause 1s]"]], "markup"),
        ([["sql", "sequel"], ["SQL", "ess cue ell"]], "Row 2: 'SQL' is already in row 1"),
        ([["A", "B"], ["B", "A"]], "Rows 1, 2 form a loop ('A' -> 'B' -> 'A')"),
        ([["cat", "the dog"], ["dog", "a bird"], ["bird", "cat"]], "Rows 1, 2, 3 form a loop"),
        ([["SQL", "SQL server"]], "Row 1: the respelling of 'SQL' contains the word itself"),
    ],
)
def test_bad_entries_are_refused_with_the_row(rows, message):
    with pytest.raises(LexiconError) as caught:
        build_lexicon(rows)
    assert message in str(caught.value)


def test_a_chain_is_not_a_loop_and_blank_rows_are_skipped():
    lex = build_lexicon([["A", "B"], ["B", "C"], [None, None], ["", ""]])
    assert lex.apply("A B") == "B C"


def test_save_is_atomic_and_refused_rows_write_nothing(tmp_path):
    path = global_lexicon_path(tmp_path)
    save_lexicon(path, ROWS)
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["schema_version"] == 1 and data["entries"][0] == {"word": "Nguyen", "respelling": "win"}
    assert load_lexicon(path).rows() == ROWS
    before = path.read_bytes()
    with pytest.raises(LexiconError):
        save_lexicon(path, [["A", "B"], ["B", "A"]])
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["lexicon.json"]  # no temporary left behind


def test_missing_file_is_empty_and_a_corrupt_one_is_kept_aside(tmp_path):
    path = global_lexicon_path(tmp_path)
    assert load_lexicon(path) == Lexicon()
    path.write_text("{not json", encoding="utf-8")
    loaded = read_lexicon_rows(path)
    assert loaded.rows == () and "could not be read" in loaded.warnings[0]
    assert (tmp_path / "lexicon.json.bak").read_text(encoding="utf-8") == "{not json"


def test_hand_edited_loop_is_shown_not_lost(tmp_path):
    path = global_lexicon_path(tmp_path)
    entries = [{"word": "A", "respelling": "B"}, {"word": "B", "respelling": "A"}]
    path.write_text(json.dumps({"entries": entries}), encoding="utf-8")
    assert read_lexicon_rows(path).rows == (("A", "B"), ("B", "A"))
    with pytest.raises(LexiconError, match="loop"):
        load_lexicon(path)
    assert path.is_file()


def test_project_entries_override_global_ones_and_loops_across_both_are_refused(tmp_path):
    config, project = tmp_path / "config", tmp_path / "project"
    save_lexicon(global_lexicon_path(config), ROWS)
    save_lexicon(project_lexicon_path(project), [["SQL", "ess cue ell"], ["Zoe", "zo-ee"]])
    lex = effective_lexicon(config, project)
    assert lex.apply("SQL and Zoe and Nguyen") == "ess cue ell and zo-ee and win"
    assert effective_lexicon(config).apply("SQL and Zoe") == "sequel and Zoe"
    save_lexicon(project_lexicon_path(project), [["win", "Nguyen"]])
    with pytest.raises(LexiconError, match="loop"):
        effective_lexicon(config, project)
