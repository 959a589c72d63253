"""Device resolution with fake backends: every kind resolves, bad strings fail with the valid list."""

import subprocess
import sys

import pytest
import torch
from torch import nn

from tortoise.device import Backends, DevicePlan, auto_sample_batch_size, list_devices, resolve_device
from tortoise.errors import InvalidInputError


class FakeDirectML:
    def device_count(self):
        return 1

    def device_name(self, i):
        return "Radeon RX (fake)"

    def device(self, i):
        return f"privateuseone:{i}"


def fake(cuda=0, rocm=False, mps=False, dml=False, free_gib=0.0):
    return Backends(
        cuda_count=lambda: cuda,
        cuda_name=lambda i: f"GPU {i}",
        is_rocm=lambda: rocm,
        mps_available=lambda: mps,
        directml_module=lambda: FakeDirectML() if dml else None,
        cuda_free_bytes=lambda i: int(free_gib * 2**30),
    )


def test_cpu_only_machine_lists_cpu_and_auto_picks_it():
    b = fake()
    assert list_devices(b) == [("cpu", "CPU")]
    plan = resolve_device("auto", backends=b)
    assert plan.kind == "cpu" and plan.device == torch.device("cpu")


def test_auto_prefers_cuda_then_directml_then_mps():
    assert resolve_device("auto", backends=fake(cuda=2, dml=True, mps=True)).device == torch.device("cuda", 0)
    assert resolve_device("auto", backends=fake(dml=True, mps=True)).kind == "directml"
    assert resolve_device("auto", backends=fake(mps=True)).kind == "mps"


def test_rocm_gpus_are_listed_as_cuda_devices():
    names = list_devices(fake(cuda=1, rocm=True))
    assert names[0] == ("cuda:0", "ROCm: GPU 0")


def test_explicit_strings_resolve():
    b = fake(cuda=2, dml=True, mps=True)
    assert resolve_device("cuda:1", backends=b).device == torch.device("cuda", 1)
    assert resolve_device("CUDA", backends=b).device == torch.device("cuda", 0)
    assert resolve_device("directml", backends=b).device == "privateuseone:0"
    assert resolve_device("mps", backends=b).kind == "mps"


@pytest.mark.parametrize("spec", ["cuda:3", "directml", "mps", "tpu", "cuda:x"])
def test_unusable_device_names_the_valid_ones(spec):
    with pytest.raises(InvalidInputError) as e:
        resolve_device(spec, backends=fake(cuda=1))
    assert "Valid devices: cuda:0, cpu" in str(e.value)


def test_directml_keeps_latents_and_vocoder_on_cpu():
    plan = resolve_device("directml", backends=fake(dml=True))
    assert plan.latents_device == torch.device("cpu")
    assert plan.vocoder_device == torch.device("cpu")
    cuda_plan = DevicePlan(torch.device("cuda", 0), "cuda")
    assert cuda_plan.vocoder_device == torch.device("cuda", 0)


def test_auto_batch_size_follows_free_memory():
    cuda = DevicePlan(torch.device("cuda", 0), "cuda")
    assert auto_sample_batch_size(cuda, fake(cuda=1, free_gib=20)) == 16
    assert auto_sample_batch_size(cuda, fake(cuda=1, free_gib=12)) == 8
    assert auto_sample_batch_size(cuda, fake(cuda=1, free_gib=8)) == 4
    assert auto_sample_batch_size(cuda, fake(cuda=1, free_gib=2)) == 1
    assert auto_sample_batch_size(resolve_device("cpu", backends=fake()), fake()) == 4


def test_low_vram_returns_model_to_cpu_after_stage():
    moves = []

    class Spy(nn.Linear):
        def to(self, *args, **kwargs):
            moves.append(str(args[0]))
            return self

    plan = DevicePlan(torch.device("meta"), "cpu", low_vram=True)
    with plan.on_device(Spy(2, 2)):
        pass
    assert moves == ["meta", "cpu"]


def test_half_on_cpu_is_bf16_autocast():
    plan = DevicePlan(torch.device("cpu"), "cpu", half=True)
    with plan.autocast():
        y = nn.Linear(4, 4)(torch.randn(2, 4))
    assert y.dtype == torch.bfloat16
    with DevicePlan(torch.device("cpu"), "cpu").autocast():
        assert nn.Linear(4, 4)(torch.randn(2, 4)).dtype == torch.float32


def test_missing_torch_directml_never_crashes():
    # the real probe on this machine: torch_directml is not installed
    assert all(not name.startswith("directml") for name, _ in list_devices())


def test_list_devices_script_prints_cpu():
    out = subprocess.run([sys.executable, "list_devices.py"], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1].startswith("cpu")
