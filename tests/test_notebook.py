"""notebook.ipynb, executed cell by cell with nbclient on a kernel that runs this test's interpreter.

Each run inserts a cell after the Settings ("parameters") cell, as papermill would, that points the
notebook at a local repository, a folder under tmp_path and, for the real launch, at this venv
(SETUP = "skip", VENV_DIR = sys.prefix), so nothing is downloaded or installed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

REPO_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO_ROOT / "notebook.ipynb"
KERNEL_NAME = "avc-test-venv"
GIT_CONFIG = ("user.name=test", "user.email=test@example.invalid", "commit.gpgsign=false")



@pytest.fixture
def kernel(tmp_path, monkeypatch):
    """A kernel spec for sys.executable in a private JUPYTER_PATH; runtime files stay in tmp_path."""
    jupyter = tmp_path / "jupyter"
    spec = jupyter / "kernels" / KERNEL_NAME
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "test venv", "language": "python"})
    )
    monkeypatch.setenv("JUPYTER_PATH", str(jupyter))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "jupyter-runtime"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    for name in ("VENV_DIR", "TORCH_CUDA"):  # the notebook sets them from its Settings
        monkeypatch.delenv(name, raising=False)
    return KERNEL_NAME


def execute(
    kernel_name: str, cwd: Path, params: dict, extra_code: str = ""
) -> nbformat.NotebookNode:
    """Run the whole notebook with `params` set right after its Settings cell; returns it with outputs."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    at = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    lines = [f"{name} = {value!r}" for name, value in params.items()]
    nb.cells.insert(at + 1, nbformat.v4.new_code_cell("\n".join([*lines, extra_code])))
    cwd.mkdir(parents=True, exist_ok=True)
    client = NotebookClient(
        nb, kernel_name=kernel_name, timeout=600, resources={"metadata": {"path": str(cwd)}}
    )
    client.execute()
    return nb


def output_of(nb: nbformat.NotebookNode, marker: str) -> str:
    """The streamed text of the (first) code cell whose source contains `marker`."""
    cell = next(c for c in nb.cells if c.cell_type == "code" and marker in c.source)
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


def git(*args: str, cwd: Path) -> str:
    config = [arg for setting in GIT_CONFIG for arg in ("-c", setting)]
    result = subprocess.run(
        ["git", *config, *args], cwd=cwd, check=True, capture_output=True, text=True
    )
    return result.stdout


def commit_all(repo: Path, message: str) -> None:
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", message, cwd=repo)


def snapshot_of_working_tree(target: Path) -> Path:
    """A one-commit repository holding this checkout's files as they are now (committed or not,
    never ignored ones), so the notebook clones what is being tested rather than the last commit."""
    listed = git("ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=REPO_ROOT)
    for rel in filter(None, listed.split("\0")):
        source = REPO_ROOT / rel
        if source.is_file():  # a tracked file deleted in the working tree is left out
            (target / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / rel)
    git("init", "-q", cwd=target)
    commit_all(target, "snapshot")
    return target


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_notebook_clones_this_checkout_and_serves_the_ui(kernel, tmp_path):
    source = snapshot_of_working_tree(tmp_path / "source")
    port = free_port()
    nb = execute(
        kernel,
        tmp_path / "work",
        {
            "REPO_URL": str(source),
            "REPO_DIR": str(tmp_path / "colab" / "ai-voice-cloning"),
            "SETUP": "skip",
            "VENV_DIR": sys.prefix,  # this venv: no reinstall of torch
            "USE_DRIVE": False,
            "SHARE": False,  # a public link would need the network
            "EXTRA_ARGS": ["--listen", f"127.0.0.1:{port}"],
            "SMOKE_SECONDS": 3,
        },
    )
    clone = tmp_path / "colab" / "ai-voice-cloning"
    assert (clone / ".git").is_dir() and (clone / "app.py").is_file()
    assert "SETUP = 'skip'" in output_of(nb, "backend = SETUP")
    launch = output_of(nb, "run_app([")
    assert re.search(rf"Running on local URL:\s+http://127\.0\.0\.1:{port}", launch), launch
    assert "Smoke test passed" in launch, launch
    assert "The app exited normally." in launch
    assert list(tmp_path.glob("colab/ai-voice-cloning-export-*.zip"))


# A stand-in repository: its scripts only log how they were called, so the notebook's own logic
# (setup choice, Drive links, pull, arguments) is checked in seconds.
STUB_SETUP = (
    '#!/usr/bin/env bash\necho "{name} VENV_DIR=${{VENV_DIR:-}} TORCH_CUDA=${{TORCH_CUDA:-}}"'
    ' >> "$NB_LOG"\n'
)
STUB_START = (
    '#!/usr/bin/env bash\necho "start.sh $* VENV_DIR=${VENV_DIR:-}" >> "$NB_LOG"\n'
    'echo "Running on local URL:  http://127.0.0.1:7860"\nexit "${STUB_START_EXIT:-0}"\n'
)
FAKE_COLAB = """
import sys, types
_colab = types.ModuleType("google.colab")
_colab.drive = types.SimpleNamespace(
    mount=lambda path, **kw: open(__import__("os").environ["NB_LOG"], "a").write(f"mount {path}\\n"))
_google = types.ModuleType("google")
_google.colab = _colab
sys.modules.update({"google": _google, "google.colab": _colab})
"""


@pytest.fixture
def stub(tmp_path, kernel, monkeypatch):
    """An upstream repository of stub scripts, fake system tools on PATH, and a log of what ran."""
    upstream = tmp_path / "upstream"
    for name in ("setup-cpu.sh", "setup-cuda.sh", "setup-rocm.sh", "start.sh"):
        path = upstream / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(STUB_START if name == "start.sh" else STUB_SETUP.format(name=name))
        path.chmod(0o755)
    for folder in ("voices", "results", "training"):
        (upstream / folder).mkdir()
        (upstream / folder / "README.md").write_text(f"{folder} README\n")
    (upstream / "version.txt").write_text("1\n")
    git("init", "-q", cwd=upstream)
    commit_all(upstream, "first")

    tools = tmp_path / "tools"
    tools.mkdir()
    for tool in ("nvidia-smi", "ffmpeg", "apt-get"):  # apt-get must never really run from a test
        (tools / tool).write_text(f'#!/bin/sh\necho "{tool} $*" >> "$NB_LOG"\nexit 1\n')
        (tools / tool).chmod(0o755)
    log = tmp_path / "log.txt"
    log.write_text("")
    monkeypatch.setenv("PATH", f"{tools}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("NB_LOG", str(log))

    class Stub:
        def __init__(self):
            self.upstream, self.log, self.repo_dir = upstream, log, tmp_path / "paperspace" / "avc"

        def gpu(self, works: bool) -> None:
            answer = "echo '| Driver Version: 580.00  CUDA Version: 13.0 |'" if works else "exit 1"
            (tools / "nvidia-smi").write_text(f"#!/bin/sh\n{answer}\n")

        def run(self, extra_code: str = "", **params) -> tuple[nbformat.NotebookNode, list[str]]:
            self.log.write_text("")
            defaults = {"REPO_URL": str(upstream), "REPO_DIR": str(self.repo_dir)}
            nb = execute(kernel, tmp_path / "work", {**defaults, **params}, extra_code)
            return nb, self.log.read_text().splitlines()

    return Stub()


def test_setup_follows_the_gpu_drive_links_keep_every_file_and_a_rerun_pulls(stub, tmp_path):
    drive = tmp_path / "drive" / "MyDrive" / "avc"
    (drive / "voices" / "alice").mkdir(parents=True)
    (drive / "voices" / "alice" / "1.wav").write_bytes(b"RIFF on drive")
    (drive / "results").mkdir()
    (drive / "results" / "README.md").write_text("an older README\n")

    stub.gpu(True)
    nb, log = stub.run(
        FAKE_COLAB,
        USE_DRIVE=True,
        DRIVE_FOLDER=str(drive),
        VENV_DIR=str(tmp_path / "env"),
        TORCH_CUDA="cu128",
        EXTRA_ARGS=["--low-vram"],
        SMOKE_SECONDS=2,
    )
    env = tmp_path / "env"
    assert log == [
        f"setup-cuda.sh VENV_DIR={env} TORCH_CUDA=cu128",
        "mount /content/drive",
        f"start.sh --share --low-vram --smoke-test-seconds 2 VENV_DIR={env}",
    ]
    repo = stub.repo_dir
    for name in ("voices", "results", "training"):
        assert (repo / name).is_symlink() and (repo / name).resolve() == (drive / name).resolve()
    assert (drive / "voices" / "alice" / "1.wav").read_bytes() == b"RIFF on drive"
    assert (drive / "voices" / "README.md").read_text() == "voices README\n"  # moved, not lost
    assert (drive / "results" / "README.md").read_text() == "an older README\n"  # Drive's copy wins
    [aside] = repo.glob("results.local-*")
    assert (aside / "README.md").read_text() == "results README\n"  # and the local one is kept
    assert git("status", "--porcelain", "--untracked-files=no", cwd=repo) == ""
    [archive] = tmp_path.glob("paperspace/ai-voice-cloning-export-*.zip")
    assert "training/README.md" in zipfile.ZipFile(archive).namelist()  # read through the link
    assert "its driver supports CUDA 13.0." in output_of(nb, "backend = SETUP")

    (stub.upstream / "version.txt").write_text("2\n")
    commit_all(stub.upstream, "second")
    stub.gpu(False)
    nb, log = stub.run(FAKE_COLAB, USE_DRIVE=True, DRIVE_FOLDER=str(drive), SHARE=False)
    assert "No NVIDIA GPU found: CPU setup" in output_of(nb, "backend = SETUP")
    assert (repo / "version.txt").read_text() == "2\n"
    assert log == [
        "setup-cpu.sh VENV_DIR= TORCH_CUDA=",
        "mount /content/drive",
        "start.sh  VENV_DIR=",
    ]
    assert "already links to" in output_of(nb, "link_to_drive(name")
    assert not list(repo.glob("voices.local-*"))


def test_drive_is_left_alone_outside_colab_and_a_failing_app_fails_the_cell(stub, monkeypatch):
    monkeypatch.setenv("STUB_START_EXIT", "3")
    with pytest.raises(CellExecutionError, match="exit code 3"):
        stub.run(USE_DRIVE=True, SETUP="skip")
    assert stub.log.read_text().splitlines() == ["start.sh --share VENV_DIR="]
    assert not (stub.repo_dir / "voices").is_symlink()


def test_the_placeholder_url_is_refused_with_advice(kernel, tmp_path):
    with pytest.raises(CellExecutionError, match="Set REPO_URL"):
        execute(kernel, tmp_path, {"REPO_DIR": str(tmp_path / "avc"), "SETUP": "skip"})
