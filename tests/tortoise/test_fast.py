"""Fast mode end to end with the tiny golden models: one sampled row decoded by the HiFi-GAN decoder, the
stream of chunks while the AR decodes, refused options, cancellation and the missing-decoder error."""

import threading

import pytest
import torch

from tests.app_doubles import tiny_tts
from tortoise.api import TextToSpeech, TTSModels
from tortoise.download import ModelStore
from tortoise.errors import GenerationCancelled, InvalidInputError, ModelDownloadError
from tortoise.latents import ConditioningLatents
from tortoise.models import load
from tortoise.models.hifigan import frames_for_latents
from tortoise.streaming import StreamSettings
from tortoise.tokenizer import VoiceBpeTokenizer

TEXT = "Hello there, this is fast."
SMALL = StreamSettings(first_chunk_codes=6, chunk_codes=5, overlap_samples=256)


@pytest.fixture(scope="module")
def tts(tiny_models):
    return tiny_tts(tiny_models)


@pytest.fixture(scope="module")
def voice(tts):
    return tts.get_random_conditioning_latents(torch.Generator().manual_seed(3))


def samples_for(codes: int) -> int:
    return frames_for_latents(codes) * 256


def test_fast_tts_decodes_one_row_with_the_hifigan_decoder(tts, voice):
    result = tts.tts_fast(TEXT, conditioning_latents=voice, seed=5, max_mel_tokens=30)
    assert len(result.waveforms) == 1 and result.sample_rate == 24000
    codes = result.codes[0]
    assert result.waveforms[0].shape == (1, samples_for(codes.numel()))
    stop = tts.models.autoregressive.stop_mel_token
    assert (codes == stop).sum() <= 1 and (codes[-1] == stop or codes.numel() == 30)
    assert result.options.num_autoregressive_samples == 1
    assert {"autoregressive", "latent_pass", "decoder"} <= set(result.timings_s)
    again = tts.tts_fast(TEXT, conditioning_latents=voice, seed=5, max_mel_tokens=30)
    assert torch.equal(again.waveforms[0], result.waveforms[0])


def test_fast_tts_takes_presets_and_sampling_options(tts, voice):
    result = tts.tts_fast(TEXT, conditioning_latents=voice, preset="ultra_fast", seed=1, temperature=0.5,
                          max_mel_tokens=12)
    assert result.options.temperature == 0.5 and result.options.top_p == 0.8


@pytest.mark.parametrize(
    "option", [{"diffusion_iterations": 30}, {"cvvp_amount": 0.5}, {"num_autoregressive_samples": 4},
               {"sampler": "ddim"}, {"cond_free": False}, {"k": 2}]
)
def test_options_that_do_not_apply_are_refused(tts, voice, option):
    name = next(iter(option))
    with pytest.raises(InvalidInputError, match=f"Fast mode does not use .*{name}"):
        tts.tts_fast(TEXT, conditioning_latents=voice, **option)
    with pytest.raises(InvalidInputError, match="Fast mode does not use"):
        tts.tts_stream(TEXT, conditioning_latents=voice, **option)


def test_stream_yields_chunks_as_the_ar_decodes_and_keeps_every_sample(tts, voice):
    stream = tts.tts_stream(TEXT, conditioning_latents=voice, seed=5, max_mel_tokens=30, settings=SMALL)
    seen_codes = []
    chunks = []
    for chunk in stream:
        seen_codes.append(len(stream.codes))
        chunks.append(chunk)
    assert stream.is_complete
    n = len(stream.codes)
    assert torch.cat(chunks).numel() == samples_for(n)
    if n > SMALL.first_chunk_codes:
        assert seen_codes[0] == SMALL.first_chunk_codes  # the first chunk came before the AR was done
        assert len(chunks) >= 2
    # the same seed samples the same codes as the whole-clip fast mode
    whole = tts.tts_fast(TEXT, conditioning_latents=voice, seed=5, max_mel_tokens=30)
    assert whole.codes[0].tolist() == stream.codes


def test_stream_close_stops_the_ar_worker(tts, voice):
    before = {t.ident for t in threading.enumerate()}
    stream = tts.tts_stream(TEXT, conditioning_latents=voice, seed=2, max_mel_tokens=40, settings=SMALL)
    iterator = iter(stream)
    next(iterator)
    iterator.close()
    assert not any(t.name == "fast-ar" and t.ident not in before for t in threading.enumerate())
    assert not stream.is_complete


def test_cancelled_stream_raises_after_the_chunks_so_far(tts, voice):
    calls = []

    def cancel():
        calls.append(1)
        return len(calls) > 8

    stream = tts.tts_stream(TEXT, conditioning_latents=voice, seed=2, max_mel_tokens=40, settings=SMALL,
                            cancel=cancel)
    got = []
    with pytest.raises(GenerationCancelled):
        for chunk in stream:
            got.append(chunk)
    assert got and not stream.is_complete


@pytest.mark.parametrize("settings", [StreamSettings(chunk_codes=0), StreamSettings(first_chunk_codes=0),
                                      StreamSettings(chunk_codes=31)])
def test_chunk_sizes_outside_the_line_length_are_refused(tts, voice, settings):
    with pytest.raises(InvalidInputError, match="between 1 and 30"):
        tts.tts_stream(TEXT, conditioning_latents=voice, max_mel_tokens=30, settings=settings)


def test_brackets_cannot_be_cut_from_a_stream(tts, voice):
    with pytest.raises(InvalidInputError, match="Bracketed"):
        tts.tts_stream("[whispering] hello", conditioning_latents=voice)


def test_missing_decoder_offline_names_the_file_and_the_folder(tiny_models, tokenizer_path, tmp_path):
    m = tiny_models
    store = ModelStore(tmp_path / "models", offline=True)
    tts = TextToSpeech(
        TTSModels(m.autoregressive, m.diffusion, m.clvp, m.vocoder), VoiceBpeTokenizer(tokenizer_path),
        m.mel_norms, hifi_loader=lambda: load("hifidecoder", store.get("hifidecoder.pth")),
    )
    voice = ConditioningLatents(torch.zeros(1, 32), torch.zeros(1, 64), None, "zeros")
    with pytest.raises(ModelDownloadError) as e:
        tts.tts_fast(TEXT, conditioning_latents=voice)
    assert "hifidecoder.pth" in str(e.value) and str(tmp_path / "models") in str(e.value)



def test_on_a_cpu_the_ar_waits_between_steps_while_a_chunk_is_decoded():
    from tortoise.fast import DecoderFirst

    turns = DecoderFirst(enabled=True)
    order: list[str] = []
    waiting = threading.Event()

    def ar_step():
        waiting.set()
        turns.between_steps()
        order.append("ar step")

    with turns.decoding():
        worker = threading.Thread(target=ar_step)
        worker.start()
        assert waiting.wait(60)
        worker.join(0.2)  # still blocked: the chunk is being decoded
        order.append("decoded")
    worker.join(60)
    assert order == ["decoded", "ar step"]
    off = DecoderFirst(enabled=False)  # on a GPU the two overlap
    with off.decoding():
        off.between_steps()  # returns at once
