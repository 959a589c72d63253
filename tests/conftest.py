"""Shared test fixtures: where the reference material lives and how golden files are read."""

import os
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
# The reference data (golden fixtures, manifests, derived tables, tokenizer.json, mel_norms.pth) ship with the
# tests; TORTOISE_REFERENCE may point at another copy.
REFERENCE_DIR = Path(os.environ.get("TORTOISE_REFERENCE", REPO_ROOT / "tests" / "data" / "reference"))
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


class TinyModels:
    """Every model at the tiny golden sizes, with the golden weights (random voices use fresh RLGs)."""

    def __init__(self):
        from tortoise.models import build, load

        def from_golden(name, file):
            g = load_golden(file)
            return load(name, g["state_dict"], **g["config"])

        self.autoregressive = from_golden("autoregressive", "autoregressive.pt")
        self.diffusion = from_golden("diffusion_decoder", "diffusion.pt")
        self.clvp = from_golden("clvp2", "clvp.pt")
        self.cvvp = from_golden("cvvp", "cvvp.pt")
        self.vocoder = from_golden("vocoder", "vocoder.pt")
        self.hifidecoder = from_golden("hifidecoder", "hifigan.pt")
        torch.manual_seed(0)
        self.rlg_auto = build("rlg_auto", channels=self.autoregressive.model_dim)
        self.rlg_diffuser = build("rlg_diffuser", channels=2 * self.diffusion.model_channels)
        self.mel_norms = torch.load(REFERENCE_DIR / "mel_norms.pth", weights_only=True)


@pytest.fixture(scope="session")
def tiny_models() -> TinyModels:
    return TinyModels()


def speech_like(seconds: float, sample_rate: int = 22050, seed: int = 0) -> torch.Tensor:
    """A (1, S) voiced-sounding test signal: harmonics of a gliding pitch with a syllable envelope."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * sample_rate)) / sample_rate
    f0 = 120 + 30 * torch.sin(2 * torch.pi * 0.7 * t)
    phase = 2 * torch.pi * torch.cumsum(f0, 0) / sample_rate
    wave = sum(torch.sin(h * phase) / h for h in range(1, 8))
    envelope = 0.5 * (1 + torch.sin(2 * torch.pi * 3.0 * t)) ** 2
    wave = wave * envelope + 0.01 * torch.randn(t.shape, generator=g)
    return (0.8 * wave / wave.abs().max()).reshape(1, -1).float()


@pytest.fixture
def require_ffmpeg():
    """ffmpeg is a test dependency (./test.sh apt-installs it): fail, never skip, when it is missing."""
    import shutil

    assert shutil.which("ffmpeg"), "ffmpeg is missing: ./test.sh installs it (Debian package ffmpeg)"
