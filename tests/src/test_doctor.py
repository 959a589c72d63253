"""The preflight doctor: torch build against the hardware, GPU suggestions, ffmpeg, model files (present,
missing, corrupt; aligner and Whisper included), writable folders, disk space, and its command line."""

import zipfile
from collections import namedtuple

import pytest
import torch

from src.doctor import OK, PROBLEM, WARNING, SystemProbe, main, run_doctor
from src.ffmpeg import find_ffmpeg
from src.paths import AppPaths
from src.settings import AppSettings
from tests.conftest import REFERENCE_DIR

Usage = namedtuple("Usage", "total used free")
GIB = 2**30


def machine(*, cuda=None, gpus=(), hardware=(), ffmpeg="/usr/bin/ffmpeg", free=100 * GIB):
    """A described machine: what torch reports, what the driver tools see, ffmpeg and the disk."""

    def find(root):
        if ffmpeg is None:
            return find_ffmpeg(root, search_path="")  # the real lookup, with nothing on PATH
        return ffmpeg

    return SystemProbe(
        torch_info=lambda: {"version": "2.13.0" + ("" if cuda else "+cpu"), "cuda": cuda, "hip": None,
                            "gpus": list(gpus)},  # fmt: skip
        gpu_hardware=lambda: list(hardware),
        find_ffmpeg=find,
        disk_usage=lambda path: Usage(2 * free, free, free),
    )


@pytest.fixture
def paths(tmp_path):
    paths = AppPaths.from_root(tmp_path)
    paths.ensure()
    return paths


def by_area(report):
    return {f.area: f for f in report.findings}


def test_a_cpu_only_torch_on_a_gpu_machine_is_a_problem(paths):
    report = run_doctor(paths, AppSettings(), machine(hardware=["NVIDIA GeForce RTX 4090"]))
    gpu = by_area(report)["GPU"]
    assert gpu.status == PROBLEM and gpu in report.problems
    assert "NVIDIA GeForce RTX 4090" in gpu.message and "CPU-only build" in gpu.message
    assert "./setup-cuda.sh" in gpu.message
    assert by_area(report)["torch"].message == "2.13.0+cpu (CPU-only build)"
    assert "GPU" in report.to_text() and "❌" in report.to_markdown()


@pytest.mark.parametrize(
    ("free_gib", "suggestion", "low_vram"),
    [
        (30, "preset Standard, Sample Batch Size 16", False),
        (5, "preset Ultra Fast, Sample Batch Size 1", True),
    ],
)
def test_gpu_free_memory_gives_a_preset_and_batch(paths, free_gib, suggestion, low_vram):
    gpus = [("NVIDIA A100", free_gib * GIB, 40 * GIB)]
    report = run_doctor(paths, AppSettings(), machine(cuda="13.0", gpus=gpus, hardware=["NVIDIA A100"]))
    gpu = by_area(report)["GPU 0"]
    assert gpu.status == OK and f"{free_gib:.1f} of 40.0 GiB free" in gpu.message
    assert suggestion in gpu.message and ("Low VRAM" in gpu.message) == low_vram
    assert by_area(report)["torch"].message == "2.13.0 (CUDA 13.0 build)"


def test_no_gpu_at_all_is_fine(paths):
    gpu = by_area(run_doctor(paths, AppSettings(), machine()))["GPU"]
    assert gpu.status == OK and "running on the CPU" in gpu.message


def test_missing_ffmpeg_says_where_it_was_looked_for(paths):
    report = run_doctor(paths, AppSettings(), machine(ffmpeg=None))
    finding = by_area(report)["ffmpeg"]
    assert finding.status == WARNING and "not found" in finding.message
    assert str(paths.bin_dir) in finding.message
    found = by_area(run_doctor(paths, AppSettings(), machine()))["ffmpeg"]
    assert found.status == OK and found.message == "found at /usr/bin/ffmpeg"


def test_model_files_present_missing_and_corrupt(paths):
    models = paths.tortoise_models_dir
    models.mkdir(parents=True, exist_ok=True)
    (models / "autoregressive.pth").write_bytes(b"")  # zero bytes
    with zipfile.ZipFile(models / "diffusion_decoder.pth", "w") as archive:
        archive.writestr("archive/data.pkl", b"x" * 1000)
    truncated = (models / "diffusion_decoder.pth").read_bytes()[:-40]
    (models / "clvp2.pth").write_bytes(truncated)  # a cut-off download
    (models / "mel_norms.pth").write_bytes((REFERENCE_DIR / "mel_norms.pth").read_bytes())
    (models / "tokenizer.json").write_text("{}")  # wrong size and sha256
    report = run_doctor(paths, AppSettings(models_local_only=True), machine())
    found = by_area(report)
    assert found["Model autoregressive.pth"].status == PROBLEM
    assert "corrupt" in found["Model autoregressive.pth"].message
    assert "is empty" in found["Model autoregressive.pth"].message
    assert found["Model clvp2.pth"].status == PROBLEM and "corrupt" in found["Model clvp2.pth"].message
    assert found["Model tokenizer.json"].status == PROBLEM
    assert "expected 4409" in found["Model tokenizer.json"].message
    assert found["Model diffusion_decoder.pth"].status == OK
    assert found["Model mel_norms.pth"].status == OK and "present" in found["Model mel_norms.pth"].message
    # offline, a missing file needed to generate is a problem; online it is downloaded (a warning)
    assert found["Model vocoder.pth"].status == PROBLEM and "missing" in found["Model vocoder.pth"].message
    online = by_area(run_doctor(paths, AppSettings(), machine()))
    assert online["Model vocoder.pth"].status == WARNING


def test_aligner_and_whisper_present_missing_and_corrupt(paths, monkeypatch):
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    found = by_area(run_doctor(paths, AppSettings(), machine()))
    assert found["wav2vec2 aligner"].status == WARNING
    assert "Cut [Bracketed] Words" in found["wav2vec2 aligner"].message
    assert found["Whisper base (openai-whisper)"].status == WARNING

    cache = paths.transformers_dir
    model = cache / "models--jbetker--wav2vec2-large-robust-ft-libritts-voxpopuli" / "snapshots" / "abc"
    tokenizer = cache / "models--jbetker--tacotron-symbols" / "snapshots" / "def"
    model.mkdir(parents=True)
    tokenizer.mkdir(parents=True)
    (model / "pytorch_model.bin").write_bytes(b"")
    corrupt = by_area(run_doctor(paths, AppSettings(), machine()))["wav2vec2 aligner"]
    assert corrupt.status == PROBLEM and "corrupt or incomplete" in corrupt.message
    (model / "config.json").write_text("{}")
    (model / "pytorch_model.bin").write_bytes(b"weights")
    assert by_area(run_doctor(paths, AppSettings(), machine()))["wav2vec2 aligner"].status == OK

    whisper = paths.models_dir / "whisper"
    whisper.mkdir(parents=True)
    (whisper / "large-v3.pt").write_bytes(b"")
    settings = AppSettings(whisper_model="large")
    assert by_area(run_doctor(paths, settings, machine()))["Whisper large (openai-whisper)"].status == PROBLEM
    (whisper / "large-v3.pt").write_bytes(b"checkpoint")
    assert by_area(run_doctor(paths, settings, machine()))["Whisper large (openai-whisper)"].status == OK


def test_unwritable_folder_and_low_disk(paths):
    paths.results_dir.rmdir()
    paths.results_dir.write_text("a file where a folder should be")
    report = run_doctor(paths, AppSettings(), machine(free=GIB))
    found = by_area(report)
    assert found["Folder results/"].status == PROBLEM and "not writable" in found["Folder results/"].message
    assert found["Disk space"].status == WARNING and "1.0 GiB free" in found["Disk space"].message


def test_a_broken_check_does_not_hide_the_others(paths):
    def broken():
        raise RuntimeError("driver crashed")

    probe = machine()
    probe.torch_info = broken
    found = by_area(run_doctor(paths, AppSettings(), probe))
    assert found["torch"].status == WARNING and "driver crashed" in found["torch"].message
    assert "ffmpeg" in found and "Disk space" in found


def test_the_command_line_prints_the_report(tmp_path, capsys):
    code = main(["--root", str(tmp_path)])
    out = capsys.readouterr().out
    assert "torch" in out and "Model autoregressive.pth" in out and "warning(s)" in out
    assert code == 0  # nothing is a problem on a fresh install that may download
    assert torch.__version__.split("+")[0] in out
