"""Model files: the registry of every weight and data file, download into models/tortoise/ verified
against the checksum the source publishes, resume of partial files, detection of truncated
checkpoints, and the error listing every missing file when offline or unreachable."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tqdm import tqdm

from tortoise.errors import ModelDownloadError
from tortoise.provenance import (
    PublishedChecksum,
    SourceRecord,
    mismatch,
    read_record,
    remove_record,
    write_record,
)

log = logging.getLogger(__name__)

HF_REPO = "Manmay/tortoise-tts"
HF_FALLBACK_REPO = "jbetker/tortoise-tts-v2"
HF_FALLBACK_SUBFOLDER = ".models"
DEFAULT_HF_ENDPOINT = "https://huggingface.co"
HUB_TIMEOUT_S = 10.0  # one metadata request, no retries: an unreachable hub fails fast
GITHUB_RAW_BASE = "https://raw.githubusercontent.com/neonbjb/tortoise-tts/main/tortoise/data"

# pickle protocol 2 header + torch's legacy magic number: how a pre-zip torch.save file starts
_LEGACY_TORCH_HEADER = bytes.fromhex("80028a0a6cfc9c46f9206aa85019")
_CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class ModelFile:
    """One file the TTS needs. `source` is 'hf' (Hugging Face repos) or 'github' (official raw files);
    `sha256` and `size` (bytes) are checked when known."""

    filename: str
    source: str
    purpose: str
    sha256: str | None = None
    size: int | None = None


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
            size=4409,
        ),
        ModelFile(
            "mel_norms.pth",
            "github",
            "AR mel normalisation",
            sha256="1f69422a8a8f344c4fca2f0c6b8d41d2151d6615b7321e48e6bb15ae949b119c",
            size=1067,
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
# Everything a generation can need: the inference files, then those loaded on first use.
GENERATION_FILES = INFERENCE_FILES + ("cvvp.pth", "rlg_auto.pth", "rlg_diffuser.pth")


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

    Checks: empty file, size and sha256 when the registry knows them, and for torch files the zip central
    directory (a truncated download fails there: "failed finding central directory").
    """
    try:
        size = path.stat().st_size
    except OSError as e:
        return f"cannot be read ({e})"
    if size == 0:
        return "is empty"
    if spec is not None and spec.size is not None and size != spec.size:
        return f"is {size} bytes, expected {spec.size}"
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


class _Unreachable(ModelDownloadError):
    """No answer at all from a download server (no network, DNS failure, refused, timed out)."""


class _Refused(Exception):
    """The hub answered but will not give this file (404, 401, ...); the next source may have it."""


class ChecksumLookupFailed(Exception):
    """The hub's published checksum for a file could not be looked up."""


class ModelStore:
    """Find, verify and fetch the model files.

    Every downloaded file is checked against the checksum its source publishes (the hub's LFS sha256,
    looked up for the exact commit the bytes came from) and against the registry's size and sha256.
    The source, revision and result are recorded beside the file in `<file>.source.json`.

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
        endpoint = hf_endpoint or os.environ.get("HF_ENDPOINT") or DEFAULT_HF_ENDPOINT
        self.hf_endpoint = endpoint.rstrip("/")
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

        A damaged file is named in the log, deleted and fetched again; it is never returned. Files
        downloaded while the checksum lookup failed are verified now when online.

        Raises:
            ModelDownloadError: unknown name, a bad user-supplied file, offline or unreachable network
                with files missing (all of them listed, with where to put them), a download that
                failed, or one that does not match its published checksum (deleted).
        """
        names = list(dict.fromkeys(filenames))
        unknown = [n for n in names if n not in MODEL_FILES and n not in self.overrides]
        if unknown:
            raise ModelDownloadError(
                f"Unknown model file(s): {', '.join(unknown)}. Known: {', '.join(MODEL_FILES)}."
            )
        missing, pending = self._check_local(names)
        if missing and self.offline:
            raise ModelDownloadError(self._missing_message(missing, names))
        if pending and not self.offline:
            missing += self._verify_pending(pending)
        for i, name in enumerate(missing):
            try:
                self._download(MODEL_FILES[name])
            except _Unreachable as e:  # fail fast: every other file would fail the same way
                raise ModelDownloadError(self._missing_message(missing[i:], names, str(e))) from e
        return {name: self.path_for(name) for name in names}

    def _check_local(self, names: list[str]) -> tuple[list[str], list[str]]:
        """(names missing or damaged (deleted), names present but not verified yet)."""
        missing: list[str] = []
        pending: list[str] = []
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
                remove_record(path)
                missing.append(name)
                continue
            record = read_record(path)
            if record is not None and not record.verified and record.repo:
                pending.append(name)
        return missing, pending

    def _missing_message(self, missing: list[str], requested: list[str], unreachable: str = "") -> str:
        """Every missing file (also those needed later in a generation), where to put each, what to do."""
        later = []
        if set(requested) & set(GENERATION_FILES):
            later = [
                n for n in GENERATION_FILES
                if n not in missing and n not in requested and not self.path_for(n).exists()
            ]  # fmt: skip
        count = len(missing) + len(later)
        where = f"{count} model file(s) are missing from {self.models_dir}"
        if unreachable:
            lines = [f"The download server cannot be reached ({unreachable}), and {where}:"]
        else:
            lines = [f"Offline mode is on ('Only Load Models Locally') and {where}:"]
        lines += [self._where_line(name) for name in missing]
        if later:
            lines.append("Needed later in a generation (CVVP ranking, the random voice), missing too:")
            lines += [self._where_line(name) for name in later]
        if unreachable:
            lines.append(
                f"Check the connection and try again, or download them on another machine and copy "
                f"them into {self.models_dir}. Turn on 'Only Load Models Locally' in Settings to never "
                "try the network."
            )
        else:
            lines.append(
                f"Download them on a machine with internet and copy them into {self.models_dir}, "
                "or turn off 'Only Load Models Locally' in Settings (and unset HF_HUB_OFFLINE)."
            )
        return "\n".join(lines)

    def _where_line(self, name: str) -> str:
        spec = MODEL_FILES[name]
        return f"  - {name} ({spec.purpose}): put it at {self.path_for(name)}; from {self._public_url(spec)}"

    def _public_url(self, spec: ModelFile) -> str:
        if spec.source == "github":
            return f"{self.asset_base_url}/{spec.filename}"
        return f"https://huggingface.co/{HF_REPO}/resolve/main/{spec.filename}"

    def _download(self, spec: ModelFile) -> None:
        self.models_dir.mkdir(parents=True, exist_ok=True)
        log.info("Downloading %s (%s) into %s", spec.filename, spec.purpose, self.models_dir)
        target = self.path_for(spec.filename)
        if spec.source == "github":
            url = f"{self.asset_base_url}/{spec.filename}"
            self._download_url(url, target)
            problem, sha256 = _registry_mismatch(target, spec)
            if problem:
                _reject(target, spec, problem, "the registry records")
            verified = spec.sha256 is not None
            record = SourceRecord(
                spec.filename, url, _github_revision(url), sha256=sha256, size=target.stat().st_size,
                verified=verified, note="" if verified else "No checksum is known for this file.",
            )  # fmt: skip
            write_record(target, record)
        else:
            self._download_hf(spec, target)

    def _download_hf(self, spec: ModelFile, target: Path) -> None:
        """Fetch from the first repo that has the file, pinned to the commit its `main` points at."""
        errors = []
        for repo, subfolder in ((HF_REPO, None), (HF_FALLBACK_REPO, HF_FALLBACK_SUBFOLDER)):
            path = f"{subfolder}/{spec.filename}" if subfolder else spec.filename
            try:
                commit, size = self._hub_head(repo, path)
            except _Refused as e:
                log.warning("Could not download %s from %s: %s", spec.filename, repo, e)
                errors.append(f"{repo}: {e}")
                continue
            url = f"{self.hf_endpoint}/{repo}/resolve/{commit}/{path}"
            self._download_url(url, target)
            record = SourceRecord(spec.filename, url, commit, repo, path)
            self._verify_download(spec, target, record, size)
            return
        raise ModelDownloadError(
            f"Could not download {spec.filename} ({spec.purpose}).\n"
            + "\n".join(errors)
            + f"\nPut the file into {self.models_dir} by hand, or check your connection."
        )

    def _hub_head(self, repo: str, path: str) -> tuple[str, int | None]:
        """(commit that `main` points at, size in bytes) of a hub file, from one HEAD request.

        Raises:
            _Unreachable: no answer at all. _Refused: an HTTP error (no such repo or file, ...).
        """
        from huggingface_hub import get_hf_file_metadata, hf_hub_url  # slow import: only when needed
        from huggingface_hub.errors import HfHubHTTPError

        url = hf_hub_url(repo, path, endpoint=self.hf_endpoint)
        try:
            meta = get_hf_file_metadata(url, timeout=HUB_TIMEOUT_S, retry_on_errors=False)
        except HfHubHTTPError as e:
            raise _Refused(f"{type(e).__name__}: {str(e).splitlines()[0]}") from e
        except Exception as e:  # network boundary: DNS, refused, TLS, timeout all mean "unreachable"
            raise _Unreachable(f"{self.hf_endpoint}: {type(e).__name__}: {e}") from e
        if not meta.commit_hash:
            raise _Refused("the hub's answer names no commit")
        return meta.commit_hash, meta.size

    def published_checksum(self, repo: str, path: str, revision: str) -> PublishedChecksum:
        """The checksum the hub publishes for `path` at `revision` (LFS sha256, or the git blob id of
        a file stored without LFS), from its paths-info API.

        Raises:
            ChecksumLookupFailed: no answer, an HTTP error, or the file is not listed.
        """
        url = f"{self.hf_endpoint}/api/models/{repo}/paths-info/{urllib.parse.quote(revision, safe='')}"
        body = urllib.parse.urlencode({"paths": path, "expand": "false"}).encode()
        request = urllib.request.Request(url, data=body, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=HUB_TIMEOUT_S) as response:  # noqa: S310
                entries = json.load(response)
        except (OSError, ValueError) as e:  # URLError/HTTPError are OSErrors; ValueError: bad JSON
            raise ChecksumLookupFailed(f"{url}: {e}") from e
        if not isinstance(entries, list):
            raise ChecksumLookupFailed(f"{url}: unexpected answer")
        entry = next((e for e in entries if isinstance(e, dict) and e.get("path") == path), None)
        if entry is None or entry.get("type") != "file":
            raise ChecksumLookupFailed(f"{url}: the hub does not list {path}")
        lfs = entry.get("lfs")
        if isinstance(lfs, dict) and lfs.get("oid"):
            return PublishedChecksum(sha256=str(lfs["oid"]), size=lfs.get("size"))
        return PublishedChecksum(git_sha1=entry.get("oid"), size=entry.get("size"))

    def _verify_download(self, spec: ModelFile, target: Path, record: SourceRecord, size: int | None):
        """Check a fresh hub download; keep it unverified (with a note) if the lookup fails."""
        try:
            published = self.published_checksum(record.repo, record.path, record.revision)
        except ChecksumLookupFailed as e:
            problem, sha256 = _registry_mismatch(target, spec, PublishedChecksum(size=size))
            if problem:
                _reject(target, spec, problem, f"{record.repo} announces")
            note = (
                f"Not verified yet: the hub's checksum could not be looked up ({e}). The file is kept "
                "and verified at the next start with a connection."
            )
            log.warning("%s: %s", target, note)
            write_record(target, replace(record, sha256=sha256, size=target.stat().st_size, note=note))
            return
        problem, sha256 = _registry_mismatch(target, spec, published)
        if problem:
            _reject(target, spec, problem, f"{record.repo} publishes")
        write_record(target, replace(record, sha256=sha256, size=target.stat().st_size, verified=True))
        log.info("Verified %s against %s@%s", target.name, record.repo, record.revision[:12])

    def _verify_pending(self, pending: list[str]) -> list[str]:
        """Verify files kept unverified earlier; returns those deleted for a mismatch (to fetch again)."""
        again = []
        for name in pending:
            path = self.path_for(name)
            record = read_record(path)
            if record is None:
                continue
            try:
                published = self.published_checksum(record.repo, record.path, record.revision)
            except ChecksumLookupFailed as e:
                log.warning("%s is still not verified (checksum lookup failed: %s); kept for now.", path, e)
                break  # the same hub answers for every file: do not wait for each one
            problem, sha256 = _registry_mismatch(path, MODEL_FILES[name], published)
            if problem:
                log.warning(
                    "Model file %s %s: it does not match the checksum %s publishes for it; deleting it "
                    "and downloading it again.", path, problem, record.repo,
                )  # fmt: skip
                path.unlink()
                remove_record(path)
                again.append(name)
                continue
            write_record(path, replace(record, sha256=sha256, verified=True, note=""))
            log.info("Verified %s against %s@%s", name, record.repo, record.revision[:12])
        return again

    def _download_url(self, url: str, target: Path) -> None:
        """Plain HTTP(S) download with resume: bytes land in <target>.part, renamed when complete.

        Raises:
            _Unreachable: the server gives no answer. ModelDownloadError: an HTTP error, or the
                connection dropped (the partial file is kept and the next try resumes it).
        """
        part = target.with_name(target.name + ".part")
        done = part.stat().st_size if part.exists() else 0
        request = urllib.request.Request(url, headers={"Range": f"bytes={done}-"} if done else {})
        try:
            response = urllib.request.urlopen(request, timeout=60)  # noqa: S310 - http(s) URLs only
        except urllib.error.HTTPError as e:
            if e.code == 416 and done:  # range not satisfiable: the part file is already complete
                os.replace(part, target)
                return
            raise ModelDownloadError(
                f"Could not download {url}: HTTP {e.code}. Put {target.name} into "
                f"{target.parent} by hand, or try again later."
            ) from e
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise _Unreachable(f"Could not download {url}: {reason}") from e
        try:
            with response:
                if done and response.status != 206:  # server ignored the range: start over
                    done = 0
                total = _content_total(response.headers, done)
                with (
                    open(part, "ab" if done else "wb") as f,
                    self.tqdm_class(
                        total=total, initial=done, unit="B", unit_scale=True, desc=target.name
                    ) as bar,
                ):
                    while block := response.read(_CHUNK_BYTES):
                        f.write(block)
                        bar.update(len(block))
        except OSError as e:
            raise ModelDownloadError(
                f"Could not download {url}: {e}. The partial file is kept and the next try resumes it."
            ) from e
        os.replace(part, target)


def _registry_mismatch(
    path: Path, spec: ModelFile, published: PublishedChecksum | None = None
) -> tuple[str | None, str]:
    """(what differs from the registry's and the source's checksum, or None; the file's sha256)."""
    known = PublishedChecksum(sha256=spec.sha256, size=spec.size) if spec.sha256 or spec.size else None
    return mismatch(path, known, published)


def _reject(path: Path, spec: ModelFile, problem: str, source: str) -> None:
    """Delete a download that failed its check and raise the error that says so."""
    path.unlink(missing_ok=True)
    remove_record(path)
    raise ModelDownloadError(
        f"Downloaded {spec.filename} {problem}, which is not what {source} for it; it was deleted. "
        f"Try again later; if this keeps happening, download it by hand into {path.parent}."
    )


def _github_revision(url: str) -> str:
    """The branch or commit in a raw.githubusercontent.com URL (owner/repo/<revision>/path)."""
    parts = urllib.parse.urlsplit(url).path.strip("/").split("/")
    return parts[2] if len(parts) > 3 else ""


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
