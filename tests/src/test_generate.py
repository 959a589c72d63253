"""Generator: lines x candidates -> files with metadata, combined.wav, notes, Stop, bad input,
VoiceFixer, generate.json; plus one end-to-end run on the tiny real models."""

import dataclasses
import json

import pytest
import soundfile as sf

from src.errors import InvalidInput, SettingsError
from src.generate import GenerateRequest, Generator, VoiceFixerRunner, check_request
from src.metadata import read_metadata, read_sidecar
from src.settings import AppSettings, load_generate_defaults
from tests.app_doubles import TINY_TTS_OPTIONS, FakeTTS, make_context, make_voice, tiny_tts
from tortoise.errors import GenerationCancelled, TextTooLongError
from tortoise.latents import ConditioningLatents

SMALL = dict(num_autoregressive_samples=4, diffusion_iterations=4)


def request(**changes):
    return GenerateRequest(**{"text": "Hello there.", "voice": "amy", **SMALL, **changes})


@pytest.fixture
def fake():
    return FakeTTS()


@pytest.fixture
def ctx(tmp_path, fake):
    context = make_context(tmp_path, fake)
    make_voice(context.paths.voices_dir, "amy", (1.5, 2.0))
    return context


def run_dirs(ctx, voice="amy"):
    folder = ctx.paths.results_dir / voice
    return sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []


def test_single_line_writes_result_wav_with_metadata_and_input_txt(ctx, fake):
    req = request(
        seed=1234, temperature=0.5, diffusion_sampler="DDIM", cvvp_weight=0.0, preset="Fast"
    )
    result = ctx.generator.generate(req)
    assert [p.name for p in result.files] == ["result.wav"]
    assert result.seed == 1234 and result.time_s > 0 and result.lines == ("Hello there.",)
    info = sf.info(result.files[0])
    assert info.samplerate == 44100  # Output Sample Rate setting
    meta = read_metadata(result.files[0])
    expected = dataclasses.asdict(req.defaults())
    for key in (
        "text",
        "voice",
        "seed",
        "temperature",
        "num_autoregressive_samples",
        "diffusion_iterations",
        "diffusion_sampler",
        "preset",
        "top_p",
        "cond_free_k",
        "breathing_room",
        "candidates",
    ):
        assert getattr(meta, key) == expected[key], key
    assert meta.model == "fake_ar" and meta.model_hash == "fakehash" and meta.latents
    assert meta.experimentals == ("Conditioning-Free",)
    ConditioningLatents.from_bytes(__import__("base64").b64decode(meta.latents))
    assert json.loads((result.run_dir / "input.txt").read_text())["text"] == "Hello there."
    # options reached TorToiSe with its own names
    text, options = fake.calls[0]
    assert text == "Hello there." and options["sampler"] == "ddim" and options["k"] == 1
    assert options["seed"] == 1234 and options["temperature"] == 0.5


def test_generate_json_keeps_the_request_and_the_requested_seed(ctx):
    ctx.generator.generate(request(seed=0, emotion="Sad"))
    saved = load_generate_defaults(ctx.paths.generate_file).value
    assert (
        saved.seed == 0
        and saved.emotion == "Sad"
        and saved.text == "Hello there."
        and saved.voice == "amy"
    )


def test_emotion_prefix_is_sent_but_not_stored(ctx, fake):
    result = ctx.generator.generate(request(emotion="Sad"))
    assert fake.calls[0][0] == "[I am really sad,] Hello there."
    assert read_metadata(result.files[0]).text == "Hello there."


def test_multi_line_joins_into_combined_and_deletes_per_line_clips(ctx, fake):
    result = ctx.generator.generate(
        request(text="First line.\n\n  \nSecond line.", delimiter="\\n")
    )
    assert [p.name for p in result.files] == ["combined.wav"]
    assert sorted(p.name for p in result.run_dir.iterdir()) == ["combined.wav", "input.txt"]
    assert [c[0] for c in fake.calls] == ["First line.", "Second line."]
    assert "Skipped 2 empty line(s)." in result.notes
    meta = read_metadata(result.files[0])
    assert meta.text == "First line.\n\n  \nSecond line." and meta.delimiter == "\\n"
    combined = sf.info(result.files[0]).frames
    assert combined > 0


def test_keeping_non_final_clips_and_several_candidates(ctx):
    ctx.settings = dataclasses.replace(
        ctx.settings, delete_non_final_output=False, output_sample_rate=24000
    )
    result = ctx.generator.generate(request(text="One.\nTwo.", delimiter="\\n", candidates=2))
    assert [p.name for p in result.files] == ["combined_0.wav", "combined_1.wav"]
    names = sorted(p.name for p in result.run_dir.glob("*.wav"))
    assert names == [
        "combined_0.wav",
        "combined_1.wav",
        "result_0_0.wav",
        "result_0_1.wav",
        "result_1_0.wav",
        "result_1_1.wav",
    ]
    assert sf.info(result.files[0]).samplerate == 24000  # mrq crashed here (bug 1)
    assert read_metadata(result.run_dir / "result_1_0.wav").text == "Two."


def test_sidecar_when_embedding_is_off(ctx):
    ctx.settings = dataclasses.replace(ctx.settings, embed_output_metadata=False)
    result = ctx.generator.generate(request(seed=7))
    sidecar = read_sidecar(result.files[0])
    assert sidecar is not None and sidecar.seed == 7 and sidecar.latents is None


def test_random_voice_stays_the_same_voice_across_lines(ctx, fake):
    result = ctx.generator.generate(request(voice="random", text="A.\nB.", delimiter="\\n"))
    assert result.sample is None and result.run_dir.parent.name == "random"
    assert read_metadata(result.files[0]).latents is None


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (dict(text="   "), "Please provide text"),
        (dict(text="\n\n", delimiter="\\n"), "Please provide text"),
        (dict(voice=""), "Please provide a voice"),
        (dict(candidates=6, num_autoregressive_samples=4), "Candidates"),
        (dict(temperature=5.0), "Temperature"),
        (dict(seed=-3), "Seed"),
        (dict(emotion="Bored"), "Emotion"),
    ],
)
def test_bad_input_is_a_plain_message_and_writes_nothing(ctx, changes, message):
    with pytest.raises((InvalidInput, SettingsError), match=message):
        ctx.generator.generate(request(**changes))
    assert run_dirs(ctx) == []


def test_voice_problems_are_plain_and_write_nothing(ctx):
    (ctx.paths.voices_dir / "empty").mkdir()
    with pytest.raises(InvalidInput, match="no recording"):
        ctx.generator.generate(request(voice="microphone"))
    from src.voices import VoiceUnusable

    with pytest.raises(VoiceUnusable, match="no audio"):
        ctx.generator.generate(request(voice="empty"))
    assert not ctx.paths.results_dir.joinpath("microphone").exists()


def test_a_too_long_line_fails_before_any_work(ctx, fake):
    with pytest.raises(TextTooLongError):
        ctx.generator.generate(request(text="Short.\n" + "word " * 40, delimiter="\\n"))
    assert fake.calls == [] and run_dirs(ctx) == []


def test_stop_mid_run_leaves_no_files(ctx, fake):
    def press_stop(call, step):
        if call == 1 and step == 2:
            ctx.engine.cancel()

    fake.on_step = press_stop
    with pytest.raises(GenerationCancelled):
        ctx.generator.generate(request(text="One.\nTwo.\nThree.", delimiter="\\n"))
    assert len(fake.calls) == 2
    assert run_dirs(ctx) == []
    assert not list(ctx.paths.results_dir.rglob("*.wav"))
    fake.on_step = None
    assert ctx.generator.generate(request()).files  # the next run is not cancelled


def test_progress_goes_forward_to_done(ctx):
    seen = []
    ctx.generator.generate(
        request(text="A.\nB.", delimiter="\\n"), lambda f, text: seen.append((f, text))
    )
    fractions = [f for f, _ in seen]
    assert fractions[-1] == 1.0 and all(0.0 <= f <= 1.0 for f in fractions)
    assert fractions == sorted(fractions)
    assert any("Line 2/2: diffusion" in text for _, text in seen)


def test_voicefixer_missing_is_skipped_with_a_note(ctx, monkeypatch):
    ctx.settings = dataclasses.replace(ctx.settings, voice_fixer=True)
    monkeypatch.setattr(VoiceFixerRunner, "is_available", staticmethod(lambda: False))
    result = ctx.generator.generate(request())
    assert any("VoiceFixer is not installed" in n for n in result.notes)
    assert [p.name for p in result.files] == ["result.wav"]


def test_voicefixer_output_becomes_final(ctx):
    class CopyFixer(VoiceFixerRunner):
        @staticmethod
        def is_available():
            return True

        def fix(self, source, target, *, use_cuda):
            target.write_bytes(source.read_bytes())
            return target

    ctx.settings = dataclasses.replace(ctx.settings, voice_fixer=True)
    generator = Generator(ctx.paths, ctx.engine, ctx.voices, ctx.current_settings, CopyFixer())
    result = generator.generate(request(text="A.\nB.", delimiter="\\n"))
    assert [p.name for p in result.files] == ["combined_fixed.wav"]
    assert sorted(p.name for p in result.run_dir.glob("*.wav")) == ["combined_fixed.wav"]
    assert read_metadata(result.files[0]).text == "A.\nB."


def test_compute_latents_button(ctx, fake):
    found = ctx.generator.compute_latents("amy", 2)
    assert found.source == "computed"
    assert ctx.generator.compute_latents("amy", 2).source == "computed"  # forced every time
    with pytest.raises(InvalidInput, match="random"):
        ctx.generator.compute_latents("random")


def test_check_request_coerces_gradio_floats():
    checked = check_request(request(seed=12.0, candidates=2.0, voice_chunks=3.0))
    assert checked.seed == 12 and isinstance(checked.candidates, int) and checked.voice_chunks == 3


def test_settings_changes_apply_to_the_next_run(ctx):
    ctx.update_settings(dataclasses.replace(ctx.settings, output_sample_rate=22050))
    result = ctx.generator.generate(request())
    assert sf.info(result.files[0]).samplerate == 22050


@pytest.mark.slow
def test_end_to_end_with_the_tiny_models(tmp_path, tiny_models):
    ctx = make_context(
        tmp_path,
        tiny_tts(tiny_models),
        tts_options=TINY_TTS_OPTIONS,
        settings=AppSettings(output_sample_rate=24000),
    )
    make_voice(ctx.paths.voices_dir, "amy", (1.5,))
    result = ctx.generator.generate(request(seed=3, text="Hi.\nBye.", delimiter="\\n"))
    assert [p.name for p in result.files] == ["combined.wav"]
    assert sf.info(result.files[0]).frames > 0
    assert (ctx.paths.voices_dir / "amy" / "cond_latents_tiny0001.pth").is_file()
    meta = read_metadata(result.files[0])
    assert meta.seed == 3 and meta.model_hash == "tiny0001"
