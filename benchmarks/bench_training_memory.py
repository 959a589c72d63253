"""Peak memory of a full-size fine-tuning run with checkpoint samples, and the app's memory around a TTS
unload, measured on this machine (CPU). Full-size models with random weights stand in for the official
files (the sizes, not the values, decide the memory), so no download is needed.

    venv/bin/python benchmarks/bench_training_memory.py --work /tmp/bench_memory            # everything
    venv/bin/python benchmarks/bench_training_memory.py --work /tmp/bench_memory --only unload
    venv/bin/python benchmarks/bench_training_memory.py --work /tmp/bench_memory --stop-during sample

It writes about 6 GB of weights into --work (reused by later runs). The trainer runs as the app runs it
(`python -m tortoise.training`), with the resident memory of it and its data-loader workers polled twice
a second; the kernel's own peak (VmHWM) of the trainer is reported too. The sample is rendered with
the ultra_fast preset shortened (max_mel_tokens, diffusion_iterations) so that it ends in minutes on a
CPU: its memory is the decoder models and one row of KV cache, which the shortening does not change.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.tortoise.training.conftest import make_dataset  # noqa: E402
from tortoise.training.memory import GB, estimate_run_memory, resident_bytes  # noqa: E402

MODEL_FILES = {"autoregressive": "autoregressive.pth", "diffusion_decoder": "diffusion_decoder.pth",
               "clvp2": "clvp2.pth", "vocoder": "vocoder.pth", "dvae": "dvae.pth"}
SAMPLE_OVERRIDES = {"max_mel_tokens": 48, "diffusion_iterations": 4}


def make_models(folder: Path) -> None:
    from tortoise.models import build

    folder.mkdir(parents=True, exist_ok=True)
    for name, file in MODEL_FILES.items():
        if not (folder / file).is_file():
            print(f"writing a random full-size {file}", flush=True)
            model = build(name)
            torch.save(model.state_dict(), folder / file)
            del model
            gc.collect()
    for file in ("tokenizer.json", "mel_norms.pth"):
        shutil.copy(ROOT / "tests/data/reference" / file, folder / file)


def measure_unload(models: Path) -> dict:
    """RSS of a fresh process: before loading the TTS, loaded, after engine.unload (as the app does)."""
    code = f"""
import json, sys
sys.path.insert(0, {str(ROOT)!r})
from src.engine import TTSEngine
from tortoise.api import TextToSpeech
from tortoise.training.memory import resident_bytes
engine = TTSEngine(lambda: TextToSpeech.from_dir({str(models)!r}, device="cpu", offline=True))
before = resident_bytes()
engine.get()
loaded = resident_bytes()
engine.unload()
print(json.dumps({{"before": before, "loaded": loaded, "after_unload": resident_bytes()}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def write_config(work: Path, models: Path, epochs: int, workers: int, sample: bool) -> Path:
    folder = make_dataset(work / "voice", count=8)
    data = {
        "name": "bench", "fp16": False, "seed": 0,
        "datasets": {"train": {"path": str(folder / "train.txt"), "batch_size": 1, "n_workers": workers,
                               "drop_last": True},
                     "val": {"path": str(folder / "validation.txt"), "batch_size": 1, "enabled": False}},
        "networks": {"gpt": {"kwargs": {}}},
        "path": {"pretrain_model_gpt": str(models / "autoregressive.pth"), "resume_state": None,
                 "run_dir": str(folder / "finetune"), "models_dir": str(models)},
        "steps": {"gpt_train": {"optimizer_params": {"lr": 1e-5, "weight_decay": 0.01, "beta1": 0.9,
                                                     "beta2": 0.96, "eps": 1e-8}, "clip_grad_eps": 4.0,
                                "losses": {"text_ce": {"weight": 0.01}, "mel_ce": {"weight": 1.0}}}},
        "train": {"niter": 8 * epochs, "mega_batch_factor": 1, "val_freq": 1000,
                  "default_lr_scheme": "MultiStepLR", "gen_lr_steps": [], "lr_gamma": 0.5},
        "logger": {"print_freq": 1, "save_checkpoint_freq": 8, "keep_states": 1},
        "ext": {"bitsandbytes": False, "sample": {"enabled": sample, "overrides": SAMPLE_OVERRIDES}},
    }
    path = folder / "train.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def proportional_bytes(pid: int) -> int:
    """Pss of smaps_rollup: pages shared with the parent (forked workers) counted once overall."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def peak_hwm(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def phase_of(metrics: Path) -> str:
    try:
        lines = metrics.read_text().strip().splitlines()
    except OSError:
        return "setup"
    kind = json.loads(lines[-1]).get("type") if lines else "setup"
    return {"sample_start": "sample", "checkpoint": "sample", "train": "train"}.get(kind, kind)


def run_trainer(config: Path, stop_during: str | None) -> dict:
    run_dir = config.parent / "finetune"
    shutil.rmtree(run_dir, ignore_errors=True)
    log = open(config.parent / "bench_train.log", "w")  # noqa: SIM115
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "tortoise.training", "--config", str(config),
                             "--device", "cpu"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    peaks: dict[str, int] = {}
    trainer_peaks: dict[str, int] = {}
    hwm = total_peak = pss_peak = 0
    min_available = 1 << 62
    stop_sent = None
    started = time.monotonic()
    while proc.poll() is None:
        rss = resident_bytes(proc.pid)
        workers = children(proc.pid)
        total = rss + sum(resident_bytes(c) for c in workers)
        pss = proportional_bytes(proc.pid) + sum(proportional_bytes(c) for c in workers)
        pss_peak = max(pss_peak, pss)
        hwm = max(hwm, peak_hwm(proc.pid))
        phase = phase_of(run_dir / "metrics.jsonl")
        peaks[phase] = max(peaks.get(phase, 0), pss)
        trainer_peaks[phase] = max(trainer_peaks.get(phase, 0), rss)
        total_peak = max(total_peak, total)
        from tortoise.training.memory import host_available

        min_available = min(min_available, host_available())
        if stop_during and stop_sent is None and _stop_point(stop_during, config.parent / "bench_train.log",
                                                              phase):
            proc.send_signal(signal.SIGTERM)
            stop_sent = time.monotonic()
        time.sleep(0.5)
    log.close()
    result = {"exit_code": proc.returncode, "seconds": round(time.monotonic() - started, 1),
              "trainer_vmhwm_gb": round(hwm / GB, 2),
              "trainer_plus_workers_rss_sum_peak_gb": round(total_peak / GB, 2),
              "trainer_plus_workers_pss_peak_gb": round(pss_peak / GB, 2),
              "pss_peak_by_phase_gb": {k: round(v / GB, 2) for k, v in peaks.items()},
              "trainer_rss_peak_by_phase_gb": {k: round(v / GB, 2) for k, v in trainer_peaks.items()},
              "min_host_available_gb": round(min_available / GB, 2)}
    if stop_sent is not None:
        result["exit_after_stop_s"] = round(time.monotonic() - stop_sent, 1)
    models = run_dir / "models"
    result["checkpoints"] = sorted(p.name for p in models.glob("*")) if models.is_dir() else []
    return result


def _stop_point(what: str, log: Path, phase: str) -> bool:
    if what == "sample":
        return phase == "sample"
    text = log.read_text(errors="replace") if log.is_file() else ""
    return text.count("Saving models and training states.") >= 2  # the second save: one is complete


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--only", choices=("unload", "train"), default=None)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--stop-during", choices=("sample", "save"), default=None)
    args = parser.parse_args()
    models = args.work / "models"
    make_models(models)
    if args.only in (None, "unload"):
        unload = measure_unload(models)
        print("app process RSS (GB):", {k: round(v / GB, 2) for k, v in unload.items()}, flush=True)
    if args.only in (None, "train"):
        config = write_config(args.work, models, args.epochs, args.workers, sample=True)
        estimate = estimate_run_memory({}, batch_size=1, longest_codes=50, longest_text=40,
                                       workers=args.workers, sample=True, models_dir=models)
        print("estimate before start:", estimate.describe(), flush=True)
        print("trainer:", json.dumps(run_trainer(config, args.stop_during), indent=1), flush=True)


if __name__ == "__main__":
    main()
