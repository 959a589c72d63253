"""VENV_DIR: start.sh and the setup scripts use a virtual environment outside the checkout when it is set
(the notebook and the start smoke test rely on it to reuse an existing environment)."""

import sys

import pytest

from tests.scripts.fakes import FakePython, make_checkout, run

pytestmark = pytest.mark.skipif(
    sys.platform != "linux", reason="the .sh scripts are tested on Linux"
)

STUB_PYTHON = '#!/usr/bin/env bash\necho "python $0 $*" >> "$STUB_LOG"\n'
STUB_SETUP = (
    '#!/usr/bin/env bash\necho "ran setup-cpu.sh VENV_DIR=$VENV_DIR" >> "$STUB_LOG"\n'
    'mkdir -p "$VENV_DIR/bin"\ncp "$STUB_PYTHON" "$VENV_DIR/bin/python"\n'
)


def test_start_sets_up_and_runs_the_venv_dir_environment(tmp_path):
    repo = make_checkout(tmp_path / "repo", "start.sh")
    (repo / "app.py").write_text("")
    (repo / "setup-cpu.sh").write_text(STUB_SETUP)
    stub_python = tmp_path / "stub-python"
    stub_python.write_text(STUB_PYTHON)
    stub_python.chmod(0o755)
    env_dir, log = tmp_path / "elsewhere" / "env", tmp_path / "log.txt"
    env = {
        "PATH": "/usr/bin:/bin",
        "SETUP_BACKEND": "cpu",
        "VENV_DIR": str(env_dir),
        "STUB_LOG": str(log),
        "STUB_PYTHON": str(stub_python),
    }
    for _ in range(2):  # the second start finds the environment and goes straight to the app
        result = run(["bash", "./start.sh", "--low-vram"], repo, env)
        assert result.returncode == 0, result.stderr
    assert log.read_text().splitlines() == [
        f"ran setup-cpu.sh VENV_DIR={env_dir}",
        f"python {env_dir}/bin/python app.py --low-vram",
        f"python {env_dir}/bin/python app.py --low-vram",
    ]
    assert not (repo / "venv").exists()


def test_setup_creates_and_fills_the_venv_dir_environment(tmp_path):
    repo = make_checkout(
        tmp_path / "repo",
        "setup-cpu.sh",
        "scripts/setup-common.sh",
        "scripts/torch_build.py",
        "requirements.txt",
        "requirements-nodeps.txt",
    )
    fake = FakePython(tmp_path / "fake")
    env_dir = tmp_path / "elsewhere" / "env"
    result = run(["bash", "./setup-cpu.sh"], repo, {**fake.env, "VENV_DIR": str(env_dir)})
    assert result.returncode == 0, result.stderr
    assert ["base-python", "-m", "venv", str(env_dir)] in fake.calls()
    assert "torch==2.13.0+cpu" in (env_dir / "torch-constraint.txt").read_text()
    assert (env_dir / "setup-backend.txt").read_text().strip() == "cpu"
    assert not (repo / "venv").exists()
