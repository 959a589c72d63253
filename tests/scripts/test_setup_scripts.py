"""setup-*.sh: torch first, requirements under a torch constraint, a check, and safe re-runs.

The scripts run in a temporary checkout against FakePython (tests/scripts/fakes.py): no network,
no real torch download.
"""

import re
import sys

import pytest

from tests.scripts.fakes import FakePython, make_checkout, run

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the .sh setup is tested on Linux")

SETUP_FILES = (
    "setup-cpu.sh",
    "setup-cuda.sh",
    "setup-rocm.sh",
    "scripts/setup-common.sh",
    "scripts/torch_build.py",
    "requirements.txt",
    "requirements-nodeps.txt",
)


@pytest.fixture
def checkout(tmp_path):
    return make_checkout(tmp_path / "repo", *SETUP_FILES)


@pytest.fixture
def fake(tmp_path):
    return FakePython(tmp_path / "fake")


def setup(checkout, fake, backend, *args, **env):
    result = run(["bash", f"./setup-{backend}.sh", *args], checkout, {**fake.env, **env})
    return result


def test_first_run_creates_venv_then_torch_then_requirements(checkout, fake):
    result = setup(checkout, fake, "cpu")
    assert result.returncode == 0, result.stderr
    calls = fake.calls()
    assert calls[0][:2] == ["base-python", "-c"]  # the Python version check
    assert calls[1] == ["base-python", "-m", "venv", "venv"]
    installs = fake.pip_installs()
    assert installs == [
        ["torch==2.13.0+cpu", "--extra-index-url", "http://cpu-index.invalid/whl/cpu"],
        ["-r", "requirements.txt", "-c", "venv/torch-constraint.txt"],
        ["--no-deps", "-r", "requirements-nodeps.txt", "-c", "venv/torch-constraint.txt"],
    ]
    assert "torch==2.13.0+cpu" in (checkout / "venv/torch-constraint.txt").read_text()
    assert (checkout / "venv/setup-backend.txt").read_text().strip() == "cpu"
    assert "torch version:  2.13.0+cpu" in result.stdout
    assert "CPU (as intended)" in result.stdout


def test_second_run_reuses_venv_and_skips_torch(checkout, fake):
    assert setup(checkout, fake, "cpu").returncode == 0
    fake.clear_log()
    result = setup(checkout, fake, "cpu")
    assert result.returncode == 0, result.stderr
    assert "Reusing the existing venv/" in result.stdout
    assert "already installed; skipping" in result.stdout
    assert not any(c[0] == "base-python" for c in fake.calls())
    assert fake.pip_installs() == [
        ["-r", "requirements.txt", "-c", "venv/torch-constraint.txt"],
        ["--no-deps", "-r", "requirements-nodeps.txt", "-c", "venv/torch-constraint.txt"],
    ]


def test_cpu_build_without_extra_index(checkout, fake):
    result = setup(checkout, fake, "cpu", TORCH_CPU_INDEX_URL="")
    assert result.returncode == 0, result.stderr
    assert fake.pip_installs()[0] == ["torch==2.13.0"]


def test_cuda_replaces_a_cpu_build_and_warns_loudly_without_gpu(checkout, fake):
    assert setup(checkout, fake, "cpu").returncode == 0
    fake.clear_log()
    result = setup(checkout, fake, "cuda", TORCH_CUDA="cu128")
    assert result.returncode == 0, result.stderr
    assert fake.pip_installs()[0] == [
        "torch==2.13.0+cu128",
        "--index-url",
        "https://download.pytorch.org/whl/cu128",
    ]
    assert "torch==2.13.0+cu128" in (checkout / "venv/torch-constraint.txt").read_text()
    assert "!!!!!!!!" in result.stdout
    assert "WARNING: a CUDA setup was intended, but only the CPU works." in result.stdout
    assert "sees no GPU" in result.stdout


def test_rocm_uses_the_rocm_index_for_its_tag(checkout, fake):
    result = setup(checkout, fake, "rocm")
    assert result.returncode == 0, result.stderr
    spec, flag, url = fake.pip_installs()[0]
    tag = re.fullmatch(r"torch==2\.13\.0\+(rocm[\d.]+)", spec).group(1)
    assert (flag, url) == ("--index-url", f"https://download.pytorch.org/whl/{tag}")
    assert "WARNING: a ROCM setup was intended" in result.stdout


def test_torch_index_url_override(checkout, fake):
    result = setup(checkout, fake, "cuda", TORCH_INDEX_URL="https://mirror.invalid/cu130")
    assert result.returncode == 0, result.stderr
    assert fake.pip_installs()[0][1:] == ["--index-url", "https://mirror.invalid/cu130"]


def test_torch_download_failure_explains_the_tag(checkout, fake):
    result = setup(checkout, fake, "cuda", FAKE_PIP_FAIL="torch")
    assert result.returncode != 0
    assert "TORCH_CUDA=cu128 ./setup-cuda.sh" in result.stderr
    assert not (checkout / "venv/torch-constraint.txt").exists()


def test_check_mode_only_verifies(checkout, fake):
    result = setup(checkout, fake, "cpu", "--check")
    assert result.returncode != 0 and "no venv/ yet" in result.stderr
    assert setup(checkout, fake, "cpu").returncode == 0
    fake.clear_log()
    result = setup(checkout, fake, "cpu", "--check")
    assert result.returncode == 0, result.stderr
    assert fake.pip_installs() == []
    assert "torch version:" in result.stdout


def test_too_old_python_is_refused(checkout, fake, tmp_path):
    old = tmp_path / "python3.9"
    old.write_text("#!/usr/bin/env bash\nexit 1\n")
    old.chmod(0o755)
    result = setup(checkout, fake, "cpu", PYTHON=str(old))
    assert result.returncode != 0
    assert "older than Python 3.11" in result.stderr
    assert not (checkout / "venv").exists()


def test_unknown_argument_is_refused(checkout, fake):
    result = setup(checkout, fake, "cpu", "--bogus")
    assert result.returncode != 0 and "unknown argument" in result.stderr
