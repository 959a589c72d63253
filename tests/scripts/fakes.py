"""Stand-ins that let the setup, start and update scripts run offline in a temporary checkout.

FakePython plays the interpreter that creates venv/ and the venv's python. `-m pip install`
goes to a fake pip that records the call and "installs" a package by writing its dist-info (plus a
tiny fake `torch` module) into a private site folder. Everything else, scripts/torch_build.py
included, runs on the real interpreter with `-S`, so it sees only that folder, not the test venv.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

FAKE_PIP = r"""
import os, re, shutil, sys
from pathlib import Path

site = Path(os.environ["FAKE_SITE"])
args = sys.argv[1:]
if not args or args[0] != "install":
    sys.exit(0)
fail = os.environ.get("FAKE_PIP_FAIL", "")
specs, requirement_files, constraints, i = [], [], [], 1
while i < len(args):
    a = args[i]
    if a in ("-r", "-c", "--index-url", "--extra-index-url"):
        (requirement_files if a == "-r" else constraints if a == "-c" else []).append(args[i + 1])
        i += 2
        continue
    if not a.startswith("-"):
        specs.append(a)
    i += 1
for spec in specs:
    name, _, version = spec.partition("==")
    if fail and name == fail:
        print(f"ERROR: No matching distribution found for {spec}", file=sys.stderr)
        sys.exit(1)
    folder = name.replace("-", "_")
    for old in site.glob(f"{folder}-*.dist-info"):
        shutil.rmtree(old)
    info = site / f"{folder}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    if name == "torch":
        local = version.partition("+")[2]
        cuda = repr("13.0") if local.startswith("cu") else None
        hip = repr("7.1") if local.startswith("rocm") else None
        pkg = site / "torch"
        pkg.mkdir(exist_ok=True)
        (pkg / "__init__.py").write_text(
            f"__version__ = {version!r}\n"
            "import types\n"
            f"version = types.SimpleNamespace(cuda={cuda}, hip={hip})\n"
            "cuda = types.SimpleNamespace(is_available=lambda: False, device_count=lambda: 0)\n"
            "class _T:\n"
            "    def sum(self): return self\n"
            "    def item(self): return 2.0\n"
            "def ones(*a, **k): return _T()\n"
        )
if requirement_files:
    if not constraints:
        print("fake pip: requirements installed without a torch constraint", file=sys.stderr)
        sys.exit(3)
    for c in constraints:
        text = Path(c).read_text()
        if "torch==" not in text:
            print(f"fake pip: {c} pins no torch", file=sys.stderr)
            sys.exit(3)
"""

BASE_PYTHON = """#!/usr/bin/env bash
echo "base-python $*" >> "$FAKE_LOG"
if [ "$1" = -m ] && [ "$2" = venv ]; then
    mkdir -p "$3/bin"
    cp "$FAKE_DIR/venv-python" "$3/bin/python"
    exit 0
fi
exec "$REAL_PYTHON" "$@"
"""

VENV_PYTHON = """#!/usr/bin/env bash
echo "venv-python $*" >> "$FAKE_LOG"
if [ "$1" = -m ] && [ "$2" = pip ]; then
    shift 2
    exec "$REAL_PYTHON" -S "$FAKE_DIR/fake_pip.py" "$@"
fi
PYTHONPATH="$FAKE_SITE" exec "$REAL_PYTHON" -S "$@"
"""


def _write_executable(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o755)
    return path


class FakePython:
    """A fake interpreter + pip living in ``directory``; see the module docstring."""

    def __init__(self, directory: Path):
        self.dir = directory
        self.site = directory / "site"
        self.log = directory / "calls.log"
        self.site.mkdir(parents=True)
        self.log.touch()
        (directory / "fake_pip.py").write_text(FAKE_PIP)
        _write_executable(directory / "venv-python", VENV_PYTHON)
        self.base = _write_executable(directory / "python3.11", BASE_PYTHON)
        self.env = {
            **os.environ,
            "PYTHON": str(self.base),
            "FAKE_DIR": str(directory),
            "FAKE_SITE": str(self.site),
            "FAKE_LOG": str(self.log),
            "REAL_PYTHON": sys.executable,
            "PYTHONPATH": "",
        }
        for name in (
            "TORCH_VERSION",
            "TORCH_CUDA",
            "TORCH_ROCM",
            "TORCH_INDEX_URL",
            "SETUP_BACKEND",
        ):
            self.env.pop(name, None)
        # never reach a network index from a test; the fake pip ignores it anyway
        self.env["TORCH_CPU_INDEX_URL"] = "http://cpu-index.invalid/whl/cpu"

    def calls(self) -> list[list[str]]:
        """Each logged call as its argument list; the first item says who was called."""
        return [shlex.split(line) for line in self.log.read_text().splitlines()]

    def pip_installs(self) -> list[list[str]]:
        """The arguments after `pip install` of each install, in order."""
        return [c[4:] for c in self.calls() if c[:4] == ["venv-python", "-m", "pip", "install"]]

    def clear_log(self) -> None:
        self.log.write_text("")


def make_checkout(root: Path, *paths: str) -> Path:
    """Copy the named repository files (relative paths) into ``root``, keeping modes."""
    for rel in paths:
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / rel, target)
    return root


def run(
    cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = 300
) -> subprocess.CompletedProcess:
    """Run ``cmd`` without a terminal or stdin and capture its text output."""
    return subprocess.run(
        cmd,
        check=False,
        cwd=cwd,
        env=env,
        text=True,
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=timeout,
    )
