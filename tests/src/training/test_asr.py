"""Tests for src/training/asr.py: both Whisper backends on real speech, lazy load/unload,
and the error messages."""

import json
import sys
import urllib.error
import urllib.request

import numpy as np
import pytest
import soundfile as sf

from src.errors import InvalidInput
from src.training.asr import (
    FASTER_WHISPER,
    OPENAI_WHISPER,
    AsrUnavailable,
    FasterWhisperTranscriber,
    OpenAIWhisperTranscriber,
    Segment,
    create_transcriber,
    normalize_language,
)
from tests.speech import FOX, STELLA, assert_heard, convert_ct2_to_openai_whisper, ct2_tiny_en_dir, say


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    """Two sentences spoken by Piper: {sentence: wav path}."""
    from tests.speech import require_speech_packages

    require_speech_packages()
    folder = tmp_path_factory.mktemp("speech")
    return {FOX: say(FOX, folder / "fox.wav"), STELLA: say(STELLA, folder / "stella.wav")}


@pytest.fixture(scope="module")
def faster(speech):
    transcriber = FasterWhisperTranscriber(str(ct2_tiny_en_dir()), device="cpu", compute_type="int8")
    yield transcriber
    transcriber.unload()


@pytest.fixture(scope="module")
def openai_checkpoint(speech, tmp_path_factory):
    return convert_ct2_to_openai_whisper(ct2_tiny_en_dir(), tmp_path_factory.mktemp("whisper") / "tiny.en.pt")


@pytest.fixture(scope="module")
def openai(openai_checkpoint):
    transcriber = OpenAIWhisperTranscriber(str(openai_checkpoint), device="cpu")
    yield transcriber
    transcriber.unload()


def _audio_16k(path):
    import torch

    from tortoise.audio import resample

    data, rate = sf.read(path, dtype="float32")
    return resample(torch.from_numpy(data), rate, 16000).numpy()


@pytest.mark.slow
def test_faster_whisper_hears_the_spoken_words(faster, speech):
    assert not faster.is_loaded
    for sentence, path in speech.items():
        result = faster.transcribe(path, language="English")
        assert_heard(result.text, sentence)
        assert result.language == "en"
        assert result.segments and all(isinstance(s, Segment) for s in result.segments)
        duration_s = sf.info(path).duration
        assert 0 <= result.segments[0].start_s < result.segments[-1].end_s <= duration_s + 0.5
    assert faster.is_loaded


@pytest.fixture(scope="module")
def openai_fox(openai, speech):
    """openai-whisper's transcription of the fox sentence, made once (CPU decoding takes seconds)."""
    return openai.transcribe(_audio_16k(speech[FOX]), language="en")


@pytest.mark.slow
def test_openai_whisper_hears_the_spoken_words_from_a_converted_checkpoint(openai_fox, speech):
    assert_heard(openai_fox.text, FOX)
    assert (
        0
        <= openai_fox.segments[0].start_s
        < openai_fox.segments[-1].end_s
        <= sf.info(speech[FOX]).duration + 0.5
    )


@pytest.mark.slow
def test_raw_results_have_whisper_json_shape(faster, openai_fox, speech):
    for raw in (faster.transcribe(speech[FOX], language="en").raw, openai_fox.raw):
        json.dumps(raw)  # plain JSON types only
        assert raw["language"] == "en"
        assert raw["text"].split() == " ".join(s["text"] for s in raw["segments"]).split()
        first = raw["segments"][0]
        assert first["id"] == 0
        assert {"id", "seek", "start", "end", "text", "tokens", "avg_logprob", "no_speech_prob"} <= set(first)


@pytest.mark.slow
def test_unload_frees_the_model_and_the_next_call_loads_it_again(faster, speech):
    faster.load()
    assert faster.is_loaded
    faster.unload()
    assert not faster.is_loaded
    faster.unload()  # a second unload is harmless
    assert_heard(faster.transcribe(speech[FOX]).text, FOX)
    assert faster.is_loaded


def test_nothing_is_loaded_at_construction():
    transcriber = create_transcriber(FASTER_WHISPER, "/nonexistent/model")
    assert not transcriber.is_loaded
    assert isinstance(create_transcriber(OPENAI_WHISPER, "base"), OpenAIWhisperTranscriber)


def test_unknown_backend_and_empty_model_are_refused():
    with pytest.raises(InvalidInput, match="whisper.cpp.*openai-whisper, faster-whisper"):
        create_transcriber("whisper.cpp", "base")
    with pytest.raises(InvalidInput, match="No Whisper model"):
        create_transcriber(FASTER_WHISPER, "  ")


def test_missing_backend_package_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "faster_whisper", None)  # makes `import faster_whisper` fail
    transcriber = create_transcriber(FASTER_WHISPER, "tiny.en")
    with pytest.raises(AsrUnavailable, match="'faster-whisper' is not installed.*pip install faster-whisper"):
        transcriber.transcribe(np.zeros(16000, dtype=np.float32))
    assert not transcriber.is_loaded


def test_openai_model_that_cannot_be_downloaded_names_the_model_and_the_fix(monkeypatch, tmp_path):

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    transcriber = create_transcriber(OPENAI_WHISPER, "tiny.en", download_root=tmp_path)
    with pytest.raises(AsrUnavailable, match=r"'tiny.en'.*internet connection.*tiny.en.pt") as caught:
        transcriber.load()
    assert str(tmp_path) in str(caught.value)


def test_openai_checkpoint_that_is_not_one_is_refused(tmp_path):
    bogus = tmp_path / "model.pt"
    bogus.write_bytes(b"not a checkpoint")
    with pytest.raises(AsrUnavailable, match="openai-whisper .pt checkpoint"):
        create_transcriber(OPENAI_WHISPER, str(bogus)).load()
    with pytest.raises(AsrUnavailable, match="neither an openai-whisper model name"):
        create_transcriber(OPENAI_WHISPER, "tiny-typo").load()


def test_faster_model_that_cannot_be_downloaded_names_the_model_and_the_fix(monkeypatch, tmp_path):
    import faster_whisper.utils as faster_whisper_utils
    from huggingface_hub.errors import LocalEntryNotFoundError

    def offline(*args, **kwargs):
        raise LocalEntryNotFoundError("Cannot find the requested files in the disk cache")

    monkeypatch.setattr(faster_whisper_utils.huggingface_hub, "snapshot_download", offline)
    transcriber = create_transcriber(FASTER_WHISPER, "base.en", download_root=tmp_path)
    with pytest.raises(AsrUnavailable, match=r"faster-whisper model 'base.en'.*internet connection"):
        transcriber.load()
    empty_dir = tmp_path / "not-a-model"
    empty_dir.mkdir()
    with pytest.raises(AsrUnavailable, match="CTranslate2 Whisper model"):
        create_transcriber(FASTER_WHISPER, str(empty_dir)).load()


@pytest.mark.parametrize(
    ("typed", "code"),
    [
        ("", "en"),
        (None, "en"),
        ("English", "en"),
        ("en", "en"),
        (" DE ", "de"),
        ("german", "de"),
        ("auto", None),
    ],
)
def test_language_names_and_codes(typed, code):
    assert normalize_language(typed) == code


def test_unknown_language_name_is_refused():
    with pytest.raises(InvalidInput, match="'Klingonese' is not a language"):
        normalize_language("Klingonese")
