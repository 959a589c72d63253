"""The GPT-2 dense layer in bf16 on CPUs without bf16 instructions: inputs of many rows (a prompt prefill)
are multiplied in fp32 from the stored bf16 weights, a few rows (a decode step) stay in bf16.

Both ways round to the same bf16 output (oneDNN accumulates bf16 products in fp32), so the tests watch
the dtype that reaches the matrix product."""

import pytest
import torch
import torch.nn.functional as F

from tortoise import device
from tortoise.models.gpt2 import EMULATED_BF16_MAX_ROWS, Conv1D


@pytest.fixture
def layer():
    torch.manual_seed(0)
    return Conv1D(64, 96).to(torch.bfloat16)


@pytest.fixture
def product_dtypes(monkeypatch):
    """The input dtypes of every F.linear call made while the test runs (with autocast on: the dtype
    autocast turns them into)."""
    seen = []
    linear = F.linear

    def spy(x, weight, bias=None):
        autocast = torch.is_autocast_enabled("cpu")
        dtype = torch.get_autocast_dtype("cpu") if autocast else None
        seen.append((dtype or x.dtype, dtype or weight.dtype))
        return linear(x, weight, bias)

    monkeypatch.setattr(F, "linear", spy)
    return seen


@pytest.mark.parametrize("rows", [EMULATED_BF16_MAX_ROWS + 1, 57])
def test_many_rows_run_in_fp32_without_bf16_instructions(monkeypatch, layer, product_dtypes, rows):
    monkeypatch.setattr(device, "cpu_supports_bf16", lambda: False)
    x = torch.randn(1, rows, 64).to(torch.bfloat16)
    out = layer(x)
    assert product_dtypes == [(torch.float32, torch.float32)]
    assert out.dtype == torch.bfloat16 and out.shape == (1, rows, 96)
    expected = (x.float() @ layer.weight.float() + layer.bias.float()).to(torch.bfloat16)
    assert torch.allclose(out.float(), expected.float(), atol=1e-2)


def test_a_decode_step_stays_in_bf16_and_native_bf16_is_left_alone(monkeypatch, layer, product_dtypes):
    monkeypatch.setattr(device, "cpu_supports_bf16", lambda: False)
    layer(torch.randn(EMULATED_BF16_MAX_ROWS, 1, 64).to(torch.bfloat16))
    monkeypatch.setattr(device, "cpu_supports_bf16", lambda: True)
    layer(torch.randn(1, 57, 64).to(torch.bfloat16))
    assert product_dtypes == [(torch.bfloat16, torch.bfloat16)] * 2


def test_fp32_is_untouched(monkeypatch, layer, product_dtypes):
    monkeypatch.setattr(device, "cpu_supports_bf16", lambda: False)
    layer = layer.float()
    layer(torch.randn(1, 57, 64))
    assert product_dtypes == [(torch.float32, torch.float32)]


def test_autocast_does_not_undo_the_fp32_prefill(monkeypatch, layer, product_dtypes):
    """The pipeline decodes under bf16 autocast when half precision is on; the upcast must survive it."""
    monkeypatch.setattr(device, "cpu_supports_bf16", lambda: False)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(torch.randn(1, 57, 64).to(torch.bfloat16))
    assert product_dtypes == [(torch.float32, torch.float32)] and out.dtype == torch.bfloat16
