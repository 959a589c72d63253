"""FastGenerator on the tiny real models: chunks while generating, the saved file equal to the chunks,
metadata with the mode, line-by-line streaming, refused settings and a stopped stream kept as partial."""

import numpy as np
import pytest
import soundfile as sf

from src.errors import InvalidInput
from src.fast_generate import PARTIAL_FILE, FastGenerator
from src.generate import GenerateRequest
from src.metadata import read_metadata
from src.settings import AppSettings
from tests.app_doubles import TINY_TTS_OPTIONS, make_context, make_voice, tiny_tts
from tortoise import StreamSettings


@pytest.fixture(scope="module")
def model(tiny_models):
    return tiny_tts(tiny_models)


@pytest.fixture
def ctx(tmp_path, model):
    settings = AppSettings(output_sample_rate=24000)
    context = make_context(tmp_path, model, settings=settings, tts_options=TINY_TTS_OPTIONS)
    make_voice(context.paths.voices_dir, "amy", (1.5, 2.0))
    context.fast_generator.stream_settings = StreamSettings(4, 4, 256)
    return context


def request(**changes):
    return GenerateRequest(**{"text": "Hello there.", "voice": "amy", "seed": 7, "generation_mode": "Fast",
                              **changes})


def test_one_line_streams_chunks_and_saves_them_as_one_file(ctx):
    updates = list(ctx.fast_generator.stream(request()))
    chunks = [u.audio for u in updates if u.audio is not None]
    result = updates[-1].result
    assert result is not None and len(chunks) >= 2
    assert [p.name for p in result.files] == ["result.wav"]
    saved, rate = sf.read(result.files[0], dtype="float32")
    assert rate == 24000
    joined = np.concatenate(chunks)
    assert saved.shape == joined.shape
    np.testing.assert_allclose(saved, joined, atol=1.5 / 32768)  # 16-bit PCM
    meta = read_metadata(result.files[0])
    assert meta.generation_mode == "Fast" and meta.seed == 7 and not meta.partial
    assert any("Fast mode used one sample" in note for note in result.notes)


def test_long_text_streams_line_by_line(ctx):
    updates = list(ctx.fast_generator.stream(request(text="First line.\nSecond line.", delimiter="\\n")))
    lines = [u.line for u in updates if u.audio is not None]
    assert lines[0] == 0 and lines[-1] == 1 and lines == sorted(lines)
    names = [p.name for p in updates[-1].result.files]
    assert names == ["combined.wav"]


def test_generate_in_fast_mode_goes_through_the_fast_path(ctx):
    result = ctx.generator.generate(request())
    assert read_metadata(result.files[0]).generation_mode == "Fast"


@pytest.mark.parametrize("change", [{"candidates": 2, "num_autoregressive_samples": 4}, {"cvvp_weight": 0.5}])
def test_settings_that_need_ranking_are_refused(ctx, change):
    with pytest.raises(InvalidInput, match="Fast mode makes one clip"):
        list(ctx.fast_generator.stream(request(**change)))


@pytest.mark.parametrize("change", [{"emotion": "Sad"}, {"text": "[whispering] Hello there."}])
def test_brackets_and_emotions_are_refused_with_a_way_out(ctx, change):
    with pytest.raises(InvalidInput, match="Set Emotion to None"):
        list(ctx.fast_generator.stream(request(**change)))


def test_stop_keeps_the_audio_so_far_marked_partial(ctx):
    fast: FastGenerator = ctx.fast_generator
    got = []
    updates = fast.stream(request(text="First line.\nSecond line.", delimiter="\\n"))
    for update in updates:
        if update.audio is not None:
            got.append(update.audio)
            if len(got) == 2:
                ctx.engine.cancel()
        if update.result is not None:
            result = update.result
    assert [p.name for p in result.files] == [PARTIAL_FILE]
    saved, _ = sf.read(result.files[0], dtype="float32")
    assert saved.size >= sum(a.size for a in got)
    assert read_metadata(result.files[0]).partial is True
    assert any("kept in partial.wav" in note for note in result.notes)


def test_fast_mode_asks_for_half_precision_as_a_one_row_job(ctx, monkeypatch):
    """Fast mode decodes one row, so its Half switch applies even on CPUs without bf16 instructions
    (tests/tortoise/test_precision.py shows what the engine then does)."""
    seen = []
    job = ctx.engine.job

    def recording_job(**kwargs):
        seen.append(kwargs)
        return job(**{**kwargs, "half": False})  # the shared tiny models stay in fp32

    monkeypatch.setattr(ctx.engine, "job", recording_job)
    list(ctx.fast_generator.stream(request(half_precision=True)))
    assert seen == [{"half": True, "few_rows": True}]
