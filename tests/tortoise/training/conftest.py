"""A 4-clip voice dataset, the tiny golden AR model and DVAE as files, and a train.yaml for them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from tests.conftest import REFERENCE_DIR, load_golden, speech_like
from tortoise.audio import VOICE_SAMPLE_RATE, save_wav

SENTENCES = (
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It is easy to tell the depth of a well.",
    "These days a chicken leg is a rare dish.",
)
DURATIONS_S = (1.3, 1.6, 1.9, 2.1)


def tiny_ar_config() -> dict:
    return dict(load_golden("autoregressive.pt")["config"])


def make_dataset(folder: Path, count: int = 4, validation: bool = True) -> Path:
    """training/<voice>/ with audio/*.wav, train.txt (and validation.txt); returns the folder."""
    (folder / "audio").mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(count):
        name = f"audio/clip_{i:05d}.wav"
        save_wav(folder / name, speech_like(DURATIONS_S[i % 4], VOICE_SAMPLE_RATE, seed=i), VOICE_SAMPLE_RATE)
        lines.append(f"{name}|{SENTENCES[i % 4]}")
    (folder / "train.txt").write_text("\n".join(lines), encoding="utf-8")
    if validation:
        wav = speech_like(1.4, VOICE_SAMPLE_RATE, seed=9)
        save_wav(folder / "audio/val_00000.wav", wav, VOICE_SAMPLE_RATE)
        (folder / "validation.txt").write_text("audio/val_00000.wav|A short one.", encoding="utf-8")
    return folder


@pytest.fixture(scope="session")
def tiny_files(tmp_path_factory) -> dict[str, Path]:
    """dvae.pth (tiny golden DVAE), source_gpt.pth (tiny golden AR), tokenizer.json, mel_norms.pth."""
    folder = tmp_path_factory.mktemp("tiny_models")
    dvae = load_golden("dvae.pt")
    torch.save(dvae["state_dict"], folder / "dvae.pth")
    torch.save(load_golden("autoregressive.pt")["state_dict"], folder / "source_gpt.pth")
    return {"dvae": folder / "dvae.pth", "source": folder / "source_gpt.pth",
            "tokenizer": REFERENCE_DIR / "tokenizer.json", "mel_norms": REFERENCE_DIR / "mel_norms.pth",
            "dvae_kwargs": dvae["constructor_args"]}


def write_yaml(folder: Path, files: dict, *, iterations: int = 30, batch_size: int = 2, accumulation: int = 1,
               lr: float = 1e-3, milestones: tuple[int, ...] = (), save_freq: int = 10, keep_states: int = 0,
               val_freq: int = 10, **extra) -> Path:
    """A train.yaml in the shape src/training/finetune.py build_yaml writes, pointed at the tiny models."""
    data = {
        "name": folder.name, "fp16": False, "seed": 0,
        "datasets": {
            "train": {"path": str(folder / "train.txt"), "batch_size": batch_size, "n_workers": 0,
                      "drop_last": True},
            "val": {"path": str(folder / "validation.txt"), "batch_size": 1,
                    "enabled": (folder / "validation.txt").is_file()},
        },
        "networks": {"gpt": {"kwargs": {**tiny_ar_config(), "tortoise_compat": False}},
                     "dvae": {"kwargs": files["dvae_kwargs"]}},
        "path": {"pretrain_model_gpt": str(files["source"]), "resume_state": None,
                 "run_dir": str(folder / "finetune"), "dvae": str(files["dvae"]),
                 "tokenizer": str(files["tokenizer"]), "mel_norms": str(files["mel_norms"])},
        "steps": {"gpt_train": {"optimizer_params": {"lr": lr, "weight_decay": 0.01, "beta1": 0.9,
                                                     "beta2": 0.96, "eps": 1e-8},
                                "clip_grad_eps": 4.0,
                                "losses": {"text_ce": {"weight": 0.01}, "mel_ce": {"weight": 1.0}}}},
        "train": {"niter": iterations, "mega_batch_factor": accumulation, "val_freq": val_freq,
                  "default_lr_scheme": "MultiStepLR", "gen_lr_steps": list(milestones), "lr_gamma": 0.5},
        "logger": {"print_freq": 5, "save_checkpoint_freq": save_freq, "keep_states": keep_states},
        "ext": {"bitsandbytes": False, "sample": {"enabled": False}},
    }
    for key, value in extra.items():
        data[key] = value
    path = folder / "train.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture
def dataset(tmp_path) -> Path:
    return make_dataset(tmp_path / "voice")


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest on one thread; more only spin against each other on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
