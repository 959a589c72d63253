"""TextToSpeech end to end with the tiny golden models: text + clips -> 24 kHz audio, seeds, presets,
samplers, ranking, progress/cancel, and every bad input of the issue."""

import pytest
import soundfile as sf
import torch

from tests.app_doubles import tiny_tts
from tests.conftest import speech_like
from tortoise.api import TextToSpeech, TTSModels
from tortoise.audio import save_wav
from tortoise.device import resolve_device
from tortoise.errors import GenerationCancelled, InvalidInputError, TextTooLongError
from tortoise.latents import ConditioningLatents
from tortoise.options import PRESETS, SAMPLERS
from tortoise.tokenizer import VoiceBpeTokenizer

FAST = dict(num_autoregressive_samples=4, diffusion_iterations=4, max_mel_tokens=24, sample_batch_size=2)


class FakeAligner:
    def __init__(self):
        self.calls = []

    def redact(self, audio, text, sample_rate):
        self.calls.append(text)
        return audio[:, : audio.shape[1] // 2]


@pytest.fixture(scope="module")
def tts(tiny_models):
    model = tiny_tts(tiny_models)
    model.aligner = FakeAligner()  # records calls and halves the audio, so redaction is visible
    return model


@pytest.fixture(scope="module")
def clips():
    return [speech_like(2.0, seed=11), speech_like(3.0, seed=12)]


def test_end_to_end_writes_a_24khz_wav_and_same_seed_same_audio(tts, clips, tmp_path):
    a = tts.tts("Hello there.", voice_samples=clips, seed=1234, **FAST)
    b = tts.tts("Hello there.", voice_samples=clips, seed=1234, **FAST)
    assert a.seed == 1234 and a.sample_rate == 24000
    assert len(a.waveforms) == 1 and a.waveforms[0].shape[0] == 1 and a.waveforms[0].shape[1] > 0
    torch.testing.assert_close(a.waveforms[0], b.waveforms[0], rtol=0, atol=0)
    save_wav(tmp_path / "out.wav", a.waveforms[0], a.sample_rate)
    info = sf.info(tmp_path / "out.wav")
    assert info.samplerate == 24000 and info.channels == 1 and info.frames == a.waveforms[0].shape[1]
    c = tts.tts("Hello there.", voice_samples=clips, seed=99, **FAST)
    assert not torch.equal(a.codes, c.codes) or not torch.equal(a.waveforms[0], c.waveforms[0])


def test_seed_is_drawn_and_reported_when_not_given(tts, clips):
    r = tts.tts("Hi.", voice_samples=clips, **FAST)
    again = tts.tts("Hi.", voice_samples=clips, seed=r.seed, **FAST)
    torch.testing.assert_close(r.waveforms[0], again.waveforms[0], rtol=0, atol=0)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_runs_with_its_settings(tts, clips, preset):
    r = tts.tts(
        "Preset test.",
        voice_samples=clips,
        preset=preset,
        seed=3,
        max_mel_tokens=12,
        sample_batch_size=8,
        diffusion_iterations=8,
    )
    assert r.options.num_autoregressive_samples == PRESETS[preset]["num_autoregressive_samples"]
    assert r.options.cond_free == PRESETS[preset].get("cond_free", True)
    assert torch.isfinite(r.waveforms[0]).all()


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_every_sampler_runs(tts, clips, sampler):
    r = tts.tts("Sampler test.", voice_samples=clips, seed=4, sampler=sampler, **FAST)
    assert r.options.sampler == sampler and torch.isfinite(r.waveforms[0]).all()


def test_k_candidates_come_back_best_first(tts, clips):
    r = tts.tts(
        "Three candidates.", voice_samples=clips, seed=5, k=3, **{**FAST, "num_autoregressive_samples": 6}
    )
    assert len(r.waveforms) == 3 and r.codes.shape[0] == 3


def test_cvvp_weight_applies_with_clip_mels_and_is_explained_when_slim(tts, clips):
    full = tts.get_conditioning_latents(clips, slim=False)
    r = tts.tts("Rank with CVVP.", conditioning_latents=full, seed=6, cvvp_amount=0.5, k=2, **FAST)
    assert not any("CVVP" in n for n in r.notes)
    slim = tts.tts("Rank with CVVP.", conditioning_latents=full.slim(), seed=6, cvvp_amount=0.5, **FAST)
    assert any("slim" in n for n in slim.notes)


def test_random_voice_and_precomputed_latents(tts, clips):
    r = tts.tts("Random voice.", seed=7, **FAST)
    assert r.waveforms[0].numel() > 0
    lat = tts.get_conditioning_latents(clips)
    a = tts.tts("Cached latents.", conditioning_latents=lat, seed=8, **FAST)
    b = tts.tts("Cached latents.", voice_samples=clips, seed=8, **FAST)
    torch.testing.assert_close(a.waveforms[0], b.waveforms[0])


def test_progress_reports_every_stage(tts, clips):
    seen = []
    tts.tts("Progress.", voice_samples=clips, seed=9, progress=lambda s, d, t: seen.append((s, d, t)), **FAST)
    stages = {s for s, _, _ in seen}
    assert {"latents", "autoregressive", "ranking", "latent_pass", "diffusion", "vocoder"} <= stages
    diffusion = [(d, t) for s, d, t in seen if s == "diffusion"]
    assert diffusion[-1][0] == diffusion[-1][1]


def test_cancel_stops_the_job(tts, clips):
    with pytest.raises(GenerationCancelled):
        tts.tts("Cancel me.", voice_samples=clips, seed=10, cancel=lambda: True, **FAST)


def test_bracketed_text_is_redacted(tts, clips):
    tts.aligner.calls.clear()
    r = tts.tts("[I am really happy,] Hello.", voice_samples=clips, seed=11, **FAST)
    plain = tts.tts(
        "[I am really happy,] Hello.", voice_samples=clips, seed=11, enable_redaction=False, **FAST
    )
    assert tts.aligner.calls == ["[I am really happy,] Hello."]
    assert r.waveforms[0].shape[1] < plain.waveforms[0].shape[1]


def test_trimmed_latent_pass_equals_the_full_official_pass(tiny_models):
    ar = tiny_models.autoregressive
    torch.manual_seed(0)
    cond = torch.randn(1, ar.model_dim)
    text = torch.tensor([[20, 30, 40, 0]])
    codes = torch.randint(0, 8000, (2, 40))
    full = ar(
        cond.expand(2, -1),
        text.expand(2, -1),
        torch.tensor([4, 4]),
        codes,
        torch.tensor([40 * 1024] * 2),
        return_latent=True,
        clip_inputs=False,
    )
    part = ar(
        cond.expand(2, -1),
        text.expand(2, -1),
        torch.tensor([4, 4]),
        codes[:, :25],
        torch.tensor([25 * 1024] * 2),
        return_latent=True,
        clip_inputs=False,
    )
    torch.testing.assert_close(part, full[:, :25], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("text", "error", "match"),
    [
        ("", InvalidInputError, "empty"),
        ("   ", InvalidInputError, "empty"),
        ("[only brackets]", InvalidInputError, "nothing would be spoken"),
        ("unbalanced [bracket", InvalidInputError, "\\["),
        ("unbalanced] bracket", InvalidInputError, "\\]"),
        ("[nested [brackets]]", InvalidInputError, "[Nn]ested"),
        ("word " * 60, TextTooLongError, "Split it"),
    ],
)
def test_bad_text_is_refused_clearly(tts, clips, text, error, match):
    with pytest.raises(error, match=match):
        tts.tts(text, voice_samples=clips, **FAST)


def test_bad_options_are_refused_clearly(tts, clips):
    with pytest.raises(InvalidInputError, match="Unknown preset"):
        tts.tts("Hi.", voice_samples=clips, preset="ludicrous")
    with pytest.raises(InvalidInputError, match="Unknown sampler"):
        tts.tts("Hi.", voice_samples=clips, sampler="euler", **{k: v for k, v in FAST.items()})
    with pytest.raises(InvalidInputError, match="Unknown generation option"):
        tts.tts("Hi.", voice_samples=clips, not_a_knob=1)


def test_voice_problems_are_refused_clearly(tts):
    with pytest.raises(InvalidInputError, match="Clip 1 is 0.05 s"):
        tts.tts("Hi.", voice_samples=[speech_like(0.05)], **FAST)


def test_corrupt_latents_never_load(tmp_path):
    bad = tmp_path / "cond_latents.pth"
    bad.write_bytes(b"\x80\x04garbage")
    with pytest.raises(Exception, match="Cannot read latents"):
        ConditioningLatents.load(bad)


def test_from_dir_offline_lists_the_missing_files(tmp_path):
    from tortoise.errors import ModelDownloadError

    with pytest.raises(ModelDownloadError) as e:
        TextToSpeech.from_dir(tmp_path / "models", offline=True)
    for name in ("autoregressive.pth", "diffusion_decoder.pth", "clvp2.pth", "vocoder.pth", "tokenizer.json"):
        assert name in str(e.value)


def test_cpu_half_precision_runs_the_ar_in_bf16(tiny_models, tokenizer_path, clips):
    import copy

    from tortoise.device import DevicePlan

    m = tiny_models
    models = TTSModels(copy.deepcopy(m.autoregressive), m.diffusion, m.clvp, m.vocoder)
    tts = TextToSpeech(
        models,
        VoiceBpeTokenizer(tokenizer_path),
        m.mel_norms,
        DevicePlan(torch.device("cpu"), "cpu", half=True),
    )
    assert models.autoregressive.mel_head.weight.dtype == torch.bfloat16
    latents = tts.get_conditioning_latents(clips)
    assert latents.autoregressive.dtype == torch.float32
    r = tts.tts("Half precision.", conditioning_latents=latents, seed=3, **FAST)
    assert torch.isfinite(r.waveforms[0]).all() and r.waveforms[0].shape[1] > 0


def test_random_voice_models_load_on_first_use(tiny_models, tokenizer_path):
    m = tiny_models
    loads = []

    def load_rlg():
        loads.append(1)
        return m.rlg_auto, m.rlg_diffuser

    tts = TextToSpeech(
        TTSModels(m.autoregressive, m.diffusion, m.clvp, m.vocoder),
        VoiceBpeTokenizer(tokenizer_path), m.mel_norms, resolve_device("cpu"), rlg_loader=load_rlg,
    )
    assert loads == []
    first = tts.get_random_conditioning_latents()
    tts.get_random_conditioning_latents()
    assert loads == [1] and first.method == "random"
    bare = TextToSpeech(TTSModels(m.autoregressive, m.diffusion, m.clvp, m.vocoder),
                        VoiceBpeTokenizer(tokenizer_path), m.mel_norms, resolve_device("cpu"))
    with pytest.raises(InvalidInputError, match="random voice"):
        bare.get_random_conditioning_latents()


def test_from_dir_loads_checkpoints_from_disk_and_generates(tmp_path, reference_dir, golden, clips):
    import shutil

    models_dir = tmp_path / "models"
    models_dir.mkdir()
    configs = {}
    for name, file in (("autoregressive", "autoregressive.pt"), ("diffusion_decoder", "diffusion.pt"),
                       ("clvp2", "clvp.pt"), ("vocoder", "vocoder.pt"), ("cvvp", "cvvp.pt")):
        g = golden(file)
        configs[name] = g["config"]
        state = {"model_g": g["state_dict"]} if name == "vocoder" else g["state_dict"]
        torch.save(state, models_dir / f"{name}.pth")  # registry names are the file names
    for asset in ("tokenizer.json", "mel_norms.pth"):
        shutil.copy(reference_dir / asset, models_dir / asset)
    tts = TextToSpeech.from_dir(models_dir, device="cpu", offline=True, model_configs=configs)
    assert tts.model_name == "autoregressive" and len(tts.model_hash) == 8
    result = tts.tts("Loaded from disk.", voice_samples=clips, seed=2, cvvp_amount=0.5,
                     enable_redaction=False, **FAST)
    assert not any("CVVP" in n for n in result.notes) and torch.isfinite(result.waveforms[0]).all()


def test_text_with_nothing_speakable_is_refused_and_other_scripts_are_read(tts):
    with pytest.raises(InvalidInputError, match="Nothing in the text can be spoken"):
        tts.encode_text("😀🎉")
    assert tts.encode_text("שלום").shape[1] > 1  # transliterated, not refused
    assert tts.count_text_tokens("Hello there.") + 1 == tts.encode_text("Hello there.").shape[1]
