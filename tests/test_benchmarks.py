"""The GPU benchmark script still runs: `bench_gpu --dry` on the CPU with tiny models measures nothing but
goes through every section and prints one JSON line per measurement; without CUDA it says why."""

import json

import pytest
import torch

from benchmarks import bench_gpu


@pytest.mark.slow
def test_bench_gpu_dry_run_prints_every_measurement(capsys):
    assert bench_gpu.main(["--dry", "--device", "cpu", "--precision", "fp32"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    measurements = [line["measurement"] for line in lines]
    for name in ("load", "first_call", "p1", "ultra_fast_10s", "ar_tokens_per_s", "roofline", "fast_mode"):
        assert name in measurements
    assert all(line["precision"] == "fp32" for line in lines if "precision" in line)
    fast = next(line for line in lines if line["measurement"] == "fast_mode")
    assert "skipped" in fast


def test_bench_gpu_without_cuda_says_why(capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert bench_gpu.main([]) == 2
    assert "needs a CUDA GPU" in capsys.readouterr().err
