"""Result folders and names, atomic clip writes with metadata, and the History listing."""

import json
import os
from datetime import datetime

import numpy as np
import pytest
import soundfile as sf
import torch

from src.errors import InvalidVoiceName, ResultNotFound
from src.metadata import GenerationMetadata, embed_metadata, read_metadata
from src.paths import AppPaths
from src.results import (
    clip_filename,
    combined_filename,
    create_run,
    delete_clips,
    list_history,
    list_result_voices,
    read_input_file,
    resolve_result,
    save_clip,
    write_input_file,
)

NOON = datetime(2023, 2, 28, 12, 0, 5)


@pytest.fixture
def paths(tmp_path):
    return AppPaths.from_root(tmp_path)


def _tone(seconds=0.1, rate=24000):
    return 0.5 * torch.sin(2 * torch.pi * 220 * torch.arange(int(seconds * rate)) / rate)


def test_run_folders_are_unique_within_one_second(paths):
    runs = [create_run(paths, "mary", NOON) for _ in range(3)]
    names = [run.run_dir.name for run in runs]
    assert names == ["20230228-120005", "20230228-120005-2", "20230228-120005-3"]
    assert all(run.run_dir.is_dir() and run.run_dir.parent == paths.results_dir / "mary" for run in runs)
    assert runs[0].voice == "mary" and runs[0].started == NOON
    assert create_run(paths, "random", NOON).run_dir.parent.name == "random"
    with pytest.raises(InvalidVoiceName):
        create_run(paths, "../escape", NOON)


def test_clip_names():
    assert clip_filename(0, 0, lines=1, candidates=1) == "result.wav"
    assert clip_filename(2, 1, lines=3, candidates=2) == "result_2_1.wav"
    assert clip_filename(0, 1, lines=1, candidates=2) == "result_0_1.wav"
    assert combined_filename(0, candidates=1) == "combined.wav"
    assert combined_filename(1, candidates=2) == "combined_1.wav"


def test_input_file_round_trip(paths):
    run = create_run(paths, "mary", NOON)
    path = write_input_file(run.run_dir, {"text": "Hi.", "seed": 3})
    assert path.name == "input.txt" and "\t" in path.read_text()
    assert read_input_file(run.run_dir) == {"text": "Hi.", "seed": 3}
    path.write_text("[oops")
    assert read_input_file(run.run_dir) is None
    assert read_input_file(paths.root) is None


def test_save_clip_embeds_metadata_atomically(paths):
    run = create_run(paths, "mary", NOON)
    meta = GenerationMetadata(text="Hi.", voice="mary", seed=7, latents="QUJD")
    path = save_clip(run.run_dir / "result.wav", torch.cat([_tone(), torch.tensor([1.7, -1.7])]), 24000, meta)
    audio, rate = sf.read(path, dtype="int16")
    assert rate == 24000 and audio[-2:].tolist() == [32767, -32768]  # clipped, not wrapped
    assert read_metadata(path) == meta
    assert sorted(p.name for p in run.run_dir.iterdir()) == ["result.wav"]  # no temporary files left


def test_save_clip_sidecar_and_bare(paths):
    run = create_run(paths, "mary", NOON)
    meta = GenerationMetadata(text="Hi.", latents="QUJD")
    path = save_clip(run.run_dir / "combined.wav", _tone(), 44100, meta, embed=False)
    assert (run.run_dir / "combined.json").is_file() and read_metadata(path).latents is None
    bare = save_clip(run.run_dir / "result_0_0.wav", _tone(), 24000)
    assert read_metadata(bare) is None
    delete_clips([path, bare])
    assert list(run.run_dir.iterdir()) == []


def test_history_lists_newest_first_with_what_is_known(paths):
    old = create_run(paths, "mary", datetime(2023, 1, 1, 9, 0, 0))
    save_clip(old.run_dir / "result.wav", _tone(), 24000, GenerationMetadata(text="old", seed=1))
    new = create_run(paths, "mary", NOON)
    save_clip(new.run_dir / "result_1_0.wav", _tone(), 24000)
    save_clip(new.run_dir / "result_0_0.wav", _tone(), 24000)
    write_input_file(new.run_dir, {"text": "new text", "seed": 9, "num_autoregressive_samples": 16})
    same_second = create_run(paths, "mary", NOON)
    save_clip(
        same_second.run_dir / "combined.wav",
        _tone(0.2, 44100),
        44100,
        GenerationMetadata(text="sidecar"),
        embed=False,
    )
    loose = paths.results_dir / "mary" / "mary_00000.wav"  # mrq's flat layout
    save_clip(loose, _tone(), 24000)
    embed_metadata(loose, GenerationMetadata(text="flat", datetime="2022-12-31T23:59:59"))
    (paths.results_dir / "mary" / "notes.txt").write_text("not a clip")

    entries = list_history(paths, "mary")
    assert [e.name for e in entries] == [
        "20230228-120005-2/combined.wav",
        "20230228-120005/result_0_0.wav",
        "20230228-120005/result_1_0.wav",
        "20230101-090000/result.wav",
        "mary_00000.wav",
    ]
    combined, first, _, oldest, flat = entries
    assert combined.metadata_source == "sidecar" and combined.sample_rate == 44100
    assert combined.duration_s == pytest.approx(0.2)
    assert (
        first.metadata_source == "input.txt" and first.metadata.seed == 9 and first.run == "20230228-120005"
    )
    assert oldest.metadata_source == "embedded" and oldest.metadata.text == "old"
    assert oldest.created == datetime(2023, 1, 1, 9, 0, 0)
    assert flat.run is None and flat.created == datetime(2022, 12, 31, 23, 59, 59)


def test_history_without_any_metadata_uses_file_facts(paths):
    folder = paths.results_dir / "bob" / "custom-run"
    folder.mkdir(parents=True)
    sf.write(folder / "x.wav", np.zeros(2400, dtype=np.int16), 24000)
    os.utime(folder / "x.wav", (1_600_000_000, 1_600_000_000))
    (entry,) = list_history(paths, "bob")
    assert entry.metadata is None and entry.metadata_source is None
    assert entry.created == datetime.fromtimestamp(1_600_000_000) and entry.duration_s == pytest.approx(0.1)
    assert list_history(paths, "nobody") == []


def test_result_voices(paths):
    assert list_result_voices(paths) == []
    save_clip(create_run(paths, "zed", NOON).run_dir / "result.wav", _tone(), 24000)
    save_clip(create_run(paths, "amy", NOON).run_dir / "result.wav", _tone(), 24000)
    create_run(paths, "empty", NOON)
    (paths.results_dir / ".temp").mkdir()
    (paths.results_dir / ".temp" / "a.wav").write_bytes(b"")
    assert list_result_voices(paths) == ["amy", "zed"]


def test_resolve_result_refuses_escapes(paths):
    run = create_run(paths, "mary", NOON)
    path = save_clip(run.run_dir / "result.wav", _tone(), 24000)
    assert resolve_result(paths, "mary", f"{run.run_dir.name}/result.wav") == path.resolve()
    (paths.root / "secret.wav").write_bytes(b"x")
    for name in ("../../secret.wav", "missing.wav", "/etc/passwd"):
        with pytest.raises(ResultNotFound):
            resolve_result(paths, "mary", name)


def test_input_file_is_json(paths):
    run = create_run(paths, "mary", NOON)
    write_input_file(run.run_dir, {"delimiter": "\\n"})
    assert json.loads((run.run_dir / "input.txt").read_text()) == {"delimiter": "\\n"}


def test_history_lists_project_takes_and_combined_files(paths):
    project = paths.results_dir / "mary" / "projects" / "book"
    save_clip(project / "segments" / "r1_1.wav", _tone(), 24000, GenerationMetadata(text="first", seed=3))
    save_clip(project / "combined.wav", _tone(0.2), 24000)
    (project / "project.json").write_text("{}")
    save_clip(paths.results_dir / "mary" / "projects" / ".hidden" / "x.wav", _tone(), 24000)
    entries = {e.name: e for e in list_history(paths, "mary")}
    assert set(entries) == {"projects/book/combined.wav", "projects/book/segments/r1_1.wav"}
    take = entries["projects/book/segments/r1_1.wav"]
    assert take.metadata_source == "embedded" and take.metadata.text == "first" and take.metadata.seed == 3
    assert take.run == "projects/book/segments"
    assert resolve_result(paths, "mary", take.name) == take.path.resolve()
