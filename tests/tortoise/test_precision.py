"""tortoise/precision.py through TextToSpeech and the app's engine: the Half switch stores bf16 AR weights
on the CPU without a second copy and gets the exact fp32 weights back; and the decode-memory guard."""

import copy
import gc
import logging
import warnings

import pytest
import torch

from src.engine import TTSEngine
from tests.app_doubles import tiny_tts
from tortoise import device as device_module
from tortoise.api import TextToSpeech, TTSModels
from tortoise.device import Backends, DevicePlan, check_batch_fits, resolve_device
from tortoise.errors import InvalidInputError
from tortoise.models.autoregressive import UnifiedVoice
from tortoise.tokenizer import VoiceBpeTokenizer

SMALL = dict(num_autoregressive_samples=2, diffusion_iterations=2, max_mel_tokens=12, sample_batch_size=2)
CODES = 8195  # a code vocabulary no other test model has, so this AR's tensors can be found by shape


def fresh_ar():
    torch.manual_seed(7)
    return UnifiedVoice(
        layers=2, model_dim=32, heads=4, max_text_tokens=120, max_mel_tokens=40, number_mel_codes=CODES
    )


def fp32_tensors_shaped(shape):
    with warnings.catch_warnings():  # isinstance() touches deprecated torch objects among all of them
        warnings.simplefilter("ignore", FutureWarning)
        found = []
        for o in gc.get_objects():
            try:
                if isinstance(o, torch.Tensor) and o.dtype == torch.float32:
                    if tuple(o.shape) == tuple(shape):
                        found.append(o)
            except ReferenceError:  # a weak proxy whose object is gone (left by other tests)
                continue
        return found


@pytest.fixture()
def bf16_cpu(monkeypatch):
    """This machine's CPU has no bf16 instructions; pretend it has (the conversion itself is real)."""
    monkeypatch.setattr(device_module, "cpu_supports_bf16", lambda: True)


def make_tts(tiny_models, tokenizer_path, loads):
    def load_ar():
        loads.append("autoregressive")
        return fresh_ar()

    m = tiny_models
    models = TTSModels(
        fresh_ar(), m.diffusion, m.clvp, m.vocoder, rlg_auto=m.rlg_auto, rlg_diffuser=m.rlg_diffuser
    )
    return TextToSpeech(models, VoiceBpeTokenizer(tokenizer_path), m.mel_norms, resolve_device("cpu"),
                        aligner=object(), model_loaders={"autoregressive": load_ar})


def test_half_switch_on_cpu_gives_bf16_weights_and_no_second_copy(tiny_models, tokenizer_path, bf16_cpu):
    loads = []
    tts = make_tts(tiny_models, tokenizer_path, loads)
    engine = TTSEngine(lambda: tts)
    latents = tts.get_random_conditioning_latents(torch.Generator().manual_seed(0))
    want = tts.tts("Half switch.", conditioning_latents=latents, seed=5, **SMALL).codes
    ar = tts.models.autoregressive
    head_shape = ar.mel_head.weight.shape
    assert len(fp32_tensors_shaped(head_shape)) >= 1

    with engine.job(half=True) as job:
        assert job.plan.half and job.plan.weights_dtype == torch.bfloat16
        assert {p.dtype for p in job.models.autoregressive.parameters()} == {torch.bfloat16}
        assert job.models.autoregressive is ar  # converted in place
        gc.collect()
        assert fp32_tensors_shaped(head_shape) == [], "an fp32 copy of the AR weights is still alive"
        result = job.tts("Half switch.", conditioning_latents=latents, seed=5, **SMALL)
        assert torch.isfinite(result.waveforms[0]).all()
    assert tts.plan.half  # kept for the next job: converting back costs a reload

    with engine.job(half=False) as job:
        assert loads == ["autoregressive"]  # the exact fp32 weights come back from the checkpoint
        assert {p.dtype for p in job.models.autoregressive.parameters()} == {torch.float32}
        again = job.tts("Half switch.", conditioning_latents=latents, seed=5, **SMALL).codes
    assert torch.equal(again, want)


def test_without_a_loader_fp32_comes_back_upcast_with_a_warning(
    tiny_models, tokenizer_path, bf16_cpu, caplog
):
    tts = make_tts(tiny_models, tokenizer_path, [])
    tts.model_loaders.clear()
    tts.set_half(True)
    with caplog.at_level(logging.WARNING, logger="tortoise.precision"):
        tts.set_half(False)
    assert tts.models.autoregressive.dtype == torch.float32
    assert "keeps its half-precision rounding" in caplog.text


def test_half_switch_is_a_no_op_where_the_cpu_has_no_bf16(tiny_models, tokenizer_path, monkeypatch):
    monkeypatch.setattr(device_module, "cpu_supports_bf16", lambda: False)
    tts = make_tts(tiny_models, tokenizer_path, [])
    tts.set_half(True)
    assert not tts.plan.half and tts.models.autoregressive.dtype == torch.float32


def test_without_bf16_instructions_half_is_for_fast_mode_only(tiny_models, tokenizer_path, monkeypatch):
    """Fast mode decodes one row, where bf16 weights pay even when emulated; the standard mode then gets
    its exact fp32 weights back (a reload), since its batches of candidates are faster in fp32."""
    monkeypatch.setattr(device_module, "cpu_supports_bf16", lambda: False)
    loads = []
    tts = make_tts(tiny_models, tokenizer_path, loads)
    engine = TTSEngine(lambda: tts)
    with engine.job(half=True, few_rows=True) as job:
        assert job.plan.half and job.models.autoregressive.dtype == torch.bfloat16
        latents = job.get_random_conditioning_latents(torch.Generator().manual_seed(0))
        codes = job.models.autoregressive.inference_codes(
            latents.autoregressive.to(torch.bfloat16), job.encode_text("One row."), 8,
            num_return_sequences=1, use_kv_cache=True,
        )  # fmt: skip
        assert codes.shape[0] == 1
    with engine.job(half=True) as job:  # the standard mode: fp32 again
        assert not job.plan.half and job.models.autoregressive.dtype == torch.float32
    assert loads == ["autoregressive"]


# ---------------------------------------------------------------- memory guard


def test_full_size_estimate_matches_the_kv_cache_arithmetic():
    with torch.device("meta"):
        ar = UnifiedVoice()
    per_row, shared = ar.decode_memory_bytes(100, 500, cuda_graphs=True)
    kv = 2 * 30 * 1024 * 1024 * 4  # every position the graph path allocates (1011, in whole windows), fp32
    assert kv <= per_row <= kv * 1.05 and abs(kv / 2**20 - 240) < 1
    eager, _ = ar.decode_memory_bytes(100, 500)
    assert eager < per_row and shared == 2 * 30 * 1024 * 100 * 4


def test_512_rows_on_a_small_gpu_are_refused_with_the_estimate():
    with torch.device("meta"):
        ar = UnifiedVoice()
    per_row, shared = ar.decode_memory_bytes(100, 500, cuda_graphs=True)
    small_gpu = Backends(cuda_count=lambda: 1, cuda_free_bytes=lambda index: 8 * 2**30)
    plan = DevicePlan(torch.device("cuda", 0), "cuda")
    with pytest.raises(InvalidInputError) as error:
        check_batch_fits(plan, 512, per_row, shared, small_gpu)
    message = str(error.value)
    assert "sample_batch_size 512" in message and f"{(shared + 512 * per_row) / 2**30:.2f} GiB" in message
    assert "8.00 GiB free" in message and f"{(8 * 2**30 - shared) // per_row} or less" in message
    check_batch_fits(plan, 16, per_row, shared, small_gpu)  # 16 rows fit in 8 GiB


def test_tts_refuses_a_batch_that_cannot_fit_before_decoding(tiny_models):
    tts = tiny_tts(tiny_models)
    tts.backends = Backends(cpu_free_bytes=lambda: 2**20)  # 1 MiB free
    stages = []
    latents = tts.get_random_conditioning_latents(torch.Generator().manual_seed(0))
    with pytest.raises(InvalidInputError, match=r"sample_batch_size 512 needs about .* GiB"):
        tts.tts("Too many rows.", conditioning_latents=latents, seed=1, num_autoregressive_samples=512,
                sample_batch_size=512, max_mel_tokens=12, progress=lambda s, d, t: stages.append(s))
    assert "autoregressive" not in stages
    tts.backends = Backends(cpu_free_bytes=lambda: None)  # unknown free memory: no guard
    tts.tts("Fits.", conditioning_latents=latents, seed=1, **SMALL)


def test_precision_of_a_model_copy_is_independent(tiny_models, tokenizer_path, bf16_cpu):
    """Converting one TextToSpeech never touches models another one shares (tests rely on it)."""
    shared = copy.deepcopy(tiny_models.autoregressive)
    before = {k: v.clone() for k, v in shared.state_dict().items()}
    tts = make_tts(tiny_models, tokenizer_path, [])
    tts.set_half(True)
    assert all(torch.equal(before[k], v) for k, v in shared.state_dict().items())


# ---------------------------------------------------------------- diffusion and vocoder in half precision

HALF_BOUND = 1e-2  # relative L2 error against fp32 (CPU fp16, tiny golden models: 1.7e-3 and 5.6e-4)


def relative_error(got, want):
    return float((got.float() - want).norm() / want.norm())


@torch.no_grad()
def test_fp16_diffusion_and_vocoder_stay_within_the_bound(golden):
    from tortoise.models import load

    g = golden("diffusion.pt")
    diffusion = load("diffusion_decoder", g["state_dict"], **g["config"])
    x, t = g["inputs.forward.x"], g["inputs.forward.timesteps"]
    emb = g["outputs.timestep_independent"]
    want = diffusion(x, t, precomputed_aligned_embeddings=emb)
    got = copy.deepcopy(diffusion).half()(x, t, precomputed_aligned_embeddings=emb)
    assert got.dtype == torch.float16 and relative_error(got, want) < HALF_BOUND

    v = golden("vocoder.pt")
    vocoder = load("vocoder", v["state_dict"], **v["config"])
    mel = v["inputs.mel"]
    seeded = torch.Generator().manual_seed(0)
    noise = torch.randn(mel.shape[0], vocoder.noise_dim, mel.shape[-1] + 10, generator=seeded)
    want = vocoder.inference(mel, noise=noise)
    got = copy.deepcopy(vocoder).half().inference(mel.half(), noise=noise)
    assert relative_error(got, want) < HALF_BOUND


def test_a_pipeline_with_fp16_diffusion_and_vocoder_renders(tiny_models, tokenizer_path):
    """The CUDA half layout (fp16 diffusion and vocoder weights) through tts(), here on the CPU."""
    m = tiny_models
    models = TTSModels(copy.deepcopy(m.autoregressive), copy.deepcopy(m.diffusion).half(), m.clvp,
                       copy.deepcopy(m.vocoder).half(), rlg_auto=m.rlg_auto, rlg_diffuser=m.rlg_diffuser)
    tts = TextToSpeech(models, VoiceBpeTokenizer(tokenizer_path), m.mel_norms, resolve_device("cpu"),
                       aligner=object())
    latents = tts.get_random_conditioning_latents(torch.Generator().manual_seed(0))
    result = tts.tts("Half diffusion.", conditioning_latents=latents, seed=2, cond_free=True, **SMALL)
    wav = result.waveforms[0]
    assert wav.dtype == torch.float32 and torch.isfinite(wav).all() and wav.shape[1] > 0


@pytest.mark.gpu
@torch.no_grad()
def test_full_size_fp16_diffusion_and_vocoder_stay_within_the_bound_on_cuda():
    if not torch.cuda.is_available():
        pytest.fail("the gpu tests need a CUDA device (deselect them with -m 'not gpu')")
    from tortoise.models import build

    torch.manual_seed(0)
    diffusion = build("diffusion_decoder").cuda()
    x = torch.randn(2, 100, 200, device="cuda")
    t = torch.tensor([3999, 3999], device="cuda")
    emb = diffusion.timestep_independent(torch.randn(1, 50, 1024, device="cuda"),
                                         torch.randn(1, 2048, device="cuda"), 200)
    unconditioned = torch.tensor([False, True], device="cuda")
    want = diffusion(x, t, precomputed_aligned_embeddings=emb, conditioning_free=unconditioned)
    half = copy.deepcopy(diffusion).half()
    got = half(x, t, precomputed_aligned_embeddings=emb.half(), conditioning_free=unconditioned)
    assert relative_error(got, want) < 2 * HALF_BOUND
    vocoder = build("vocoder").cuda()
    vocoder.prepare_for_inference()
    mel = torch.randn(1, 100, 200, device="cuda") - 4
    noise = torch.randn(1, vocoder.noise_dim, 210)
    want = vocoder.inference(mel, noise=noise)
    got = copy.deepcopy(vocoder).half().inference(mel.half(), noise=noise)
    assert relative_error(got, want) < 2 * HALF_BOUND
