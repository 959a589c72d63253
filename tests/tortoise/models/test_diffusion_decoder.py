"""DiffusionTts against the official golden outputs of a tiny seeded model (golden/diffusion.pt)."""

import math

import pytest
import torch

from tortoise.diffusion import SpacedDiffusion, sample
from tortoise.mel import denormalize_tacotron_mel
from tortoise.models import load
from tortoise.models.diffusion_decoder import DiffusionTts, timestep_embedding

# golden/README.md: cond_latent, timestep_independent and the forwards, atol 1e-4; anything after sampler
# arithmetic 2e-3, since x0 = (x_t - sqrt(1 - abar) * eps) / sqrt(abar) amplifies epsilon errors ~150x
MODEL_ATOL = 1e-4
SAMPLER_ATOL = 2e-3
SAMPLER_STEPS = 4
SAMPLER_SEED = 54  # torch.manual_seed before the official do_spectrogram_diffusion call
GUIDANCE = ["plain", "cond_free"]


@pytest.fixture(scope="module")
def diffusion_golden(golden):
    return golden("diffusion.pt")


@pytest.fixture(scope="module")
def model(diffusion_golden):
    return load("diffusion_decoder", diffusion_golden["state_dict"], **diffusion_golden["config"])


def assert_close(got, want, atol=MODEL_ATOL):
    assert got.shape == want.shape
    err = (got.double() - want.double()).abs().max().item()
    assert err <= atol, f"max abs error {err:.3g} > {atol:.3g}"


@torch.no_grad()
def test_get_conditioning_averages_all_clips(model, diffusion_golden):
    cond = model.get_conditioning(diffusion_golden["inputs.cond_mels"])
    assert_close(cond, diffusion_golden["outputs.cond_latent"])


@torch.no_grad()
def test_get_conditioning_accepts_a_single_clip_without_clip_axis(model, diffusion_golden):
    clip = diffusion_golden["inputs.cond_mels"][:, 0]  # (1, 100, 94)
    torch.testing.assert_close(model.get_conditioning(clip), model.get_conditioning(clip.unsqueeze(1)))


@torch.no_grad()
def test_timestep_independent(model, diffusion_golden):
    g = diffusion_golden
    cond, seq_len = g["outputs.cond_latent"], g["inputs.expected_seq_len"]
    emb = model.timestep_independent(g["inputs.latents"], cond, seq_len)
    assert_close(emb, g["outputs.timestep_independent"])


@torch.no_grad()
def test_timestep_independent_code_prediction(model, diffusion_golden):
    g = diffusion_golden
    emb, mel_pred = model.timestep_independent(
        g["inputs.latents"], g["outputs.cond_latent"], g["inputs.expected_seq_len"], return_code_pred=True
    )
    assert_close(emb, g["outputs.timestep_independent"])
    assert_close(mel_pred, g["outputs.timestep_independent_mel_pred"])


@torch.no_grad()
@pytest.mark.parametrize("conditioning_free", [False, True], ids=["conditioned", "conditioning_free"])
def test_forward_with_precomputed_embeddings(model, diffusion_golden, conditioning_free):
    g = diffusion_golden
    x = g["inputs.forward.x"]
    out = model(
        x,
        g["inputs.forward.timesteps"],
        precomputed_aligned_embeddings=g["outputs.timestep_independent"].repeat(x.shape[0], 1, 1),
        conditioning_free=conditioning_free,
    )
    key = "outputs.forward_conditioning_free" if conditioning_free else "outputs.forward"
    assert_close(out, g[key])


@torch.no_grad()
def test_forward_direct_path_matches_precomputed(model, diffusion_golden):
    g = diffusion_golden
    out = model(
        g["inputs.forward.x"][:1],
        g["inputs.forward.timesteps"][:1],
        aligned_conditioning=g["inputs.latents"],
        conditioning_latent=g["outputs.cond_latent"],
    )
    assert_close(out, g["outputs.forward_direct_first"])


@torch.no_grad()
def test_forward_direct_path_can_return_code_prediction(model, diffusion_golden):
    g = diffusion_golden
    out, mel_pred = model(
        g["inputs.forward.x"][:1],
        g["inputs.forward.timesteps"][:1],
        aligned_conditioning=g["inputs.latents"],
        conditioning_latent=g["outputs.cond_latent"],
        return_code_pred=True,
    )
    assert_close(out, g["outputs.forward_direct_first"])
    assert_close(mel_pred, g["outputs.timestep_independent_mel_pred"])


@torch.no_grad()
def test_conditioning_free_needs_no_conditioning_and_ignores_it(model, diffusion_golden):
    g = diffusion_golden
    x, t = g["inputs.forward.x"][:2], g["inputs.forward.timesteps"][:2]
    bare = model(x, t, conditioning_free=True)
    with_emb = model(x, t, precomputed_aligned_embeddings=torch.randn(2, 32, 52), conditioning_free=True)
    torch.testing.assert_close(bare, with_emb, rtol=0, atol=0)


def test_forward_rejects_missing_or_conflicting_conditioning(model, diffusion_golden):
    g = diffusion_golden
    x, t = g["inputs.forward.x"][:1], g["inputs.forward.timesteps"][:1]
    with pytest.raises(ValueError, match="precomputed_aligned_embeddings"):
        model(x, t, aligned_conditioning=g["inputs.latents"])
    with pytest.raises(ValueError, match="return_code_pred"):
        model(x, t, precomputed_aligned_embeddings=g["outputs.timestep_independent"], return_code_pred=True)


def test_timestep_embedding_is_cos_then_sin():
    t = torch.tensor([0, 7, 3999])
    emb = timestep_embedding(t, 8)
    freqs = torch.tensor([math.exp(-math.log(10000) * i / 4) for i in range(4)])
    args = t[:, None].double() * freqs[None].double()
    # float32 arguments near 400 rad carry ~3e-5 of rounding
    torch.testing.assert_close(emb.double(), torch.cat([args.cos(), args.sin()], dim=-1), rtol=0, atol=1e-4)
    assert timestep_embedding(t, 9).shape == (3, 9)
    assert (timestep_embedding(t, 9)[:, -1] == 0).all()


@torch.no_grad()
def test_token_conditioning_path_runs(model):
    codes = torch.randint(0, 8193, (2, 12))
    emb = model.timestep_independent(codes, torch.randn(2, 64), 40)
    assert emb.shape == (2, 32, 40)
    assert torch.isfinite(emb).all()


@torch.no_grad()
def test_bfloat16_model_accepts_float32_inputs(model, diffusion_golden):
    g = diffusion_golden
    low = DiffusionTts(**g["config"]).eval()
    low.load_state_dict(model.state_dict())
    low = low.to(torch.bfloat16)
    cond = low.get_conditioning(g["inputs.cond_mels"])
    emb = low.timestep_independent(g["inputs.latents"], cond, g["inputs.expected_seq_len"])
    x, t = g["inputs.forward.x"][:1], g["inputs.forward.timesteps"][:1]
    out = low(x, t, precomputed_aligned_embeddings=emb)
    assert out.dtype == torch.bfloat16
    ref = g["outputs.forward"][:1]
    # bf16 keeps ~3 significant digits; this only guards against a broken low-precision path
    assert (out.float() - ref).abs().max() < 0.1 * ref.abs().max()


@torch.no_grad()
def test_use_fp16_autocast_keeps_float32_output(diffusion_golden):
    g = diffusion_golden
    fast = DiffusionTts(**{**g["config"], "use_fp16": True}).eval()
    fast.load_state_dict(g["state_dict"])
    emb = g["outputs.timestep_independent"]
    x, t = g["inputs.forward.x"][:1], g["inputs.forward.timesteps"][:1]
    out = fast(x, t, precomputed_aligned_embeddings=emb)
    assert out.dtype == torch.float32
    ref = g["outputs.forward"][:1]
    assert (out - ref).abs().max() < 0.1 * ref.abs().max()


def test_training_mode_regularisers_keep_shapes(diffusion_golden):
    g = diffusion_golden
    cfg = {**g["config"], "num_layers": 4, "layer_drop": 0.5, "unconditioned_percentage": 0.5}
    net = DiffusionTts(**cfg).train()
    torch.manual_seed(0)
    out, mel_pred = net(
        g["inputs.forward.x"][:2],
        g["inputs.forward.timesteps"][:2],
        aligned_conditioning=g["inputs.latents"].repeat(2, 1, 1),
        conditioning_latent=g["outputs.cond_latent"].repeat(2, 1),
        return_code_pred=True,
    )
    assert out.shape == (2, 200, 52) and mel_pred.shape == (2, 100, 52)
    out.mean().backward()


# ------------------------------------------------------------------------------------------------
# The tiny model driven through tortoise.diffusion's samplers (4 respaced steps, k = 2 ramped)


def model_fn_for(model, aligned_embeddings):
    """The sampler's model function for one candidate, as tts builds it."""

    def model_fn(x, t, conditioning_free=False):
        return model(
            x, t, precomputed_aligned_embeddings=aligned_embeddings, conditioning_free=conditioning_free
        )

    return model_fn


@pytest.fixture(scope="module")
def model_fn(model, diffusion_golden):
    return model_fn_for(model, diffusion_golden["outputs.timestep_independent"])


def spaced_diffusion(tag):
    return SpacedDiffusion(SAMPLER_STEPS, cond_free=tag == "cond_free", cond_free_k=2.0)


@pytest.mark.parametrize("tag", GUIDANCE)
def test_ddim_loop(model_fn, diffusion_golden, tag):
    g = diffusion_golden
    steps = list(spaced_diffusion(tag).ddim_sample_steps(model_fn, g["inputs.sampler.noise"], eta=0.0))
    assert [step.index for step in steps] == [3, 2, 1, 0]
    samples = torch.stack([step.sample for step in steps])
    assert_close(samples, g[f"ddim4.{tag}.per_step_sample"], SAMPLER_ATOL)
    pred_xstart = torch.stack([step.prediction.pred_xstart for step in steps])
    assert_close(pred_xstart, g[f"ddim4.{tag}.per_step_pred_xstart"], SAMPLER_ATOL)
    assert_close(samples[-1], g[f"ddim4.{tag}.final"], SAMPLER_ATOL)


@torch.no_grad()
@pytest.mark.parametrize("tag", GUIDANCE)
def test_p_sampler_step_predictions(model_fn, diffusion_golden, tag):
    g = diffusion_golden
    diffusion = spaced_diffusion(tag)
    for i, index in enumerate(g[f"p4.{tag}.step_t"][:, 0].tolist()):
        pred = diffusion.p_mean_variance(model_fn, g[f"p4.{tag}.step_x_t"][i], index)
        for name in ("mean", "variance", "log_variance", "pred_xstart"):
            assert_close(getattr(pred, name), g[f"p4.{tag}.step_{name}"][i], SAMPLER_ATOL)


@pytest.mark.parametrize("tag", GUIDANCE)
def test_p_sampler_seeded_loop_reproduces_official_draws(model_fn, diffusion_golden, tag):
    g = diffusion_golden
    diffusion = spaced_diffusion(tag)
    with torch.random.fork_rng():
        torch.manual_seed(SAMPLER_SEED)
        x_start = torch.randn(1, 100, g["inputs.expected_seq_len"])  # do_spectrogram_diffusion, temperature 1
        steps = list(diffusion.p_sample_steps(model_fn, x_start))
    assert_close(x_start, g[f"p4.{tag}.initial_noise"], 0)
    assert_close(torch.stack([step.noise for step in steps]), g[f"p4.{tag}.step_noise"], 0)
    assert_close(torch.stack([step.x_t for step in steps]), g[f"p4.{tag}.step_x_t"], SAMPLER_ATOL)
    mel = denormalize_tacotron_mel(steps[-1].sample)
    assert_close(mel, g[f"p4.{tag}.output_mel_denormalized"], SAMPLER_ATOL)


def test_sample_entry_point_matches_seeded_official_run(model_fn, diffusion_golden):
    g = diffusion_golden
    with torch.random.fork_rng():
        torch.manual_seed(SAMPLER_SEED)
        out = spaced_diffusion("cond_free").sample(model_fn, (1, 100, g["inputs.expected_seq_len"]), "p")
    assert_close(denormalize_tacotron_mel(out), g["p4.cond_free.output_mel_denormalized"], SAMPLER_ATOL)


# ------------------------------------------------------------------------------------------------
# Conditioned and unconditioned predictions as one batch


@torch.no_grad()
def test_per_row_conditioning_free_equals_separate_forwards(model, diffusion_golden):
    g = diffusion_golden
    x = g["inputs.forward.x"][:1]
    t = g["inputs.forward.timesteps"][:1]
    emb = g["outputs.timestep_independent"]
    conditioned = model(x, t, precomputed_aligned_embeddings=emb)
    free = model(x, t, precomputed_aligned_embeddings=emb, conditioning_free=True)
    both = model(
        torch.cat([x, x]), torch.cat([t, t]), precomputed_aligned_embeddings=emb,
        conditioning_free=torch.tensor([False, True]),
    )
    torch.testing.assert_close(both[:1], conditioned, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(both[1:], free, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="precomputed_aligned_embeddings"):
        model(torch.cat([x, x]), torch.cat([t, t]), conditioning_free=torch.tensor([False, True]))


@torch.no_grad()
def test_batched_guidance_step_equals_the_two_forward_step(model_fn, diffusion_golden):
    x = diffusion_golden["inputs.sampler.noise"]
    calls = []

    def counting(x, t, conditioning_free=False):
        calls.append(x.shape[0])
        return model_fn(x, t, conditioning_free=conditioning_free)

    two = SpacedDiffusion(SAMPLER_STEPS, cond_free=True)
    one = SpacedDiffusion(SAMPLER_STEPS, cond_free=True, batch_guidance=True)
    for index in range(SAMPLER_STEPS):
        eps, var = two.guided_eps(counting, x, index)
        assert calls == [1, 1]
        batched_eps, batched_var = one.guided_eps(counting, x, index)
        assert calls == [1, 1, 2]
        calls.clear()
        torch.testing.assert_close(batched_eps, eps, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(batched_var, var, atol=1e-5, rtol=1e-5)


@torch.no_grad()
@pytest.mark.parametrize("sampler", ["p", "ddim", "dpm++2m"])
def test_batched_guidance_samples_what_two_forwards_sample(model_fn, diffusion_golden, sampler):
    noise = diffusion_golden["inputs.sampler.noise"]
    outs = [
        sample(model_fn, tuple(noise.shape), steps=SAMPLER_STEPS, sampler=sampler, cond_free=True,
               noise=noise, generator=torch.Generator().manual_seed(0), batch_guidance=batched)
        for batched in (False, True)
    ]
    # batch-2 GEMMs round differently; the sampler's last steps amplify it (golden sampler atol is 1e-4)
    torch.testing.assert_close(outs[1], outs[0], atol=1e-3, rtol=1e-3)
