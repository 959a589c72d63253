"""Atomic file writes: every file the app writes appears whole or not at all.

A write goes to a hidden temporary file beside its target (same folder, so the same file system) and is
renamed over the target; readers see the old file or the new one, never half of one, and a failed or
interrupted write leaves the old file untouched.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def replacing(path: str | os.PathLike[str], *, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside `path`; when the block ends without an error, rename it over `path`.

    Args:
        path: the file to write. Its parent folders are created.
        suffix: the temporary file's suffix, for writers that pick a format from it (e.g. ".tmp.wav").

    Yields:
        The temporary path to write. It is removed if the block raises.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.stem}.{uuid.uuid4().hex[:12]}{suffix}")
    try:
        yield temporary
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write UTF-8 text (newlines kept as `\\n`) to `path` atomically."""
    with replacing(path) as temporary:
        temporary.write_text(text, encoding="utf-8", newline="\n")


def write_json_atomic(path: str | os.PathLike[str], data: Any, *, indent: str | None = "\t") -> None:
    """Write `data` as JSON (UTF-8, a final newline) to `path` atomically."""
    write_text_atomic(path, json.dumps(data, indent=indent, ensure_ascii=False) + "\n")
