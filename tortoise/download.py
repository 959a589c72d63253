"""Model files: the registry of every weight and data file, verified download into models/tortoise/,
resume of partial files, detection of truncated checkpoints, and the offline-mode error."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from tortoise.errors import ModelDownloadError

log = logging.getLogger(__name__)

HF_REPO = "Manmay/tortoise-tts"
HF_FALLBACK_REPO = "jbetker/tortoise-tts-v2"
HF_FALLBACK_SUBFOLDER = ".models"
GITHUB_RAW_BASE = "https://raw.githubusercontent.com/neonbjb/tortoise-tts/main/tortoise/data"

# pickle protocol 2 header + torch's legacy magic number: how a pre-zip torch.save file starts
_LEGACY_TORCH_HEADER = bytes.fromhex("80028a0a6cfc9c46f9206aa85019")
_CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class ModelFile:
    """One file the TTS needs. `source` is 'hf' (Hugging Face repos) or 'github' (official raw files)."""

    filename: str
    source: str
    purpose: str
    sha256: str | None = None


MODEL_FILES: dict[str, ModelFile] = {
    f.filename: f
    for f in (
        ModelFile("autoregressive.pth", "hf", "autoregressive model (speech codes)"),
        ModelFile("diffusion_decoder.pth", "hf", "diffusion decoder (codes to mel)"),
        ModelFile("clvp2.pth", "hf", "CLVP candidate ranking"),
        ModelFile("cvvp.pth", "hf", "CVVP candidate ranking (only with a CVVP weight above 0)"),
        ModelFile("vocoder.pth", "hf", "UnivNet vocoder (mel to waveform)"),
        ModelFile("rlg_auto.pth", "hf", "random voice, AR latent"),
        ModelFile("rlg_diffuser.pth", "hf", "random voice, diffusion latent"),
        ModelFile("hifidecoder.pth", "hf", "HiFi-GAN decoder (fast mode: GPT latents to waveform)"),
        ModelFile(
            "dvae.pth",
            "hf",
            "discrete VAE (training only)",
            sha256="a990825371506c16bcf0e8167bf24ccf82f65bb6a1dbcbfcf058d76f9b197e35",
        ),
        ModelFile(
            "tokenizer.json",
            "github",
            "text tokenizer",
            sha256="d1fa6e9b4741bb75b284331b833347c166ba8b0518e187f7370f123149ed87bb",
        ),
        ModelFile(
            "mel_norms.pth",
            "github",
            "AR mel normalisation",
            sha256="1f69422a8a8f344c4fca2f0c6b8d41d2151d6615b7321e48e6bb15ae949b119c",
        ),
    )
}

INFERENCE_FILES = (
    "autoregressive.pth",
    "diffusion_decoder.pth",
    "clvp2.pth",
    "vocoder.pth",
    "tokenizer.json",
    "mel_norms.pth",
)


def env_offline() -> bool:
    """True when the standard Hugging Face offline variables ask for no network."""
    return any(
        os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
        for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_CHUNK_BYTES):
            digest.update(block)
    return digest.hexdigest()


def checkpoint_problem(path: Path, spec: ModelFile | None = None) -> str | None:
    """Why the file at `path` must not be loaded, or None when it looks whole.

    Checks: empty file, sha256 when the registry knows it, and for torch files the zip central
    directory (a truncated download fails there: "failed finding central directory").
    """
    try:
        size = path.stat().st_size
    except OSError as e:
        return f"cannot be read ({e})"
    if size == 0:
        return "is empty"
    if spec is not None and spec.sha256 is not None:
        actual = sha256_of(path)
        return (
            None if actual == spec.sha256 else f"has sha256 {actual[:12]}..., expected {spec.sha256[:12]}..."
        )
    if path.suffix in (".pth", ".pt"):
        with open(path, "rb") as f:
            head = f.read(len(_LEGACY_TORCH_HEADER))
        if head == _LEGACY_TORCH_HEADER:
            return None  # pre-zip torch format: no directory to check; torch.load reports damage
        try:
            with zipfile.ZipFile(path) as z:
                z.namelist()
        except (zipfile.BadZipFile, OSError) as e:
            return f"is truncated or corrupt ({e})"
    return None


class ModelStore:
    """Find, verify and fetch the model files.

    Args:
        models_dir: where files live (models/tortoise/ in the app).
        offline: never touch the network; missing files raise a ModelDownloadError listing them.
            Defaults to the HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE variables.
        hf_endpoint: Hugging Face endpoint (tests point it at 127.0.0.1); default: HF_ENDPOINT or the hub.
        asset_base_url: where tokenizer.json and mel_norms.pth come from (official GitHub raw files).
        overrides: filename -> path of a user file to use instead (e.g. a fine-tuned autoregressive.pth).
        tqdm_class: progress bar class (a UI can pass one that reports to the browser).
    """

    def __init__(
        self,
        models_dir: str | os.PathLike,
        offline: bool | None = None,
        hf_endpoint: str | None = None,
        asset_base_url: str = GITHUB_RAW_BASE,
        overrides: dict[str, str | os.PathLike] | None = None,
        tqdm_class: type[tqdm] | None = None,
    ):
        self.models_dir = Path(models_dir)
        self.offline = env_offline() if offline is None else offline
        self.hf_endpoint = hf_endpoint
        self.asset_base_url = asset_base_url.rstrip("/")
        self.overrides = {k: Path(v) for k, v in (overrides or {}).items()}
        self.tqdm_class = tqdm_class or tqdm

    def path_for(self, filename: str) -> Path:
        return self.overrides.get(filename, self.models_dir / filename)

    def get(self, filename: str) -> Path:
        """The verified local path of one file, downloading it first if needed."""
        return self.ensure([filename])[filename]

    def ensure(self, filenames: Iterable[str]) -> dict[str, Path]:
        """Make every named file present and whole; returns filename -> path.

        A damaged file is named in the log, deleted and fetched again; it is never returned.

        Raises:
            ModelDownloadError: unknown name, a bad user-supplied file, offline with files missing
                (all of them listed, with where to put them), or a download that failed.
        """
        names = list(dict.fromkeys(filenames))
        unknown = [n for n in names if n not in MODEL_FILES and n not in self.overrides]
        if unknown:
            raise ModelDownloadError(
                f"Unknown model file(s): {', '.join(unknown)}. Known: {', '.join(MODEL_FILES)}."
            )
        missing: list[str] = []
        for name in names:
            path = self.path_for(name)
            if name in self.overrides:
                problem = checkpoint_problem(path) if path.exists() else "does not exist"
                if problem:
                    raise ModelDownloadError(f"The selected file for {name}, {path}, {problem}.")
                continue
            if not path.exists():
                missing.append(name)
                continue
            problem = checkpoint_problem(path, MODEL_FILES[name])
            if problem:
                log.warning("Model file %s %s; deleting it and downloading it again.", path, problem)
                path.unlink()
                missing.append(name)
        if missing and self.offline:
            raise ModelDownloadError(self._offline_message(missing))
        for name in missing:
            self._download(MODEL_FILES[name])
        return {name: self.path_for(name) for name in names}

    def _offline_message(self, missing: list[str]) -> str:
        lines = [f"Offline mode is on and {len(missing)} model file(s) are missing from {self.models_dir}:"]
        for name in missing:
            spec = MODEL_FILES[name]
            lines.append(f"  - {name} ({spec.purpose}): {self._public_url(spec)}")
        lines.append(
            f"Download them on a machine with internet and copy them into {self.models_dir}, "
            "or turn off 'Only Load Models Locally' (and unset HF_HUB_OFFLINE)."
        )
        return "\n".join(lines)

    def _public_url(self, spec: ModelFile) -> str:
        if spec.source == "github":
            return f"{self.asset_base_url}/{spec.filename}"
        return f"https://huggingface.co/{HF_REPO}/resolve/main/{spec.filename}"

    def _download(self, spec: ModelFile) -> None:
        self.models_dir.mkdir(parents=True, exist_ok=True)
        log.info("Downloading %s (%s) into %s", spec.filename, spec.purpose, self.models_dir)
        if spec.source == "github":
            self._download_url(f"{self.asset_base_url}/{spec.filename}", self.path_for(spec.filename))
        else:
            self._download_hf(spec)
        problem = checkpoint_problem(self.path_for(spec.filename), spec)
        if problem:
            self.path_for(spec.filename).unlink(missing_ok=True)
            raise ModelDownloadError(
                f"Downloaded {spec.filename} {problem}; it was deleted. Try again later."
            )

    def _download_hf(self, spec: ModelFile) -> None:
        from huggingface_hub import hf_hub_download  # imported lazily: slow import, unused when files exist

        errors = []
        for repo, subfolder in ((HF_REPO, None), (HF_FALLBACK_REPO, HF_FALLBACK_SUBFOLDER)):
            try:
                # local_dir keeps partial downloads under .cache/ in it and resumes them on the next try
                got = hf_hub_download(
                    repo,
                    spec.filename,
                    subfolder=subfolder,
                    local_dir=self.models_dir,
                    endpoint=self.hf_endpoint,
                    tqdm_class=self.tqdm_class,
                )
            except Exception as e:  # network and hub errors: try the next source, report all at the end
                log.warning("Could not download %s from %s: %s", spec.filename, repo, e)
                errors.append(f"{repo}: {type(e).__name__}: {e}")
                continue
            got_path = Path(got)
            target = self.path_for(spec.filename)
            if got_path.resolve() != target.resolve():
                os.replace(got_path, target)
                if subfolder:
                    shutil.rmtree(self.models_dir / subfolder, ignore_errors=True)
            return
        raise ModelDownloadError(
            f"Could not download {spec.filename} ({spec.purpose}).\n"
            + "\n".join(errors)
            + f"\nPut the file into {self.models_dir} by hand, or check your connection."
        )

    def _download_url(self, url: str, target: Path) -> None:
        """Plain HTTP(S) download with resume: bytes land in <target>.part, renamed when complete."""
        part = target.with_name(target.name + ".part")
        done = part.stat().st_size if part.exists() else 0
        request = urllib.request.Request(url, headers={"Range": f"bytes={done}-"} if done else {})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                if done and response.status != 206:  # server ignored the range: start over
                    done = 0
                total = _content_total(response.headers, done)
                mode = "ab" if done else "wb"
                with (
                    open(part, mode) as f,
                    self.tqdm_class(
                        total=total, initial=done, unit="B", unit_scale=True, desc=target.name
                    ) as bar,
                ):
                    while block := response.read(_CHUNK_BYTES):
                        f.write(block)
                        bar.update(len(block))
        except urllib.error.HTTPError as e:
            if e.code == 416 and done:  # range not satisfiable: the part file is already complete
                pass
            else:
                raise ModelDownloadError(
                    f"Could not download {url}: HTTP {e.code}. Put {target.name} into "
                    f"{target.parent} by hand, or try again later."
                ) from e
        except (urllib.error.URLError, OSError) as e:
            raise ModelDownloadError(
                f"Could not download {url}: {e}. The partial file is kept and the next " "try resumes it."
            ) from e
        os.replace(part, target)


def _content_total(headers: Any, already: int) -> int | None:
    content_range = headers.get("Content-Range")
    if content_range and "/" in content_range:
        total = content_range.rsplit("/", 1)[1]
        return int(total) if total.isdigit() else None
    length = headers.get("Content-Length")
    return int(length) + already if length and length.isdigit() else None


def default_models_dir() -> Path:
    """TORTOISE_MODELS_DIR, else ./models/tortoise relative to the working directory."""
    return Path(os.environ.get("TORTOISE_MODELS_DIR", Path("models") / "tortoise"))
