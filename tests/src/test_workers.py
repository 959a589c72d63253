"""Scale-out: one local worker per visible GPU, a Ray backend that falls back to local rendering with a clear
message when Ray is missing or its cluster does not answer, and a local Ray instance with two CPU workers
rendering a project exactly like a single local worker does for the same seeds."""

import os
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from src.job_runner import JobRunner, Worker
from src.jobs import DONE
from src.settings import AppSettings, GenerateDefaults
from src.workers import connect_ray, local_workers
from tests.app_doubles import TINY_TTS_OPTIONS, make_context, make_voice, tiny_tts
from tests.conftest import REPO_ROOT
from tests.src.test_job_runner import wait_for
from tests.ui.conftest import free_port

TEXT = "The birch canoe slid. Glue the sheet.\nRice is served in bowls."
VALUES = GenerateDefaults(seed=99, num_autoregressive_samples=2, diffusion_iterations=2, candidates=1)


class Engines:
    def __init__(self):
        self.devices = []

    def __call__(self, device):
        from src.engine import TTSEngine

        self.devices.append(device)
        return TTSEngine(lambda: None)


def test_one_local_worker_per_visible_gpu(tmp_path):
    ctx = make_context(tmp_path)
    engines = Engines()
    workers = local_workers(ctx.generator, AppSettings(), engines, gpus=3)
    assert [w.name for w in workers] == ["cuda:0", "cuda:1", "cuda:2"]
    assert engines.devices == ["cuda:1", "cuda:2"] and workers[0].renderer is None
    assert [
        w.name for w in local_workers(ctx.generator, AppSettings(device_override="cuda:1"), engines, 3)
    ] == ["cuda:0"]  # a pinned device keeps one worker
    assert [w.name for w in local_workers(ctx.generator, AppSettings(), engines, gpus=0)] == ["local"]


def test_ray_missing_falls_back_with_a_message(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    backend = connect_ray("local", 2, root=tmp_path, settings=AppSettings(), tts_options={})
    assert backend.workers == () and "Ray is not installed" in backend.message and "ray==" in backend.message


@pytest.mark.parametrize("address", ["127.0.0.1:{port}", "ray://127.0.0.1:{port}", "no-port-here"])
def test_an_unreachable_ray_cluster_falls_back_to_local_rendering(tmp_path, address):
    address = address.format(port=free_port())
    backend = connect_ray(address, 2, root=tmp_path, settings=AppSettings(), tts_options={})
    assert backend.workers == ()
    assert f"The Ray cluster at '{address}' could not be reached" in backend.message
    assert "rendering on this machine" in backend.message


def test_the_app_says_so_and_renders_locally_when_ray_does_not_answer(tmp_path):
    settings = AppSettings(ray_address=f"127.0.0.1:{free_port()}", output_sample_rate=24000)
    ctx = make_context(tmp_path, settings=settings)
    make_voice(ctx.paths.voices_dir, "amy", (1.0,))
    runner = ctx.job_runner
    assert [w.name for w in runner.workers] == ["local"]
    assert any("could not be reached" in note for note in ctx.runtime_notes)
    ctx.projects.create("book", "amy", "One. Two.", VALUES)
    job = runner.enqueue_project("amy/book")
    runner.start()
    try:
        wait_for(
            lambda: next(j for j in ctx.job_queue.jobs() if j.id == job).state == DONE, 60, "local render"
        )
    finally:
        runner.stop()


def render_project(ctx, name, workers):
    ctx.projects.create(name, "amy", TEXT, VALUES)
    runner = JobRunner(
        ctx.job_queue, ctx.projects, ctx.generator, workers, concurrency=len(workers), poll_s=0.1
    )
    job = runner.enqueue_project(f"amy/{name}")
    runner.start()
    try:
        wait_for(
            lambda: next(j for j in ctx.job_queue.jobs() if j.id == job).state in (DONE, "failed"), 900, name
        )
    finally:
        runner.stop()
    assert next(j for j in ctx.job_queue.jobs() if j.id == job).state == DONE
    folder = ctx.projects.folder("amy", name)
    project = ctx.projects.open("amy", name).project
    takes = [sf.read(str(folder / row.candidates[0].file), dtype="int16")[0] for row in project.rows]
    used = {row.candidates[0].extra["worker"] for row in project.rows}
    return takes, sf.read(str(folder / "combined.wav"), dtype="int16")[0], used


@pytest.mark.slow
def test_two_ray_workers_render_what_one_local_worker_renders(tmp_path, tiny_models, monkeypatch):
    import ray

    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    ctx = make_context(
        tmp_path,
        tiny_tts(tiny_models),
        settings=AppSettings(output_sample_rate=24000),
        tts_options=TINY_TTS_OPTIONS,
    )
    make_voice(ctx.paths.voices_dir, "amy", (1.0, 1.5))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a one-CPU Ray worker, so both sum in the same order
    try:
        local_takes, local_combined, _ = render_project(
            ctx, "local", [Worker("local", None, ctx.engine.cancel)]
        )
    finally:
        torch.set_num_threads(threads)

    env = {
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
        "RAY_AUTH_MODE": "disabled",
    }
    backend = connect_ray(
        "local",
        2,
        root=tmp_path,
        settings=ctx.settings,
        tts_options=TINY_TTS_OPTIONS,
        loader="tests.project_app:tiny_model",
        init_kwargs={"num_cpus": 2, "include_dashboard": False, "runtime_env": {"env_vars": env}},
    )
    try:
        assert [w.name for w in backend.workers] == ["ray-0", "ray-1"], backend.message
        ray_takes, ray_combined, used = render_project(ctx, "ray", list(backend.workers))
    finally:
        ray.shutdown()
    assert len(ray_takes) == len(local_takes) == 3 and used == {"ray-0", "ray-1"}  # both workers rendered
    for ray_take, local_take in zip(ray_takes, local_takes, strict=True):
        assert np.array_equal(ray_take, local_take)
    assert np.array_equal(ray_combined, local_combined)
