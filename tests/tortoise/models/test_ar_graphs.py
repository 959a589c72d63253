"""tortoise/models/ar_graphs.py: the static (graph-capturable) decode step on the CPU, its fallbacks, and
on CUDA (marker `gpu`, run with `./test.sh -m gpu`) graph replay, fp16 bounds and memory release."""

import copy
import logging

import pytest
import torch

from tortoise.models import ar_graphs, load
from tortoise.models.autoregressive import UnifiedVoice
from tortoise.sampling import make_code_sampler

SAMPLING = {"repetition_penalty": 2.0, "temperature": 0.8, "top_p": 0.8, "top_k": 50}


@pytest.fixture(scope="module")
def gold(golden):
    return golden("autoregressive.pt")


@pytest.fixture()
def model(gold):
    return load("autoregressive", gold["state_dict"], **gold["config"])


def inputs(gold, device="cpu"):
    return gold["inputs.generate.cond_latent"].to(device), gold["inputs.generate.text_tokens"].to(device)


def sampled(model, cond, text, seed, rows=4, length=30):
    torch.manual_seed(seed)
    sampler = make_code_sampler(start_token=model.start_mel_token, **SAMPLING)
    return model.inference_codes(cond, text, length, num_return_sequences=rows, next_code=sampler)


def test_static_step_decodes_the_golden_greedy_codes(model, gold):
    cond, text = inputs(gold)
    n = gold["inputs.generate.max_generate_length"]
    model.cuda_graphs = True
    codes = model.inference_codes(cond, text, n, min_new_tokens=gold["inputs.generate.min_new_tokens"])
    assert codes.tolist() == gold["outputs.generate.codes_kv_cache_true"].tolist()
    assert model._graph_runner is not None and not model._graph_runner.capture  # the CPU runs it uncaptured


def test_static_step_logits_equal_the_eager_ones(model, gold):
    cond, text = inputs(gold)
    seen = {}
    for graphs in (False, True):
        model.cuda_graphs = graphs
        logits = []

        def record(step_logits, codes, out=logits):
            out.append(step_logits.clone())
            return step_logits.argmax(-1)

        model.inference_codes(cond, text, 16, num_return_sequences=2, next_code=record)
        seen[graphs] = torch.stack(logits)
    torch.testing.assert_close(seen[True], seen[False], atol=1e-5, rtol=1e-5)


def test_static_step_samples_the_same_codes_as_eager(model, gold):
    cond, text = inputs(gold)
    model.cuda_graphs = False
    want = sampled(model, cond, text, seed=4)
    model.cuda_graphs = True
    assert sampled(model, cond, text, seed=4).tolist() == want.tolist()


def test_a_decode_longer_than_the_static_cache_runs_eagerly(model, gold):
    cond, text = inputs(gold)
    model.cuda_graphs = True
    assert ar_graphs.graph_steps(model, cond, text, 1, ar_graphs.capacity_of(model), True) is None


def test_converted_weights_make_the_graphs_stale(model):
    runner = ar_graphs.graph_runner(model)
    runner.state_for(2)
    assert ar_graphs.graph_runner(model) is runner
    model.to(torch.bfloat16)
    fresh = ar_graphs.graph_runner(model)
    assert fresh is not runner and not runner.states
    ar_graphs.release_graphs(model)
    assert model._graph_runner is None


@pytest.mark.parametrize("failure", ["no cuda", "out of memory"])
def test_a_failing_capture_falls_back_to_eager_with_a_note(model, gold, monkeypatch, caplog, failure):
    """Capturing on a machine without CUDA fails for real; an OOM is simulated. Both decode eagerly."""
    cond, text = inputs(gold)
    want = model.inference_codes(cond, text, 12, num_return_sequences=2)
    model.cuda_graphs = True
    ar_graphs.graph_runner(model).capture = True  # as on a GPU: capture every window on first use
    if failure == "out of memory":

        def out_of_memory(self, state, window):
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

        monkeypatch.setattr(ar_graphs.GraphRunner, "_capture", out_of_memory)
    with caplog.at_level(logging.WARNING, logger="tortoise.models.ar_graphs"):
        got = model.inference_codes(cond, text, 12, num_return_sequences=2)
        again = model.inference_codes(cond, text, 12, num_return_sequences=2)
    assert got.tolist() == want.tolist() == again.tolist()
    assert caplog.text.count("decoding without graphs") == 1
    assert model._graphs_failed and model._graph_runner is None


# ---------------------------------------------------------------- CUDA only


cuda = pytest.mark.gpu


def _require_cuda():
    if not torch.cuda.is_available():
        pytest.fail("the gpu tests need a CUDA device (deselect them with -m 'not gpu')")


@cuda
def test_graph_replay_equals_eager_decoding_on_cuda(gold):
    _require_cuda()
    base = load("autoregressive", gold["state_dict"], **gold["config"]).cuda().eval()
    cond, text = inputs(gold, "cuda")
    eager = sampled(base, cond, text, seed=9)
    greedy = base.inference_codes(cond, text, 16)
    graphed = copy.deepcopy(base)
    graphed.cuda_graphs = True
    assert graphed.inference_codes(cond, text, 16).tolist() == greedy.tolist()
    assert graphed._graph_runner.capture and graphed._graph_runner.states[1].graphs
    assert sampled(graphed, cond, text, seed=9).tolist() == eager.tolist()
    assert sampled(graphed, cond, text, seed=9).tolist() == eager.tolist()  # replayed, not recaptured


@cuda
def test_fp16_logits_stay_within_bound_at_full_size():
    """Full-size random weights, fp16 weights and cache, graph-captured: relative L2 error of the step
    logits against fp32 below FP16_LOGITS_BOUND over 32 steps; seeded fp16 runs repeat exactly."""
    _require_cuda()
    bound = 0.02
    torch.manual_seed(0)
    fp32 = UnifiedVoice().cuda().eval()
    fp16 = copy.deepcopy(fp32).half()
    fp16.cuda_graphs = True
    cond = torch.randn(1, 1024, device="cuda")
    text = torch.randint(1, 255, (1, 40), device="cuda")
    text[:, -1] = 0

    def logits_of(model):
        out = []
        model.inference_codes(cond.to(model.dtype), text, 32, num_return_sequences=2,
                              next_code=lambda lg, codes: (out.append(lg.float().clone()), lg.argmax(-1))[1],
                              min_new_tokens=32)
        return torch.stack(out)

    want, got = logits_of(fp32), logits_of(fp16)
    rel = (got[:4] - want[:4]).norm() / want[:4].norm()  # the first steps share the same history
    assert rel < bound, f"fp16 logits relative error {rel:.4f}"
    a = sampled(fp16, cond.half(), text, seed=3, rows=4, length=48)
    b = sampled(fp16, cond.half(), text, seed=3, rows=4, length=48)
    assert torch.equal(a, b)


@cuda
def test_unloading_releases_the_graph_memory(tiny_models):
    _require_cuda()
    from src.engine import TTSEngine
    from tests.conftest import REFERENCE_DIR
    from tortoise.api import TextToSpeech, TTSModels
    from tortoise.device import resolve_device
    from tortoise.tokenizer import VoiceBpeTokenizer

    torch.cuda.synchronize()
    baseline = torch.cuda.memory_allocated()
    m = tiny_models

    def loader():
        models = TTSModels(
            *(copy.deepcopy(x) for x in (m.autoregressive, m.diffusion, m.clvp, m.vocoder)),
            rlg_auto=copy.deepcopy(m.rlg_auto), rlg_diffuser=copy.deepcopy(m.rlg_diffuser),
        )
        return TextToSpeech(models, VoiceBpeTokenizer(REFERENCE_DIR / "tokenizer.json"), m.mel_norms,
                            resolve_device("cuda", half=True), aligner=object())

    engine = TTSEngine(loader)
    latents = engine.get().get_random_conditioning_latents(torch.Generator().manual_seed(0))
    with engine.job(half=True) as tts:
        tts.tts("Hello there.", conditioning_latents=latents, preset="ultra_fast", seed=1,
                num_autoregressive_samples=2, max_mel_tokens=16, diffusion_iterations=2)
        assert tts.models.autoregressive._graph_runner.states  # graphs were captured
    del tts
    assert torch.cuda.memory_allocated() > baseline
    engine.unload()
    torch.cuda.synchronize()
    assert torch.cuda.memory_allocated() <= baseline + 1024**2
