"""Test doubles for the Training tab: a scripted transcriber (no Whisper model), tiny models installed as
an app's models/tortoise/ files, the trainer arguments that make it build them, and a fake trainer."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import torch
import yaml

from src.paths import AppPaths
from src.training.asr import ASR_SAMPLE_RATE, Transcriber
from tests.conftest import REFERENCE_DIR, load_golden

SENTENCES = (
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It is easy to tell the depth of a well.",
    "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.",
)
FAKE_TRAINER = Path(__file__).with_name("fake_trainer.py")


class ScriptedTranscriber(Transcriber):
    """One segment per file covering all of it; the texts cycle through `texts` (or SENTENCES)."""

    backend = "scripted"

    def __init__(self, texts: tuple[str, ...] = SENTENCES):
        super().__init__("scripted")
        self.texts = texts
        self.calls = 0

    def _load(self):
        return object()

    def _transcribe(self, audio, language):
        text = self.texts[self.calls % len(self.texts)]
        self.calls += 1
        end = len(audio) / ASR_SAMPLE_RATE
        segment = {"id": 0, "start": 0.0, "end": end, "text": " " + text}
        return {"text": segment["text"], "segments": [segment], "language": language or "en"}


def scripted_transcriber_factory(texts: tuple[str, ...] = SENTENCES):
    """An AppContext `transcriber_factory`: ignores backend and model, returns a ScriptedTranscriber."""
    return lambda backend, model: ScriptedTranscriber(texts)


def install_tiny_models(paths: AppPaths) -> Path:
    """Put the tiny golden AR and DVAE (plus tokenizer.json, mel_norms.pth) into models/tortoise/ as
    the official names, and write the trainer overrides that give their sizes.

    Returns:
        The overrides YAML for `python -m tortoise.training --overrides`.
    """
    folder = paths.tortoise_models_dir
    folder.mkdir(parents=True, exist_ok=True)
    ar, dvae = load_golden("autoregressive.pt"), load_golden("dvae.pt")
    torch.save(ar["state_dict"], folder / "autoregressive.pth")
    torch.save(dvae["state_dict"], folder / "dvae.pth")
    for name in ("tokenizer.json", "mel_norms.pth"):
        shutil.copy(REFERENCE_DIR / name, folder / name)
    overrides = {
        "networks": {
            "gpt": {"kwargs": {**ar["config"], "checkpointing": False}},
            "dvae": {"kwargs": dict(dvae["constructor_args"])},
        },
        "datasets": {"train": {"n_workers": 0}},
    }
    path = paths.root / "tiny_overrides.yaml"
    path.write_text(yaml.safe_dump(overrides), encoding="utf-8")
    return path


def tiny_trainer_args(overrides: Path) -> tuple[str, ...]:
    """Trainer flags for tests: tiny model sizes, CPU, no checkpoint samples (they need full models)."""
    return ("--overrides", str(overrides), "--device", "cpu", "--no-sample")


TRAINER_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def fake_trainer_launcher() -> tuple[str, ...]:
    """A launcher running tests/fake_trainer.py instead of the real trainer."""
    return (sys.executable, str(FAKE_TRAINER))
