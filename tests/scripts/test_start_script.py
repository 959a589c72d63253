"""start.sh: picks a setup script on a fresh clone, then runs app.py with the venv's python.

The setup scripts, nvidia-smi, rocminfo and the venv's python are stubs that log what ran.
"""

import os
import sys

import pytest

from tests.scripts.fakes import make_checkout, run

pytestmark = pytest.mark.skipif(
    sys.platform != "linux", reason="the .sh scripts are tested on Linux"
)

STUB_VENV_PYTHON = """#!/usr/bin/env bash
echo "app-python $*" >> "$STUB_LOG"
echo "PATH=$PATH" >> "$STUB_LOG"
"""

STUB_SETUP = """#!/usr/bin/env bash
echo "ran {name}" >> "$STUB_LOG"
mkdir -p venv/bin
cp "$STUB_DIR/venv-python" venv/bin/python
"""


def _executable(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)


@pytest.fixture
def start(tmp_path):
    """Return run_start(gpu_tools, *args, **env) -> (result, log lines, checkout)."""
    repo = make_checkout(tmp_path / "repo", "start.sh")
    (repo / "app.py").write_text("")
    stubs = tmp_path / "stubs"
    _executable(stubs / "venv-python", STUB_VENV_PYTHON)
    for backend in ("cpu", "cuda", "rocm"):
        _executable(repo / f"setup-{backend}.sh", STUB_SETUP.format(name=f"setup-{backend}.sh"))
    log = tmp_path / "log.txt"

    def run_start(working_tools=(), *args, **env):
        tools = tmp_path / "tools"
        for tool in ("nvidia-smi", "rocminfo"):  # shadow any real ones on this machine
            _executable(tools / tool, f"#!/bin/sh\nexit {0 if tool in working_tools else 1}\n")
        inherited = {k: v for k, v in os.environ.items() if k != "SETUP_BACKEND"}
        full_env = {
            **inherited,
            "PATH": f"{tools}{os.pathsep}{os.environ['PATH']}",
            "STUB_LOG": str(log),
            "STUB_DIR": str(stubs),
            **env,
        }
        log.write_text("")
        result = run(["bash", "./start.sh", *args], repo, full_env)
        return result, log.read_text().splitlines(), repo

    return run_start


@pytest.mark.parametrize(
    ("working_tools", "expected"),
    [
        (("nvidia-smi", "rocminfo"), "setup-cuda.sh"),
        (("rocminfo",), "setup-rocm.sh"),
        ((), "setup-cpu.sh"),
    ],
)
def test_fresh_clone_picks_setup_by_gpu_tools(start, working_tools, expected):
    result, log, _ = start(working_tools, "--listen", "0.0.0.0:7860")
    assert result.returncode == 0, result.stderr
    assert log[0] == f"ran {expected}"
    assert log[1] == "app-python app.py --listen 0.0.0.0:7860"


def test_setup_backend_overrides_detection(start):
    result, log, _ = start(("nvidia-smi",), SETUP_BACKEND="cpu")
    assert result.returncode == 0, result.stderr
    assert log[0] == "ran setup-cpu.sh"


def test_bad_setup_backend_is_refused(start):
    result, log, _ = start((), SETUP_BACKEND="metal")
    assert result.returncode != 0 and "SETUP_BACKEND must be" in result.stderr
    assert log == []


def test_existing_venv_starts_directly_with_bin_first_on_path(start):
    start(())
    result, log, repo = start(("nvidia-smi",), "--low-vram")
    assert result.returncode == 0, result.stderr
    assert log[0] == "app-python app.py --low-vram"
    assert log[1].removeprefix("PATH=").split(os.pathsep)[0] == str(repo / "bin")


def test_missing_app_py_is_explained(start):
    _, _, repo = start(())
    (repo / "app.py").unlink()
    result, log, _ = start(())
    assert result.returncode != 0 and "app.py is missing" in result.stderr
    assert log == []
