"""The preflight doctor: what this installation can and cannot do, checked in a few seconds at start-up,
shown in Settings and by `setup-*.sh --check`. It reports the torch build against the hardware, the GPU
and its free memory (with a suggested preset and sample batch), ffmpeg, every model file (present,
missing or corrupt; the wav2vec2 aligner and the Whisper model included), writable data folders and
free disk space. Nothing here loads a model or touches the network.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from src.ffmpeg import FfmpegMissing, find_ffmpeg
from src.paths import AppPaths
from src.settings import AppSettings
from tortoise import CTC_TOKENIZER_ID, INFERENCE_FILES, MODEL_FILES, WAV2VEC2_MODEL_ID, checkpoint_problem

log = logging.getLogger(__name__)

OK, WARNING, PROBLEM = "ok", "warning", "problem"
MARKS = {OK: "✅", WARNING: "⚠️", PROBLEM: "❌"}
LOW_DISK_BYTES = 5 * 2**30  # the models alone take about 4 GB
GIB = 2**30
# Free GPU memory (GiB) -> the preset and AR sample batch that fit (tortoise.device's batch rule).
GPU_SUGGESTIONS = ((14, "Standard", 16), (10, "Fast", 8), (7, "Fast", 4), (0, "Ultra Fast", 1))
# openai-whisper stores each model as <file>.pt; these names map to another file.
WHISPER_FILES = {"large": "large-v3"}


@dataclass(frozen=True)
class Finding:
    """One line of the report: `area` ("GPU", "ffmpeg", "Model autoregressive.pth"...), a status and
    what to do about it."""

    area: str
    status: str
    message: str


@dataclass(frozen=True)
class DoctorReport:
    findings: tuple[Finding, ...]

    @property
    def problems(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.status == PROBLEM)

    @property
    def warnings(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.status == WARNING)

    def summary(self) -> str:
        if not self.problems and not self.warnings:
            return "All checks passed."
        return f"{len(self.problems)} problem(s), {len(self.warnings)} warning(s)."

    def to_markdown(self) -> str:
        lines = [f"**{self.summary()}**", "", "| | Check | Result |", "|---|---|---|"]
        for f in self.findings:
            lines.append(f"| {MARKS[f.status]} | {f.area} | {f.message.replace('|', '/')} |")
        return "\n".join(lines)

    def to_text(self) -> str:
        width = max((len(f.area) for f in self.findings), default=0)
        lines = [f"[{f.status.upper():7}] {f.area:<{width}}  {f.message}" for f in self.findings]
        return "\n".join([*lines, self.summary()])


@dataclass
class SystemProbe:
    """How the doctor looks at the machine; each part can be replaced (tests describe a machine).

    Attributes:
        torch_info: returns {"version", "cuda" (build or None), "hip", "gpus": [(name, free, total)]}.
        gpu_hardware: returns the GPUs the system has whatever torch can use (names), e.g. from nvidia-smi.
        find_ffmpeg: returns ffmpeg's path for an app root or raises FfmpegMissing.
        disk_usage: shutil.disk_usage.
    """

    torch_info: Callable[[], dict[str, Any]] = field(default_factory=lambda: torch_info)
    gpu_hardware: Callable[[], list[str]] = field(default_factory=lambda: gpu_hardware)
    find_ffmpeg: Callable[[Path], Path] = field(default_factory=lambda: find_ffmpeg)
    disk_usage: Callable[[str], Any] = field(default_factory=lambda: shutil.disk_usage)


def torch_info() -> dict[str, Any]:
    """The installed torch build and the GPUs it can use, with their free and total memory in bytes."""
    from tortoise import torch_build_info

    return torch_build_info()


def gpu_hardware() -> list[str]:
    """GPUs the machine has according to the driver tools (nvidia-smi, rocm-smi), whatever torch is."""
    for tool, args in (("nvidia-smi", ["--query-gpu=name", "--format=csv,noheader"]),
                       ("rocm-smi", ["--showproductname"])):  # fmt: skip
        path = shutil.which(tool)
        if path is None:
            continue
        try:
            done = subprocess.run([path, *args], capture_output=True, text=True, timeout=10, check=False)
        except (OSError, subprocess.SubprocessError):
            continue
        names = [line.strip() for line in done.stdout.splitlines() if line.strip()]
        if done.returncode == 0 and names:
            return names if tool == "nvidia-smi" else [f"AMD GPU ({tool})"]
    return []


def run_doctor(paths: AppPaths, settings: AppSettings, probe: SystemProbe | None = None) -> DoctorReport:
    """Check the installation (a few seconds; loads no model). See the module docstring for what."""
    probe = probe or SystemProbe()
    findings: list[Finding] = []
    for check in (_check_torch, _check_ffmpeg, _check_models, _check_folders, _check_disk):
        try:
            findings += check(paths, settings, probe)
        except Exception as error:  # boundary: one broken check must not hide the others
            log.exception("Doctor check %s failed", check.__name__)
            area = check.__name__.removeprefix("_check_")
            findings.append(Finding(area, WARNING, f"check failed: {error}"))
    return DoctorReport(tuple(findings))


def _check_torch(paths: AppPaths, settings: AppSettings, probe: SystemProbe) -> list[Finding]:
    info = probe.torch_info()
    build = "CPU-only"
    if info.get("cuda") or info.get("hip"):
        build = f"CUDA {info['cuda']}" if info.get("cuda") else f"ROCm {info['hip']}"
    findings = [Finding("torch", OK, f"{info.get('version')} ({build} build)")]
    gpus = info.get("gpus") or []
    hardware = probe.gpu_hardware()
    if not gpus and hardware:
        script = "setup-rocm.sh" if any("AMD" in name for name in hardware) else "setup-cuda.sh"
        problem = "is a CPU-only build" if build == "CPU-only" else "cannot use the GPU (driver problem?)"
        findings.append(Finding("GPU", PROBLEM, (
            f"This machine has {', '.join(hardware)}, but the installed torch {problem}, so everything "
            f"runs on the CPU, many times slower. Run ./{script} (or {script[:-3]}.bat on Windows) to "
            "install the GPU build."
        )))  # fmt: skip
        return findings
    if not gpus:
        findings.append(Finding("GPU", OK, (
            "none found; running on the CPU. Suggested: preset Ultra Fast, Sample Batch Size 0 (auto)."
        )))  # fmt: skip
        return findings
    for index, (name, free, total) in enumerate(gpus):
        preset, batch = next((p, b) for gib, p, b in GPU_SUGGESTIONS if free / GIB > gib)
        memory = f"{free / GIB:.1f} of {total / GIB:.1f} GiB free" if total else "memory unknown"
        low = " Tick Low VRAM in Settings." if total and free / GIB < 7 else ""
        findings.append(Finding(f"GPU {index}", OK, (
            f"{name}, {memory}. Suggested: preset {preset}, Sample Batch Size {batch}.{low}"
        )))  # fmt: skip
    return findings


def _check_ffmpeg(paths: AppPaths, settings: AppSettings, probe: SystemProbe) -> list[Finding]:
    try:
        return [Finding("ffmpeg", OK, f"found at {probe.find_ffmpeg(paths.root)}")]
    except FfmpegMissing as missing:
        return [Finding("ffmpeg", WARNING, (
            f"not found. WAV, FLAC, OGG and MP3 clips still load; other formats, video and the convert/ "
            f"scripts need it. {missing}"
        ))]  # fmt: skip


def model_file_status(path: Path, filename: str) -> tuple[str, str]:
    """(status, message) of one model file: present, missing or corrupt (empty, truncated, bad hash)."""
    spec = MODEL_FILES.get(filename)
    if not path.is_file():
        needed = "needed to generate" if filename in INFERENCE_FILES else (spec.purpose if spec else "")
        how = "it is downloaded on first use" if filename in MODEL_FILES else "put it there"
        return (PROBLEM if filename in INFERENCE_FILES else WARNING), f"missing ({needed}); {how}: {path}"
    problem = checkpoint_problem(path, spec)
    if problem:
        return PROBLEM, f"corrupt: {path} {problem}. Delete it; it is downloaded again, or copy a good one."
    return OK, f"present ({path.stat().st_size / 2**20:,.1f} MB)"


def _check_models(paths: AppPaths, settings: AppSettings, probe: SystemProbe) -> list[Finding]:
    findings = []
    offline = settings.models_local_only
    for filename, spec in MODEL_FILES.items():
        status, message = model_file_status(paths.tortoise_models_dir / filename, filename)
        if status == PROBLEM and "missing" in message and not offline:
            status = WARNING  # it downloads on first use
        findings.append(Finding(f"Model {filename}", status, message))
    if settings.autoregressive_model:
        path = Path(settings.autoregressive_model)
        status, message = model_file_status(path if path.is_absolute() else paths.root / path, path.name)
        findings.append(Finding("Autoregressive Model setting", status, message))
    findings.append(_aligner_finding(paths))
    findings.append(_whisper_finding(paths, settings))
    return findings


def hub_snapshot(cache_dir: Path, repo_id: str) -> Path | None:
    """The newest downloaded snapshot folder of a Hugging Face repo in a hub cache, or None."""
    snapshots = cache_dir / f"models--{repo_id.replace('/', '--')}" / "snapshots"
    found = sorted((p for p in snapshots.glob("*") if p.is_dir()), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def _aligner_finding(paths: AppPaths) -> Finding:
    area = "wav2vec2 aligner"
    cache = Path(os.environ.get("HF_HUB_CACHE") or paths.transformers_dir)
    model = hub_snapshot(cache, WAV2VEC2_MODEL_ID)
    tokenizer = hub_snapshot(cache, CTC_TOKENIZER_ID)
    how = (
        f"only [brackets] and emotions need it; it is downloaded on first use (about 1.2 GB) from the "
        f"Hugging Face Hub ({WAV2VEC2_MODEL_ID} and {CTC_TOKENIZER_ID}) into {cache}, or untick "
        "'Cut [Bracketed] Words' in the Generate tab"
    )
    if model is None or tokenizer is None:
        return Finding(area, WARNING, f"missing: {how}.")
    weights = [p for p in model.iterdir() if p.suffix in (".bin", ".safetensors")]
    if not (model / "config.json").is_file() or not weights or any(p.stat().st_size == 0 for p in weights):
        return Finding(area, PROBLEM, f"corrupt or incomplete in {model}: delete that folder; {how}.")
    return Finding(area, OK, f"present ({model})")


def whisper_model_file(paths: AppPaths, backend: str, model: str) -> Path | None:
    """Where the app's Whisper model is cached (models/whisper/), or None when it is not there."""
    root = paths.models_dir / "whisper"
    if Path(model).expanduser().exists():
        return Path(model).expanduser()
    if backend == "faster-whisper":
        snapshot = hub_snapshot(root, f"Systran/faster-whisper-{model}")
        return snapshot if snapshot is not None and (snapshot / "model.bin").is_file() else None
    path = root / f"{WHISPER_FILES.get(model, model)}.pt"
    return path if path.is_file() else None


def _whisper_finding(paths: AppPaths, settings: AppSettings) -> Finding:
    area = f"Whisper {settings.whisper_model} ({settings.whisper_backend})"
    found = whisper_model_file(paths, settings.whisper_backend, settings.whisper_model)
    if found is None:
        return Finding(area, WARNING, (
            f"missing: only Prepare Dataset needs it; it is downloaded on first use into "
            f"{paths.models_dir / 'whisper'}."
        ))  # fmt: skip
    if found.is_file() and found.stat().st_size == 0:
        return Finding(area, PROBLEM, f"corrupt: {found} is empty; delete it to download it again.")
    return Finding(area, OK, f"present ({found})")


def _check_folders(paths: AppPaths, settings: AppSettings, probe: SystemProbe) -> list[Finding]:
    findings = []
    for label, folder in (("voices/", paths.voices_dir), ("results/", paths.results_dir),
                          ("training/", paths.training_dir), ("config/", paths.config_dir),
                          ("models/", paths.models_dir)):  # fmt: skip
        problem = _write_problem(folder)
        if problem:
            findings.append(Finding(f"Folder {label}", PROBLEM, f"{folder} is not writable ({problem})."))
    if not findings:
        findings.append(Finding("Data folders", OK, "voices/ results/ training/ config/ models/ writable"))
    return findings


def _write_problem(folder: Path) -> str | None:
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent  # a folder not made yet is fine when its parent is writable
    try:
        with tempfile.NamedTemporaryFile(dir=probe, prefix=".doctor-", delete=True):
            pass
    except OSError as error:
        return error.strerror or str(error)
    return None


def _check_disk(paths: AppPaths, settings: AppSettings, probe: SystemProbe) -> list[Finding]:
    existing = paths.root
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    free = probe.disk_usage(str(existing)).free
    text = f"{free / GIB:,.1f} GiB free on the disk of {paths.root}"
    if free < LOW_DISK_BYTES:
        advice = "the models need about 4 GB, and each minute of audio about 5 MB"
        return [Finding("Disk space", WARNING, f"{text}; {advice}.")]
    return [Finding("Disk space", OK, text)]


def main(argv: list[str] | None = None) -> int:
    """`python -m src.doctor [--root DIR]`: print the report; exit 1 when there is a problem."""
    import argparse

    from src.settings import load_settings

    parser = argparse.ArgumentParser(prog="python -m src.doctor", description="Check this installation.")
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    args = parser.parse_args(argv)
    paths = AppPaths.from_root(args.root)
    settings = load_settings(paths.settings_file).value
    report = run_doctor(paths, settings)
    print(report.to_text())
    return 1 if report.problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
