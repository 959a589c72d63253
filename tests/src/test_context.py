"""AppContext: services are built lazily and once; settings changes reach the services."""

import dataclasses

from src.engine import TTSEngine
from src.settings import AppSettings
from tests.app_doubles import FakeTTS, make_context


def test_services_are_lazy_and_shared(tmp_path):
    loads = []
    ctx = make_context(tmp_path)
    ctx.tts_loader = lambda: loads.append(1) or FakeTTS()
    assert "engine" not in vars(ctx)  # nothing built yet
    assert isinstance(ctx.engine, TTSEngine) and ctx.engine is ctx.engine
    assert ctx.generator.engine is ctx.engine and ctx.generator.voices is ctx.voices
    assert loads == []  # building the engine loads no model


def test_reload_tts_loads_again(tmp_path):
    loads = []
    ctx = make_context(tmp_path)
    ctx.tts_loader = lambda: loads.append(1) or FakeTTS(model_hash=f"h{len(loads)}")
    ctx.engine.get()
    ctx.reload_tts()
    assert loads == [1, 1] and ctx.engine.model_hash == "h2"


def test_update_settings_reaches_the_generator(tmp_path):
    ctx = make_context(tmp_path)
    ctx.update_settings(dataclasses.replace(AppSettings(), output_volume=0.5))
    assert ctx.generator.settings().output_volume == 0.5


def test_without_an_injected_loader_the_official_models_are_used_on_first_use(tmp_path):
    ctx = make_context(tmp_path)
    ctx.tts_loader = None
    ctx.update_settings(AppSettings(models_local_only=True))
    assert not ctx.engine.is_loaded  # no download, no load, until a generation asks for it
