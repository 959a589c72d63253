"""Where each downloaded model file came from and whether it was verified: the `<file>.source.json`
record beside it, the checksum the hub publishes for a file, and the comparison of the two."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger(__name__)

RECORD_SUFFIX = ".source.json"
_CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class PublishedChecksum:
    """What the source says a file must be. `sha256` is the LFS object id of a hub file (or a
    registry value); `git_sha1` the git blob id of a small non-LFS file; `size` in bytes."""

    sha256: str | None = None
    git_sha1: str | None = None
    size: int | None = None


@dataclass(frozen=True)
class SourceRecord:
    """The `<file>.source.json` written beside a downloaded file.

    Attributes:
        filename: the model file's name (e.g. "autoregressive.pth").
        url: where its bytes were fetched from.
        revision: the commit (hub) or branch (GitHub raw) the file came from.
        repo, path: hub repository and path in it ("" for GitHub assets).
        sha256, size: what the file was checked against (empty/None while unverified).
        verified: True once the content matched the published checksum.
        note: why it is not verified yet (the checksum lookup failed), else "".
    """

    filename: str
    url: str
    revision: str
    repo: str = ""
    path: str = ""
    sha256: str = ""
    size: int | None = None
    verified: bool = False
    note: str = ""


def record_path(path: Path) -> Path:
    return path.with_name(path.name + RECORD_SUFFIX)


def write_record(path: Path, record: SourceRecord) -> None:
    """Write the record beside `path` atomically (temp file in the same folder, then rename)."""
    target = record_path(path)
    fd, tmp = tempfile.mkstemp(prefix=target.name, suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(asdict(record), f, indent=2)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_record(path: Path) -> SourceRecord | None:
    """The record beside `path`, or None when there is none or it cannot be read (logged)."""
    target = record_path(path)
    if not target.exists():
        return None
    try:
        data = json.loads(target.read_text(encoding="utf-8"))
        return SourceRecord(**{k: v for k, v in data.items() if k in SourceRecord.__dataclass_fields__})
    except (OSError, ValueError, TypeError) as e:
        log.warning("Ignoring the unreadable download record %s: %s", target, e)
        return None


def remove_record(path: Path) -> None:
    record_path(path).unlink(missing_ok=True)


def file_digests(path: Path) -> tuple[str, str]:
    """(sha256, git blob sha1) of a file, read once."""
    sha256 = hashlib.sha256()
    git = hashlib.sha1(f"blob {path.stat().st_size}\0".encode(), usedforsecurity=False)
    with open(path, "rb") as f:
        while block := f.read(_CHUNK_BYTES):
            sha256.update(block)
            git.update(block)
    return sha256.hexdigest(), git.hexdigest()


def mismatch(path: Path, *expected: PublishedChecksum | None) -> tuple[str | None, str]:
    """Compare the file with every expectation given (None entries are skipped).

    Returns:
        (what differs or None when everything matches, the file's sha256).
    """
    size = path.stat().st_size
    checks = [e for e in expected if e is not None]
    for check in checks:
        if check.size is not None and size != check.size:
            return f"is {size} bytes, expected {check.size}", ""
    actual_sha256, actual_git = file_digests(path)
    for check in checks:
        if check.sha256 and actual_sha256 != check.sha256.lower():
            return f"has sha256 {actual_sha256[:12]}..., expected {check.sha256[:12]}...", actual_sha256
        if check.git_sha1 and actual_git != check.git_sha1.lower():
            return f"has git blob id {actual_git[:12]}..., expected {check.git_sha1[:12]}...", actual_sha256
    return None, actual_sha256
