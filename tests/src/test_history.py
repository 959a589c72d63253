"""History service: the table of a voice's outputs (newest first, `?` for what is unknown, never
an error for files without metadata) and the settings Copy Settings takes from a result."""

import dataclasses
import json

import pytest

from src.errors import InvalidVoiceName, MetadataError, ResultNotFound
from src.history import HEADERS, history_table, history_voices, result_metadata, settings_to_copy
from src.paths import AppPaths
from src.results import write_input_file
from src.settings import GenerateDefaults
from tests.generated_files import metadata, write_generated

COL = {header: i for i, header in enumerate(HEADERS)}


@pytest.fixture
def paths(tmp_path):
    paths = AppPaths.from_root(tmp_path)
    paths.ensure()
    return paths


@pytest.fixture
def amy(paths):
    """results/amy/ with: an embedded-metadata run, a sidecar run, a bare clip in an input.txt
    run, a flat mrq-style clip with nothing, and a corrupt WAV."""
    folder = paths.results_dir / "amy"
    write_generated(folder / "20240101-100000" / "result.wav", metadata())
    write_generated(
        folder / "20240102-100000" / "result.wav",
        metadata(seed=99, cond_free_k=1.0, experimentals=(), model_hash=None),
        embed=False,
    )
    write_generated(folder / "20240103-100000" / "result.wav")
    write_input_file(folder / "20240103-100000", metadata(text="From input.txt", seed=7).to_dict())
    write_generated(folder / "amy_00000.wav")
    (folder / "20240104-100000").mkdir()
    (folder / "20240104-100000" / "result.wav").write_bytes(b"RIFF not audio")
    return folder


def test_voices_with_outputs(paths, amy):
    (paths.results_dir / "empty").mkdir()
    assert history_voices(paths) == ["amy"]


def test_table_lists_every_file_newest_first_with_what_is_known(paths, amy):
    table = history_table(paths, "amy")
    assert table.voice == "amy"
    assert [name for name in table.names if "/" in name] == [
        "20240104-100000/result.wav",
        "20240103-100000/result.wav",
        "20240102-100000/result.wav",
        "20240101-100000/result.wav",
    ]
    assert table.names[0] == "amy_00000.wav"  # flat clip: dated by its mtime (today)
    assert len(table.rows) == len(table.names) and all(len(r) == len(HEADERS) for r in table.rows)
    rows = {row[COL["Name"]]: row for row in table.rows}

    embedded = rows["20240101-100000/result.wav"]
    expected = {
        "Text": "Hello there.", "Samples": "4", "Iterations": "6", "Temp.": "0.5", "Sampler": "DDIM",
        "CVVP": "0.0", "Top P": "0.7", "Diff. Temp.": "0.9", "Len Pen": "1.5", "Rep Pen": "2.5",
        "Cond-Free": "on", "Cond-Free K": "3.0", "Seed": "1234", "Time (s)": "1.235",
        "Datetime": "2023-02-28T12:00:05", "Model": "tiny_autoregressive", "Model Hash": "tiny0001",
        "Length (s)": "1.00",
    }  # fmt: skip
    assert {h: embedded[COL[h]] for h in expected} == expected

    sidecar = rows["20240102-100000/result.wav"]
    assert (sidecar[COL["Seed"]], sidecar[COL["Cond-Free"]], sidecar[COL["Model Hash"]]) == (
        "99",
        "off",
        "?",
    )

    from_input = rows["20240103-100000/result.wav"]
    assert (from_input[COL["Text"]], from_input[COL["Seed"]]) == ("From input.txt", "7")

    bare = rows["amy_00000.wav"]
    assert (
        bare[COL["Samples"]] == "?"
        and bare[COL["Seed"]] == "?"
        and bare[COL["Length (s)"]] == "1.00"
    )
    assert bare[COL["Datetime"]] != "?"  # the file's time is still known

    corrupt = rows["20240104-100000/result.wav"]
    assert corrupt[COL["Length (s)"]] == "?" and corrupt[COL["Datetime"]] == "2024-01-04 10:00:00"


def test_long_text_is_shortened_in_the_table(paths):
    write_generated(
        paths.results_dir / "bob" / "20240101-100000" / "result.wav", metadata(text="word " * 100)
    )
    text = history_table(paths, "bob").rows[0][COL["Text"]]
    assert len(text) == 120 and text.endswith("…")


def test_no_voice_or_unknown_voice_is_an_empty_table(paths):
    assert history_table(paths, None).rows == []
    assert history_table(paths, "nobody").rows == []
    with pytest.raises(InvalidVoiceName):
        history_table(paths, "../etc")


def test_copy_settings_takes_the_recorded_values(paths, amy):
    values = settings_to_copy(result_metadata(paths, "amy", "20240101-100000/result.wav"))
    assert isinstance(values, GenerateDefaults)
    assert (values.text, values.voice, values.seed) == ("Hello there.", "amy", 1234)
    assert (values.num_autoregressive_samples, values.diffusion_iterations) == (4, 6)
    assert (values.temperature, values.diffusion_sampler, values.top_p) == (0.5, "DDIM", 0.7)
    assert (values.cond_free, values.cond_free_k, values.half_precision) == (True, 3.0, False)
    assert (values.length_penalty, values.repetition_penalty, values.diffusion_temperature) == (
        1.5,
        2.5,
        0.9,
    )


def test_copy_settings_missing_keys_take_the_tab_defaults_not_mrqs_fallbacks(paths):
    path = paths.results_dir / "old" / "old_00000.json"
    path.parent.mkdir(parents=True)
    path.write_text(
        json.dumps({"text": "[I am really sad,] Hi.", "emotion": "Sad", "voice": "old"})
    )
    values = settings_to_copy(result_metadata(paths, "old", "old_00000.json"))
    defaults = GenerateDefaults()
    assert values.text == "Hi."  # mrq's hidden prefix is not doubled
    assert (values.temperature, values.diffusion_sampler) == (
        defaults.temperature,
        defaults.diffusion_sampler,
    )


def test_copy_settings_drops_a_preset_that_no_longer_matches():
    kept = settings_to_copy(
        metadata(preset="Ultra Fast", num_autoregressive_samples=16, diffusion_iterations=30)
    )
    assert kept.preset == "Ultra Fast"
    dropped = settings_to_copy(metadata(preset="Ultra Fast", num_autoregressive_samples=4))
    assert dropped.preset is None and dropped.num_autoregressive_samples == 4


def test_copy_settings_without_metadata_says_so(paths, amy):
    assert result_metadata(paths, "amy", "amy_00000.wav") is None
    with pytest.raises(MetadataError, match="nothing to copy"):
        settings_to_copy(None)


def test_out_of_range_values_keep_the_defaults(paths):
    values = settings_to_copy(
        dataclasses.replace(metadata(), num_autoregressive_samples=100000, seed=-5)
    )
    assert values.num_autoregressive_samples == GenerateDefaults().num_autoregressive_samples
    assert values.seed == 0


def test_result_outside_the_voice_folder_is_refused(paths, amy):
    with pytest.raises(ResultNotFound):
        result_metadata(paths, "amy", "../../config/exec.json")
    with pytest.raises(ResultNotFound):
        result_metadata(paths, "amy", "missing.wav")
