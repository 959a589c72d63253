"""src/atomic.py: a write appears whole or not at all, and leaves no temporary file behind."""

import json

import pytest

from src.atomic import replacing, write_json_atomic, write_text_atomic


def test_text_and_json_replace_the_file(tmp_path):
    path = tmp_path / "deep" / "folder" / "a.txt"
    write_text_atomic(path, "one\ntwo")
    assert path.read_text(encoding="utf-8") == "one\ntwo"
    write_json_atomic(path, {"é": [1, 2]})
    assert json.loads(path.read_text(encoding="utf-8")) == {"é": [1, 2]}
    assert "é" in path.read_text(encoding="utf-8")  # not escaped
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.txt"]


def test_a_failed_write_keeps_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "state.json"
    write_json_atomic(path, {"v": 1})
    with pytest.raises(RuntimeError):
        with replacing(path) as temporary:
            temporary.write_text("half", encoding="utf-8")
            raise RuntimeError("disk full")
    assert json.loads(path.read_text(encoding="utf-8")) == {"v": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_unserialisable_json_keeps_the_old_file(tmp_path):
    path = tmp_path / "s.json"
    write_json_atomic(path, [1])
    with pytest.raises(TypeError):
        write_json_atomic(path, {"x": object()})
    assert json.loads(path.read_text(encoding="utf-8")) == [1]
    assert len(list(tmp_path.iterdir())) == 1


def test_the_temporary_keeps_the_suffix_a_writer_needs(tmp_path):
    with replacing(tmp_path / "out.wav", suffix=".tmp.wav") as temporary:
        assert temporary.parent == tmp_path and temporary.name.endswith(".tmp.wav")
        temporary.write_bytes(b"RIFF")
    assert (tmp_path / "out.wav").read_bytes() == b"RIFF"
