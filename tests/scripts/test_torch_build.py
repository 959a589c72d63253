"""scripts/torch_build.py against the torch that runs these tests (the setup tests use a fake)."""

import importlib.util

import pytest
import torch

from tests.scripts.fakes import REPO_ROOT

_spec = importlib.util.spec_from_file_location(
    "torch_build", REPO_ROOT / "scripts" / "torch_build.py"
)
torch_build = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(torch_build)


def test_is_installed_compares_exactly_or_without_local_tag():
    version = torch.__version__
    public = version.split("+")[0]
    assert torch_build.is_installed(f"torch=={version}")
    assert not torch_build.is_installed(f"torch=={public}+cu999")
    assert torch_build.is_installed(f"torch=={public}+cu999", ignore_local=True)
    assert not torch_build.is_installed("torch==0.0.1", ignore_local=True)
    assert not torch_build.is_installed("surely-not-installed-package==1.0")
    with pytest.raises(ValueError):
        torch_build.is_installed("torch>=2")


def test_write_constraint_pins_the_installed_build(tmp_path):
    path = tmp_path / "venv" / "torch-constraint.txt"
    assert torch_build.main(["write-constraint", str(path)]) == 0
    lines = [line for line in path.read_text().splitlines() if not line.startswith("#")]
    assert lines == [f"torch=={torch.__version__}"]


def test_verify_cpu_is_quiet(capsys):
    assert torch_build.main(["verify", "--backend", "cpu"]) == 0
    out = capsys.readouterr().out
    assert f"torch version:  {torch.__version__}" in out and "WARNING" not in out


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a usable GPU")
@pytest.mark.parametrize("backend", ["cuda", "rocm", "directml"])
def test_verify_warns_loudly_when_the_gpu_does_not_work(capsys, backend):
    assert torch_build.main(["verify", "--backend", backend]) == 0  # the CPU still works
    out = capsys.readouterr().out
    assert torch_build.BANNER in out
    assert f"WARNING: a {backend.upper()} setup was intended, but only the CPU works." in out
