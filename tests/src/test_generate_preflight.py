"""Generator (src/generate.py) for a new user's first hour: problems found before any sampling, no
finished render ever lost to a post-processing step, long text of numbers never over the token limit,
truncation and the remainder of the samples visible."""

import json
import re

import pytest
import soundfile as sf
import torch

from src.errors import InvalidInput, MissingRequirement
from src.generate import GenerateRequest, Generator, VoiceFixerRunner
from src.settings import AppSettings
from tests.app_doubles import TINY_TTS_OPTIONS, TokenizedFakeTTS, make_context, make_voice, tiny_tts
from tests.conftest import REFERENCE_DIR
from tests.tortoise.test_text import numbers_text
from tortoise.redaction import Wav2VecAligner
from tortoise.tokenizer import VoiceBpeTokenizer

SMALL = dict(num_autoregressive_samples=4, diffusion_iterations=4)


def request(**changes):
    return GenerateRequest(**{"text": "Hello there.", "voice": "amy", **SMALL, **changes})


@pytest.fixture(scope="module")
def tokenizer():
    return VoiceBpeTokenizer(REFERENCE_DIR / "tokenizer.json")


class HalvingAligner:
    """Keeps the first half of the clip: stands in for the wav2vec2 aligner's cut."""

    def redact(self, audio, text, sample_rate):
        return audio[..., : audio.shape[-1] // 2]


class BreakingAligner:
    """Loads, then fails on the clip (as a corrupt or mismatched wav2vec2 model does)."""

    def load(self):
        pass

    def redact(self, audio, text, sample_rate):
        raise RuntimeError("wav2vec2 weights are corrupt")


def context(tmp_path, tts, **settings):
    ctx = make_context(tmp_path, tts, settings=AppSettings(output_sample_rate=24000, **settings))
    make_voice(ctx.paths.voices_dir, "amy", (1.5, 2.0))
    return ctx


def run_dirs(ctx):
    folder = ctx.paths.results_dir / "amy"
    return sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []


def test_an_emotion_without_the_aligner_refuses_at_once_and_renders_with_redaction_off(tmp_path, tokenizer):
    missing = Wav2VecAligner(tmp_path / "no-model", tmp_path / "no-tokenizer", local_files_only=True)
    tts = TokenizedFakeTTS(tokenizer, aligner=missing)
    ctx = context(tmp_path, tts)
    expected = "(?s)wav2vec2 aligner.*Emotion 'Happy'.*Cut \\[Bracketed\\] Words"
    with pytest.raises(MissingRequirement, match=expected):
        ctx.generator.generate(request(emotion="Happy", text="Two lines.\nOf text.", delimiter="\\n"))
    assert tts.calls == [] and run_dirs(ctx) == []  # no sampling happened, nothing on disk

    result = ctx.generator.generate(request(emotion="Happy", enable_redaction=False))
    assert result.files[0].is_file() and tts.redacted == []
    assert tts.calls[0][0] == "[I am really happy,] Hello there."


def test_redaction_cuts_the_bracketed_words(tmp_path, tokenizer):
    tts = TokenizedFakeTTS(tokenizer, aligner=HalvingAligner())
    ctx = context(tmp_path, tts)
    plain = ctx.generator.generate(request(text="Hello there."))
    cut = ctx.generator.generate(request(text="[Whispering,] Hello there."))
    assert tts.redacted == ["[Whispering,] Hello there."]
    # the fake's tone is longer for longer text, so compare with what the halving leaves
    full = torch.tensor(sf.read(plain.files[0])[0]).numel()
    assert sf.info(cut.files[0]).frames < full


def test_an_aligner_that_breaks_after_sampling_keeps_the_raw_audio_with_a_note(tmp_path, tokenizer):
    tts = TokenizedFakeTTS(tokenizer, aligner=BreakingAligner())
    ctx = context(tmp_path, tts)
    result = ctx.generator.generate(
        request(text="[Softly,] First line.\nSecond line.", delimiter="\\n", candidates=2)
    )
    assert [p.name for p in result.files] == ["combined_0.wav", "combined_1.wav"]
    assert all(sf.info(p).frames > 0 for p in result.files)
    note = "Line 1: The [bracketed] words could not be cut from the audio (wav2vec2 weights are corrupt)"
    assert any(n.startswith(note) for n in result.notes), result.notes
    saved = json.loads((result.run_dir / "input.txt").read_text())
    assert any(n.startswith(note) for n in saved["notes"])


def test_voicefixer_failure_keeps_the_unprocessed_clip(tmp_path, tokenizer):
    class BrokenFixer(VoiceFixerRunner):
        @staticmethod
        def is_available():
            return True

        def fix(self, source, target, *, use_cuda):
            target.write_bytes(b"half a file")
            raise RuntimeError("CUDA error: out of memory")

    ctx = context(tmp_path, TokenizedFakeTTS(tokenizer), voice_fixer=True)
    generator = Generator(ctx.paths, ctx.engine, ctx.voices, ctx.current_settings, BrokenFixer())
    result = generator.generate(request())
    assert [p.name for p in result.files] == ["result.wav"] and sf.info(result.files[0]).frames > 0
    assert not (result.run_dir / "result_fixed.wav").exists()
    assert any("VoiceFixer failed on result.wav (CUDA error: out of memory)" in n for n in result.notes)


def test_too_little_disk_space_is_refused_before_any_work(tmp_path, tokenizer):
    tts = TokenizedFakeTTS(tokenizer)
    ctx = context(tmp_path, tts)
    ctx.generator.disk_usage = lambda path: type("Usage", (), {"free": 10 * 2**20})()
    with pytest.raises(MissingRequirement, match="Not enough disk space"):
        ctx.generator.generate(request())
    assert tts.calls == [] and run_dirs(ctx) == []


@pytest.mark.parametrize("delimiter", ["", "\\n"])
def test_three_thousand_characters_of_numbers_render_within_the_token_limit(tmp_path, tokenizer, delimiter):
    tts = TokenizedFakeTTS(tokenizer, text_token_limit=396)
    ctx = context(tmp_path, tts)
    text = numbers_text(3000)
    result = ctx.generator.generate(
        request(text=text, delimiter=delimiter, emotion="Sad", enable_redaction=False)
    )
    sent = [call[0] for call in tts.calls]
    assert len(sent) > 10 and all(tts.count_text_tokens(prompt) <= 180 for prompt in sent)
    assert [p.name for p in result.files] == ["combined.wav"]
    assert any("split into" in note for note in result.notes)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Say " + "z" * 500 + " now.", "The word 'zzzz"),
        ("\x1b\x00\x07", "control characters"),
        ("\x1b[31mRed\x1b[0m text", "ESC (U+001B)"),
    ],
)
def test_bad_prompts_are_plain_messages_and_write_nothing(tmp_path, tokenizer, text, message):
    tts = TokenizedFakeTTS(tokenizer)
    ctx = context(tmp_path, tts)
    with pytest.raises(InvalidInput, match=re.escape(message)):
        ctx.generator.generate(request(text=text))
    assert tts.calls == [] and run_dirs(ctx) == []


@pytest.mark.slow
def test_tiny_models_split_numbers_report_truncation_per_line_and_use_every_sample(tmp_path, tiny_models):
    model = tiny_tts(tiny_models)
    ctx = make_context(tmp_path, model, tts_options=TINY_TTS_OPTIONS,
                       settings=AppSettings(output_sample_rate=24000, sample_batch_size=2))  # fmt: skip
    make_voice(ctx.paths.voices_dir, "amy", (1.5,))
    text = "In 1999 we paid $1,234.56 on the 21st. It cost 42,000 pounds by 2007."
    assert model.count_text_tokens(text) > model.text_token_limit  # one pass could not take it
    seen = []
    original = model.tts

    def counting(prompt, **kwargs):
        seen.append(model.count_text_tokens(prompt))
        result = original(prompt, **kwargs)
        assert result.codes is not None
        return result

    model.tts = counting
    result = ctx.generator.generate(request(text=text, num_autoregressive_samples=3, diffusion_iterations=2))
    assert len(seen) >= 2 and all(count <= model.text_token_limit for count in seen)
    assert result.files[0].is_file()
    truncated = [n for n in result.notes if "never emitted a stop code" in n]
    assert truncated and all(n.startswith("Line ") for n in truncated)
    assert any("All 3 samples were drawn: 1 batch(es) of 2, then one of 1" in n for n in result.notes)


def test_a_failing_resample_or_metadata_step_keeps_the_clip_with_a_note(tmp_path, tokenizer, monkeypatch):
    import src.generate as generate_module
    from src.errors import MetadataError

    ctx = context(tmp_path, TokenizedFakeTTS(tokenizer), output_volume=0.5)

    def broken_postprocess(*args, **kwargs):
        raise ValueError("resampler ran out of memory")

    monkeypatch.setattr(generate_module, "postprocess_output", broken_postprocess)
    result = ctx.generator.generate(request())
    assert sf.info(result.files[0]).samplerate == 24000  # the raw rate, unprocessed
    assert any("could not be applied (resampler ran out of memory)" in n for n in result.notes)
    monkeypatch.undo()

    real_save = generate_module.save_clip

    def save_without_tags(path, wav, rate, metadata=None, *, embed=True):
        if metadata is not None:
            raise MetadataError("the tag library refused the file")
        return real_save(path, wav, rate, None)

    monkeypatch.setattr(generate_module, "save_clip", save_without_tags)
    result = ctx.generator.generate(request())
    assert result.files[0].is_file() and sf.info(result.files[0]).frames > 0
    assert any("saved without its settings metadata" in n for n in result.notes)


def test_a_ten_thousand_character_prompt_renders_in_many_lines(tmp_path, tokenizer):
    tts = TokenizedFakeTTS(tokenizer, text_token_limit=396)
    ctx = context(tmp_path, tts)
    text = ("A plain sentence with ordinary words, nothing more. " * 200).strip()
    result = ctx.generator.generate(request(text=text, enable_redaction=False))
    assert len(text) >= 10_000 and len(tts.calls) > 30
    assert all(tts.count_text_tokens(call[0]) <= 180 for call in tts.calls)
    assert [p.name for p in result.files] == ["combined.wav"]
