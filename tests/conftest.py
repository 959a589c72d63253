"""Shared test fixtures: where the reference material lives and how golden files are read."""

import os
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
REFERENCE_DIR = Path(os.environ.get("TORTOISE_REFERENCE", REPO_ROOT.parent / "shared" / "reference"))
GOLDEN_DIR = REFERENCE_DIR / "golden"

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    assert REFERENCE_DIR.is_dir(), f"reference material not found at {REFERENCE_DIR} (set TORTOISE_REFERENCE)"
    return REFERENCE_DIR


@pytest.fixture(scope="session")
def tokenizer_path(reference_dir) -> Path:
    return reference_dir / "tokenizer.json"


@pytest.fixture(scope="session")
def mel_norms_path(reference_dir) -> Path:
    return reference_dir / "mel_norms.pth"


def load_golden(name: str) -> dict:
    """Load golden/<name> as the flat dict the fixture README describes."""
    return torch.load(GOLDEN_DIR / name, map_location="cpu", weights_only=True)


@pytest.fixture(scope="session")
def golden():
    cache: dict[str, dict] = {}

    def get(name: str) -> dict:
        if name not in cache:
            cache[name] = load_golden(name)
        return cache[name]

    return get
