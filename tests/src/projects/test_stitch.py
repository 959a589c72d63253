"""stitch: a full build, then only the changed span rewritten (head and tail copied bit for bit)."""

import numpy as np
import soundfile as sf
import torch

from src.metadata import GenerationMetadata, read_metadata
from src.projects.state import Candidate, Project, Row
from src.projects.stitch import span_bounds, stitch
from tortoise.audio import save_wav

RATE = 8000


def take(folder, name, seconds, value):
    wav = torch.full((int(seconds * RATE),), value)
    save_wav(folder / name, wav, RATE)
    return Candidate(name, 1, seconds)


def project_of(folder, lengths):
    rows = []
    for i, seconds in enumerate(lengths):
        first = take(folder, f"r{i}_1.wav", seconds, 0.1 * (i + 1))
        rows.append(Row(f"r{i}", f"Text {i}.", candidates=[first], chosen=0, status="done", pause_s=0.25))
    return Project("p", "amy", rows=rows)


def read(folder):
    data, rate = sf.read(str(folder / "combined.wav"), dtype="int16")
    return data


def test_full_build_then_a_changed_middle_span_only(tmp_path):
    project = project_of(tmp_path, [0.5, 0.25, 0.75, 0.5])
    meta = GenerationMetadata(text="all")
    first = stitch(tmp_path, project, meta)
    assert first.changed == (0, len(read(tmp_path))) and first.rows == 4
    assert len(read(tmp_path)) == int(2.0 * RATE) + 3 * int(0.25 * RATE)
    assert read_metadata(tmp_path / "combined.wav").text == "all"
    before = read(tmp_path)
    assert stitch(tmp_path, project, meta).changed == (0, 0)  # nothing to do

    project.rows[2].candidates.append(take(tmp_path, "r2_2.wav", 1.0, -0.5))
    project.rows[2].chosen = 1
    result = stitch(tmp_path, project, meta)
    after = read(tmp_path)
    start = int(0.75 * RATE) + 2 * int(0.25 * RATE)
    assert result.changed == (start, start + int(1.25 * RATE))
    assert np.array_equal(after[:start], before[:start])
    tail = int(0.5 * RATE)
    assert np.array_equal(after[-tail:], before[-tail:])
    assert np.all(after[start : start + RATE] == round(-0.5 * 32768))
    assert span_bounds(project)["r2"] == (start, start + RATE)


def test_the_file_grows_in_order_and_stops_at_the_first_unfinished_row(tmp_path):
    project = project_of(tmp_path, [0.5, 0.5, 0.5])
    project.rows[1].chosen = None
    result = stitch(tmp_path, project, GenerationMetadata())
    assert result.rows == 1 and len(read(tmp_path)) == int(0.75 * RATE)
    project.rows[1].chosen = 0
    result = stitch(tmp_path, project, GenerationMetadata())
    assert result.rows == 3 and result.changed[0] == int(0.75 * RATE)  # appended after row 1's pause


def test_a_combined_file_edited_by_hand_is_rebuilt_in_full(tmp_path):
    project = project_of(tmp_path, [0.5, 0.5])
    stitch(tmp_path, project, GenerationMetadata())
    save_wav(tmp_path / "combined.wav", torch.zeros(100), RATE)
    result = stitch(tmp_path, project, GenerationMetadata())
    assert result.changed == (0, int(1.25 * RATE))


def test_no_finished_row_removes_the_file(tmp_path):
    project = project_of(tmp_path, [0.5])
    stitch(tmp_path, project, GenerationMetadata())
    project.rows[0].chosen = None
    assert stitch(tmp_path, project, GenerationMetadata()).path is None
    assert not (tmp_path / "combined.wav").exists()
