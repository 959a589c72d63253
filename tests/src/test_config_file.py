"""Versioned JSON files: type coercion, atomic writes, .bak on corruption, migrations."""

import dataclasses
import json
from dataclasses import dataclass, field

import pytest

from src.config_file import ConfigSchema, coerce_fields, load_config, save_config, write_json_atomic


@dataclass(frozen=True)
class Sample:
    count: int = field(default=3, metadata={"minimum": 0, "maximum": 10})
    ratio: float = 0.5
    name: str | None = None
    flag: bool = False
    kind: str = field(default="a", metadata={"choices": ("a", "b")})
    tags: tuple[str, ...] = ()


def _migrate_v0(data, warnings):
    data = dict(data)
    if "old_count" in data:
        data["count"] = data.pop("old_count")
    warnings.append("migrated v0")
    return data


def _migrate_v1(data, warnings):
    return {**data, "name": data.get("name") or "from-v1"}


SCHEMA = ConfigSchema(Sample, 2, {0: _migrate_v0, 1: _migrate_v1}, "test file")


def test_coerce_accepts_compatible_values_and_reports_wrong_ones():
    values, problems, unknown = coerce_fields(
        Sample, {"count": 4.0, "ratio": 1, "name": None, "flag": 1, "kind": "z", "tags": ["x"], "what": 1}
    )
    assert values == {"count": 4, "ratio": 1.0, "name": None, "tags": ("x",)}
    assert isinstance(values["ratio"], float)
    assert any("'flag'" in p for p in problems) and any("'kind'" in p and "not one of" in p for p in problems)
    assert unknown == {"what": 1}


def test_bool_is_not_a_number_and_ranges_apply():
    values, problems, _ = coerce_fields(Sample, {"count": True, "ratio": False})
    assert values == {} and len(problems) == 2
    values, problems, _ = coerce_fields(Sample, {"count": 11})
    assert values == {} and "above the maximum" in problems[0]
    values, problems, _ = coerce_fields(Sample, {"count": 2.5})
    assert values == {} and problems


def test_round_trip_and_version_key(tmp_path):
    path = tmp_path / "x.json"
    value = Sample(count=7, name="n", tags=("a", "b"))
    save_config(path, value, 2)
    raw = json.loads(path.read_text())
    assert raw["schema_version"] == 2 and "\t" in path.read_text()
    loaded = load_config(path, SCHEMA)
    assert loaded.value == value and loaded.warnings == () and loaded.file_version == 2


def test_migrations_run_in_order(tmp_path):
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"old_count": 9}))
    loaded = load_config(path, SCHEMA)
    assert loaded.value.count == 9 and loaded.value.name == "from-v1"
    assert loaded.file_version == 0 and "migrated v0" in loaded.warnings


@pytest.mark.parametrize(
    "content", ["{not json", '{"count": 3', "[1, 2]", '"text"', '{"schema_version": "x"}']
)
def test_unreadable_file_kept_as_bak(tmp_path, content):
    path = tmp_path / "x.json"
    path.write_text(content)
    loaded = load_config(path, SCHEMA)
    assert loaded.value == Sample()
    assert loaded.backup_path == tmp_path / "x.json.bak"
    assert loaded.backup_path.read_text() == content and not path.exists()
    assert "x.json.bak" in loaded.warnings[0]


def test_write_json_atomic_keeps_old_file_on_failure(tmp_path):
    path = tmp_path / "sub" / "x.json"
    write_json_atomic(path, {"a": 1})
    with pytest.raises(TypeError):
        write_json_atomic(path, {"a": object()})
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in path.parent.iterdir()] == ["x.json"]


def test_every_field_needs_a_default():
    assert all(
        f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        for f in dataclasses.fields(Sample)
    )
