"""The CLI: writes WAVs through the same TextToSpeech path, and fails clearly with exit code 2."""

import subprocess
import sys

import pytest
import soundfile as sf

from tests.conftest import speech_like
from tortoise.api import TextToSpeech, TTSModels
from tortoise.audio import save_wav
from tortoise.cli import main
from tortoise.device import resolve_device
from tortoise.tokenizer import VoiceBpeTokenizer


@pytest.fixture
def factory(tiny_models, tokenizer_path):
    m = tiny_models

    def make(args):
        models = TTSModels(
            m.autoregressive, m.diffusion, m.clvp, m.vocoder, rlg_auto=m.rlg_auto, rlg_diffuser=m.rlg_diffuser
        )
        tts = TextToSpeech(models, VoiceBpeTokenizer(tokenizer_path), m.mel_norms, resolve_device("cpu"))
        original = tts.tts
        tts.tts = lambda text, **kw: original(
            text, **{**kw, "num_autoregressive_samples": 2, "diffusion_iterations": 3, "max_mel_tokens": 16}
        )
        return tts

    return make


def test_cli_writes_wavs_for_a_voice(tmp_path, factory):
    voice = tmp_path / "voices" / "alice"
    save_wav(voice / "a.wav", speech_like(2.0), 22050)
    out = tmp_path / "out"
    code = main(
        [
            "--text",
            "Hello from the command line.",
            "--voice",
            "alice",
            "--voices-dir",
            str(tmp_path / "voices"),
            "--output-dir",
            str(out),
            "--seed",
            "5",
            "--candidates",
            "2",
            "--sampler",
            "ddim",
            "--preset",
            "ultra_fast",
        ],
        tts_factory=factory,
    )
    assert code == 0
    files = sorted(out.glob("*.wav"))
    assert [f.name for f in files] == ["alice_000_0.wav", "alice_000_1.wav"]
    assert sf.info(files[0]).samplerate == 24000


def test_cli_reads_a_text_file_and_uses_the_random_voice(tmp_path, factory):
    (tmp_path / "t.txt").write_text("From a file.", encoding="utf-8")
    assert (
        main(
            ["--text-file", str(tmp_path / "t.txt"), "--output-dir", str(tmp_path / "o")], tts_factory=factory
        )
        == 0
    )
    assert (tmp_path / "o" / "random_000_0.wav").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--text", "", "--voice", "random"], "empty"),
        (["--text", "hi", "--voice", "nobody"], "has no clips"),
        (["--text", "hi", "--voice", "../etc"], "not a voice name"),
        (["--text-file", "/nonexistent/text.txt"], "Cannot read the text file"),
    ],
)
def test_cli_bad_input_exits_2_with_a_message(tmp_path, factory, capsys, args, message):
    code = main(
        [*args, "--voices-dir", str(tmp_path), "--output-dir", str(tmp_path / "o")], tts_factory=factory
    )
    assert code == 2
    assert message in capsys.readouterr().err


def test_cli_unknown_preset_is_an_argparse_error(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "tortoise", "--text", "hi", "--preset", "warp"], capture_output=True, text=True
    )
    assert proc.returncode == 2 and "invalid choice" in proc.stderr


def test_cli_offline_without_models_names_the_missing_files(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "tortoise", "--text", "hi", "--offline", "--models-dir", str(tmp_path / "m")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "autoregressive.pth" in proc.stderr


def test_cli_splits_three_thousand_characters_of_numbers_by_tokens(tmp_path, tokenizer_path):
    from tests.app_doubles import TokenizedFakeTTS
    from tests.tortoise.test_text import numbers_text

    tts = TokenizedFakeTTS(VoiceBpeTokenizer(tokenizer_path), text_token_limit=396)
    text_file = tmp_path / "story.txt"
    text_file.write_text(numbers_text(3000), encoding="utf-8")
    args = ["--text-file", str(text_file), "--output-dir", str(tmp_path / "o")]
    code = main(args, tts_factory=lambda a: tts)
    assert code == 0
    sent = [call[0] for call in tts.calls]
    assert len(sent) > 10 and all(tts.count_text_tokens(chunk) <= 180 for chunk in sent)
    assert len(list((tmp_path / "o").glob("*.wav"))) == len(sent)


def test_cli_brackets_without_the_aligner_fail_before_sampling(tmp_path, factory, capsys):
    from tortoise.redaction import Wav2VecAligner

    made = []

    def without_aligner(args):
        tts = factory(args)
        tts.aligner = Wav2VecAligner(tmp_path / "no-model", tmp_path / "no-tok", local_files_only=True)
        tts.tts = lambda *a, **k: made.append(a)  # sampling must not start
        return tts

    out = tmp_path / "o"
    code = main(["--text", "[Softly,] Hello there.", "--output-dir", str(out)], tts_factory=without_aligner)
    assert code == 2 and made == [] and not list(out.glob("*.wav"))
    assert "wav2vec2" in capsys.readouterr().err


@pytest.fixture
def fast_factory(tiny_models, tokenizer_path):
    """Tiny TextToSpeech with the golden HiFi-GAN decoder; records every stream it opens."""
    from tests.app_doubles import tiny_tts

    streams = []

    def make(args):
        tts = tiny_tts(tiny_models, tokenizer_path)
        original = tts.tts_stream

        def tts_stream(text, **kw):
            stream = original(text, **{**kw, "max_mel_tokens": 20})
            streams.append(stream)
            return stream

        tts.tts_stream = tts_stream
        return tts

    make.streams = streams
    return make


def test_cli_fast_stream_writes_audio_as_long_as_its_codes(tmp_path, fast_factory):
    from tortoise.models.hifigan import frames_for_latents

    out = tmp_path / "out"
    args = ["--text", "Streaming from the command line.", "--output-dir", str(out), "--seed", "3",
            "--fast", "--stream", "--stream-first", "6", "--stream-chunk", "4"]
    assert main(args, tts_factory=fast_factory) == 0
    (stream,) = fast_factory.streams
    audio, rate = sf.read(out / "random_000_0.wav")
    assert rate == 24000 and stream.is_complete
    assert audio.shape == (frames_for_latents(len(stream.codes)) * 256,)
    assert not list(out.glob("*.partial.wav"))


def test_cli_fast_refuses_diffusion_options(tmp_path, fast_factory, capsys):
    args = ["--text", "Hi.", "--output-dir", str(tmp_path), "--fast", "--sampler", "ddim"]
    assert main(args, tts_factory=fast_factory) == 2
    assert "Fast mode does not use sampler" in capsys.readouterr().err


def test_cli_stream_chunk_of_zero_is_refused(tmp_path, fast_factory, capsys):
    args = ["--text", "Hi.", "--output-dir", str(tmp_path), "--stream"]
    args += ["--stream-first", "5", "--stream-chunk", "0"]
    assert main(args, tts_factory=fast_factory) == 2
    assert "chunk codes is 0" in capsys.readouterr().err
