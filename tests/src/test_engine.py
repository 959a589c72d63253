"""TTSEngine: lazy loading, one job at a time, Stop, unload/reload, load failures, per-job half."""

import threading
import time

import pytest

from src.engine import TTSEngine
from tests.app_doubles import FakeTTS
from tortoise.errors import GenerationCancelled, ModelDownloadError


class CountingLoader:
    def __init__(self, delay_s=0.0, fail_times=0):
        self.count = 0
        self.delay_s = delay_s
        self.fail_times = fail_times

    def __call__(self):
        self.count += 1
        time.sleep(self.delay_s)
        if self.count <= self.fail_times:
            raise ModelDownloadError("autoregressive.pth is missing; put it in models/tortoise/.")
        return FakeTTS(model_hash=f"h{self.count}")


def test_nothing_loads_until_first_use_and_loads_once():
    loader = CountingLoader(delay_s=0.2)
    engine = TTSEngine(loader)
    assert loader.count == 0 and not engine.is_loaded
    assert "not loaded" in engine.status()
    results = []
    threads = [threading.Thread(target=lambda: results.append(engine.get())) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert loader.count == 1 and len({id(r) for r in results}) == 1
    assert engine.model_hash == "h1" and "loaded" in engine.status()


def test_background_load():
    loader = CountingLoader()
    engine = TTSEngine(loader)
    engine.load_in_background().join(timeout=10)
    assert engine.is_loaded and loader.count == 1


def test_load_failure_is_reported_and_retried():
    loader = CountingLoader(fail_times=1)
    engine = TTSEngine(loader)
    with pytest.raises(ModelDownloadError):
        engine.get()
    assert "failed to load" in engine.status()
    assert engine.get() is not None and loader.count == 2


def test_jobs_run_one_at_a_time():
    engine = TTSEngine(CountingLoader())
    active, peak = [0], [0]
    lock = threading.Lock()

    def job():
        with engine.job():
            with lock:
                active[0] += 1
                peak[0] = max(peak[0], active[0])
            time.sleep(0.05)
            with lock:
                active[0] -= 1

    threads = [threading.Thread(target=job) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak[0] == 1 and not engine.is_busy


def test_stop_sets_the_flag_only_during_a_job_and_is_cleared_for_the_next():
    engine = TTSEngine(CountingLoader())
    assert engine.cancel() is False and not engine.is_cancelled()
    with engine.job():
        assert engine.cancel() is True
        assert engine.is_cancelled()
        with pytest.raises(GenerationCancelled):
            engine.check_cancelled()
    with engine.job():
        assert not engine.is_cancelled()


def test_unload_and_reload_with_a_new_loader():
    engine = TTSEngine(CountingLoader())
    first = engine.get()
    assert engine.unload() is True and not engine.is_loaded
    assert engine.unload() is False
    swapped = engine.reload(lambda: FakeTTS(model_name="finetune", model_hash="ft01"))
    assert swapped is not first and engine.model_name == "finetune" and engine.model_hash == "ft01"


def test_unload_waits_for_the_running_job():
    engine = TTSEngine(CountingLoader())
    engine.get()
    started, order = threading.Event(), []

    def job():
        with engine.job():
            started.set()
            time.sleep(0.2)
            order.append("job done")

    t = threading.Thread(target=job)
    t.start()
    started.wait(5)
    engine.unload()
    order.append("unloaded")
    t.join()
    assert order == ["job done", "unloaded"]


def test_half_precision_applies_for_one_job_only():
    engine = TTSEngine(CountingLoader())
    tts = engine.get()
    original = tts.plan
    with engine.job(half=True) as inside:
        assert inside.plan.kind == "cpu"  # bf16 only where the CPU supports it; never an error
    assert tts.plan is original


def test_latents_on_cpu_is_a_no_op_on_the_cpu():
    engine = TTSEngine(CountingLoader())
    tts = engine.get()
    plan = tts.plan
    with engine.latents_on_cpu(tts, True):
        assert tts.plan is plan


def test_relative_autoregressive_model_resolves_against_the_app_root(tmp_path, monkeypatch):
    import dataclasses

    import tortoise.api
    from src.engine import loader_from_settings
    from src.paths import AppPaths
    from src.settings import AppSettings

    seen = {}
    monkeypatch.setattr(
        tortoise.api.TextToSpeech, "from_dir", classmethod(lambda cls, d, **kw: seen.update(kw) or "tts")
    )
    paths = AppPaths.from_root(tmp_path)
    settings = dataclasses.replace(
        AppSettings(), autoregressive_model="training/v/finetune/models/10_gpt.pth"
    )
    assert loader_from_settings(paths, settings)() == "tts"
    assert seen["autoregressive_path"] == tmp_path / "training/v/finetune/models/10_gpt.pth"


def _empty_models_engine(tmp_path, **changes):
    import dataclasses

    from src.engine import loader_from_settings
    from src.paths import AppPaths
    from src.settings import AppSettings

    paths = AppPaths.from_root(tmp_path)
    paths.ensure()
    settings = dataclasses.replace(AppSettings(), **changes)
    return TTSEngine(loader_from_settings(paths, settings)), paths


def _assert_lists_every_needed_file(engine, paths):
    from tortoise.download import GENERATION_FILES

    started = time.monotonic()
    with pytest.raises(ModelDownloadError) as e:
        engine.get()
    assert time.monotonic() - started < 5
    message = str(e.value)
    for name in GENERATION_FILES:  # all nine, each with where to put it
        assert str(paths.tortoise_models_dir / name) in message, name
    assert "Only Load Models Locally" in message
    assert "autoregressive.pth" in engine.status() and "failed" in engine.status()
    return message


def test_first_run_offline_lists_every_missing_file_at_once(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    engine, paths = _empty_models_engine(tmp_path, models_local_only=True)
    assert "Offline mode is on" in _assert_lists_every_needed_file(engine, paths)


def test_first_run_without_network_fails_fast_listing_every_missing_file(tmp_path, monkeypatch):
    import socket

    with socket.socket() as s:  # a port nobody listens on: the "hub" refuses at once
        s.bind(("127.0.0.1", 0))
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{s.getsockname()[1]}")
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    engine, paths = _empty_models_engine(tmp_path, models_local_only=False)
    assert "cannot be reached" in _assert_lists_every_needed_file(engine, paths)
