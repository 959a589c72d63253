"""A fresh clone of HEAD, with nothing beside it, collects the whole suite and passes the golden tests: every
fixture the tests read is inside the repository."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Golden and reference-data tests: tokenizer.json, mel_norms.pth, golden/*.pt, manifests/ and derived/.
GOLDEN_TESTS = [
    "tests/tortoise/test_tokenizer.py",
    "tests/tortoise/test_text.py",
    "tests/tortoise/test_mel.py",
    "tests/tortoise/models",
]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    """`git clone` of this repository's HEAD into an empty folder of its own, with no folder beside it."""
    target = tmp_path_factory.mktemp("fresh") / "x"
    subprocess.run(["git", "clone", "-q", str(REPO), str(target)], check=True, timeout=300)
    assert not (target.parent / "shared").exists()
    return target


def run_pytest(clone: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TORTOISE_REFERENCE"}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )


def test_a_fresh_clone_collects_every_test(clone):
    result = run_pytest(clone, "--collect-only")
    tail = result.stdout.strip().splitlines()[-1]
    assert result.returncode == 0 and "error" not in tail, result.stdout[-3000:] + result.stderr[-3000:]
    assert "tests collected" in tail


def test_a_fresh_clone_passes_the_golden_tests(clone):
    result = run_pytest(clone, *GOLDEN_TESTS)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert " passed" in result.stdout and "failed" not in result.stdout.splitlines()[-1]


def test_nothing_refers_to_a_folder_beside_the_checkout():
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    needle = "/".join(("..", "shared"))  # spelled in parts so that this file does not match itself
    offenders = []
    for name in tracked:
        path = REPO / name
        if path.suffix not in {".py", ".sh", ".bat", ".md", ".ini", ".toml", ".txt", ".ipynb", ".yaml", ""}:
            continue
        if path.is_file() and needle in path.read_text(encoding="utf-8", errors="replace"):
            offenders.append(name)
    assert offenders == []
