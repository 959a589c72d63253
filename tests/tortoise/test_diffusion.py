"""Tests for tortoise/diffusion.py: schedules against the official tables, the P and DDIM samplers against
golden/sampler.pt, the RNG order against golden/diffusion.pt, and DPM-Solver++(2M) on known answers."""

import json
import math

import numpy as np
import pytest
import torch

from tortoise.diffusion import (
    SAMPLERS,
    SpacedDiffusion,
    linear_betas,
    sample,
    space_timesteps,
)
from tortoise.errors import GenerationCancelled, InvalidInputError

TABLES = (
    "betas",
    "alphas_cumprod",
    "alphas_cumprod_prev",
    "posterior_variance",
    "posterior_log_variance_clipped",
    "posterior_mean_coef1",
    "posterior_mean_coef2",
    "sqrt_recip_alphas_cumprod",
    "sqrt_recipm1_alphas_cumprod",
)
GOLDEN_SCHEDULE_STEPS = (4, 10, 30, 80, 100, 200, 400)
SAMPLER_ATOL = 1e-4  # golden/README.md, `sampler.pt`
SAMPLER_CASES = [(n, tag) for n in (4, 7) for tag in ("plain", "cond_free")]


def spaced_timesteps_json(reference_dir) -> dict:
    return json.loads((reference_dir / "derived" / "spaced_timesteps.json").read_text())


def analytic_model(frames: int = 40, dtype: torch.dtype = torch.float32):
    """The closed-form "model" of golden/sampler.pt (its `model_formula`), float32 throughout."""
    alphas_cumprod = torch.from_numpy(np.cumprod(1.0 - linear_betas())).to(dtype)
    bins = torch.arange(100, dtype=dtype)[:, None]
    frame = torch.arange(frames, dtype=dtype)[None, :]
    cond_target = 0.45 * torch.sin(0.07 * bins + 0.3 * frame)
    free_target = 0.8 * cond_target + 0.05 * torch.cos(0.05 * bins - 0.2 * frame)

    def model_fn(x, t, conditioning_free=False):
        abar = alphas_cumprod[t].view(-1, 1, 1)
        if conditioning_free:
            target, var_values = free_target, torch.tanh(0.3 * x + 0.2)
        else:
            target, var_values = cond_target, torch.tanh(0.3 * x - 0.1)
        x0 = target + 0.15 * torch.tanh(0.5 * x)
        eps = (x - torch.sqrt(abar) * x0) / torch.sqrt(1 - abar)
        return torch.cat([eps, var_values], dim=1)

    return model_fn


def fixed_x0_model(x0: torch.Tensor):
    """A model whose epsilon always points at the same clean sample `x0` (float64 tables)."""
    alphas_cumprod = torch.from_numpy(np.cumprod(1.0 - linear_betas()))

    def model_fn(x, t, conditioning_free=False):
        abar = alphas_cumprod[t].view(-1, 1, 1).to(x.dtype)
        eps = (x - torch.sqrt(abar) * x0) / torch.sqrt(1 - abar)
        return torch.cat([eps, torch.zeros_like(x)], dim=1)

    return model_fn


def zero_model(calls: list):
    def model_fn(x, t, conditioning_free=False):
        calls.append((t.tolist(), conditioning_free, x.clone()))
        return torch.zeros(x.shape[0], 2 * x.shape[1], *x.shape[2:], dtype=x.dtype)

    return model_fn


# --------------------------------------------------------------------------------------------------
# Schedule


def test_linear_betas_match_golden(golden, reference_dir):
    betas = linear_betas()
    assert betas.dtype == np.float64
    np.testing.assert_array_equal(betas, golden("diffusion.pt")["schedule.base_linear_4000_betas"].numpy())
    base = spaced_timesteps_json(reference_dir)["base"]
    assert (len(betas), betas[0], betas[-1]) == (base["num_timesteps"], base["beta_first"], base["beta_last"])


def test_space_timesteps_match_every_derived_map(reference_dir):
    derived = spaced_timesteps_json(reference_dir)
    counts = [key for key in derived if key != "base"]
    assert {"7", "13", "25", "31"} <= set(counts)
    for key in counts:
        assert space_timesteps(4000, int(key)) == derived[key]["timestep_map"], f"N={key}"


@pytest.mark.parametrize("steps", GOLDEN_SCHEDULE_STEPS)
def test_schedule_tables_match_golden(golden, steps):
    reference = golden("diffusion.pt")
    diffusion = SpacedDiffusion(steps)
    assert list(diffusion.timestep_map) == reference[f"schedule.{steps}.timestep_map"]
    assert diffusion.num_steps == steps
    for name in TABLES:
        expected = reference[f"schedule.{steps}.{name}"].numpy()
        actual = getattr(diffusion, name)
        assert actual.dtype == np.float64, name
        np.testing.assert_allclose(actual, expected, rtol=1e-12, atol=0, err_msg=name)
        np.testing.assert_array_equal(actual.astype(np.float32), expected.astype(np.float32), err_msg=name)


@pytest.mark.parametrize("steps", ["30", "50", "80", "100", "200", "400"])
def test_schedule_summaries_match_derived(reference_dir, steps):
    expected = spaced_timesteps_json(reference_dir)[steps]
    diffusion = SpacedDiffusion(int(steps))
    np.testing.assert_allclose(diffusion.betas[:3], expected["spaced_betas_first3"], rtol=1e-12)
    np.testing.assert_allclose(diffusion.betas[-3:], expected["spaced_betas_last3"], rtol=1e-12)
    np.testing.assert_allclose(diffusion.alphas_cumprod[0], expected["alphas_cumprod_first"], rtol=1e-12)
    np.testing.assert_allclose(diffusion.alphas_cumprod[-1], expected["alphas_cumprod_last"], rtol=1e-12)


@pytest.mark.parametrize("steps", [0, -3, 4001, 2.5, True, "30"])
def test_bad_step_counts_are_rejected(steps):
    with pytest.raises(InvalidInputError, match="1 to 4000"):
        SpacedDiffusion(steps)


def test_guidance_weight_is_ramped_by_respaced_index():
    guided = SpacedDiffusion(4, cond_free=True, cond_free_k=2.0)
    assert [guided.guidance_weight(i) for i in (3, 2, 1, 0)] == [0.5, 1.0, 1.5, 2.0]
    assert SpacedDiffusion(4).guidance_weight(0) == 0.0


# --------------------------------------------------------------------------------------------------
# P and DDIM samplers against golden/sampler.pt


@pytest.mark.parametrize(("steps", "tag"), SAMPLER_CASES)
def test_p_sampler_matches_golden(golden, steps, tag):
    reference = golden("sampler.pt")
    diffusion = SpacedDiffusion(steps, cond_free=tag == "cond_free", cond_free_k=2.0)
    generator = torch.Generator().manual_seed(92)
    loop = list(diffusion.p_sample_steps(analytic_model(), reference["inputs.noise"], generator))
    assert [step.index for step in loop] == list(range(steps - 1, -1, -1))

    prefix = f"p.{steps}.{tag}."
    torch.testing.assert_close(
        torch.stack([s.noise for s in loop]), reference[prefix + "step_noise"], rtol=0, atol=0
    )
    produced = {
        "step_sample": [s.sample for s in loop],
        "step_pred_xstart": [s.prediction.pred_xstart for s in loop],
        "step_mean": [s.prediction.mean for s in loop],
        "step_variance": [s.prediction.variance for s in loop],
        "step_log_variance": [s.prediction.log_variance for s in loop],
    }
    for key, values in produced.items():
        torch.testing.assert_close(
            torch.stack(values), reference[prefix + key], rtol=0, atol=SAMPLER_ATOL, msg=key
        )


@pytest.mark.parametrize(("steps", "tag"), SAMPLER_CASES)
def test_ddim_matches_golden(golden, steps, tag):
    reference = golden("sampler.pt")
    diffusion = SpacedDiffusion(steps, cond_free=tag == "cond_free", cond_free_k=2.0)
    loop = list(diffusion.ddim_sample_steps(analytic_model(), reference["inputs.noise"], eta=0.0))
    prefix = f"ddim.{steps}.{tag}."
    torch.testing.assert_close(
        torch.stack([s.sample for s in loop]), reference[prefix + "step_sample"], rtol=0, atol=SAMPLER_ATOL
    )
    torch.testing.assert_close(
        torch.stack([s.prediction.pred_xstart for s in loop]),
        reference[prefix + "step_pred_xstart"],
        rtol=0,
        atol=SAMPLER_ATOL,
    )


def test_ddim_rederives_eps_from_the_clipped_x0():
    # sampler.pt never reaches the clamp, so check one clamped step against eq. 12 written out in float64
    x0 = torch.full((1, 3, 5), 1.7)
    x = torch.linspace(-2.0, 2.0, 15).view(1, 3, 5)
    diffusion = SpacedDiffusion(10)
    first = next(diffusion.ddim_sample_steps(fixed_x0_model(x0), x))
    assert first.index == 9
    assert torch.equal(first.prediction.pred_xstart, torch.ones_like(x))
    abar, abar_prev = diffusion.alphas_cumprod[9], diffusion.alphas_cumprod_prev[9]
    eps = (x.double() - math.sqrt(abar)) / math.sqrt(1 - abar)  # the noise implied by the clamped x0 = 1
    expected = math.sqrt(abar_prev) + math.sqrt(1 - abar_prev) * eps
    torch.testing.assert_close(first.sample.double(), expected, rtol=0, atol=1e-4)


@pytest.mark.parametrize("sampler_name", ["p", "ddim"])
@pytest.mark.parametrize("use_default_rng", [True, False])
def test_sample_entry_reproduces_golden(golden, sampler_name, use_default_rng):
    reference = golden("sampler.pt")
    kwargs = dict(
        steps=7, sampler=sampler_name, cond_free=True, cond_free_k=2.0, noise=reference["inputs.noise"]
    )
    with torch.random.fork_rng():
        torch.manual_seed(92)
        generator = None if use_default_rng else torch.Generator().manual_seed(92)
        out = sample(analytic_model(), (1, 100, 40), generator=generator, **kwargs)
    expected = reference[f"{'p' if sampler_name == 'p' else 'ddim'}.7.cond_free.step_sample"][-1]
    torch.testing.assert_close(out, expected, rtol=0, atol=SAMPLER_ATOL)


# --------------------------------------------------------------------------------------------------
# Model-independent parts of golden/diffusion.pt (its step means need the tiny DiffusionTts)


@pytest.mark.parametrize("tag", ["plain", "cond_free"])
def test_p_sampler_rng_order_and_model_calls_match_official(golden, tag):
    reference = golden("diffusion.pt")
    prefix = f"p4.{tag}."
    calls = []
    generator = torch.Generator().manual_seed(54)
    diffusion = SpacedDiffusion(4, cond_free=tag == "cond_free")
    noise = torch.randn((1, 100, 52), generator=generator)
    loop = list(diffusion.p_sample_steps(zero_model(calls), noise, generator))

    torch.testing.assert_close(noise, reference[prefix + "initial_noise"], rtol=0, atol=0)
    torch.testing.assert_close(
        torch.stack([s.noise for s in loop]), reference[prefix + "step_noise"], rtol=0, atol=0
    )
    flags = [False, True] if tag == "cond_free" else [False]
    expected_calls = [([t], flag) for t in (3999, 2666, 1333, 0) for flag in flags]
    assert [(t, flag) for t, flag, _ in calls] == expected_calls
    assert reference[prefix + "step_t"].flatten().tolist() == [s.index for s in loop]


@pytest.mark.parametrize("tag", ["plain", "cond_free"])
def test_posterior_mean_and_step_rule_match_official(golden, tag):
    reference = golden("diffusion.pt")
    prefix = f"p4.{tag}."
    diffusion = SpacedDiffusion(4, cond_free=tag == "cond_free")
    x_t = reference[prefix + "step_x_t"]
    for k, index in enumerate(reference[prefix + "step_t"].flatten().tolist()):
        mean = diffusion.posterior_mean(reference[prefix + "step_pred_xstart"][k], x_t[k], index)
        torch.testing.assert_close(mean, reference[prefix + "step_mean"][k], rtol=0, atol=SAMPLER_ATOL)
        if index > 0:
            noise_scale = torch.exp(0.5 * reference[prefix + "step_log_variance"][k])
            following = reference[prefix + "step_mean"][k] + noise_scale * reference[prefix + "step_noise"][k]
            torch.testing.assert_close(following, x_t[k + 1], rtol=0, atol=SAMPLER_ATOL)


# --------------------------------------------------------------------------------------------------
# Entry point behaviour


def test_unknown_sampler_lists_valid_names():
    with pytest.raises(InvalidInputError) as raised:
        sample(zero_model([]), (1, 4, 8), steps=4, sampler="euler")
    for name in SAMPLERS:
        assert name in str(raised.value)
    assert "euler" in str(raised.value)


def test_noise_of_wrong_shape_is_rejected():
    with pytest.raises(InvalidInputError, match="shape"):
        sample(zero_model([]), (1, 4, 8), steps=4, noise=torch.zeros(1, 4, 9))


def test_model_output_of_wrong_shape_is_reported():
    with pytest.raises(ValueError, match="expected"):
        sample(lambda x, t, conditioning_free=False: x, (1, 4, 8), steps=4, cond_free=False)


def test_temperature_scales_the_starting_noise():
    calls = []
    noise = torch.randn(1, 4, 8, generator=torch.Generator().manual_seed(1))
    sample(zero_model(calls), (1, 4, 8), steps=3, noise=noise, temperature=0.7, cond_free=False)
    torch.testing.assert_close(calls[0][2], noise * 0.7, rtol=0, atol=0)


def test_noise_is_drawn_from_the_generator_when_missing():
    calls = []
    sample(zero_model(calls), (1, 4, 8), steps=3, cond_free=False, generator=torch.Generator().manual_seed(5))
    expected = torch.randn((1, 4, 8), generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(calls[0][2], expected, rtol=0, atol=0)


@pytest.mark.parametrize("sampler_name", SAMPLERS)
def test_progress_reports_every_step(sampler_name):
    reports = []
    sample(
        zero_model([]), (1, 4, 8), steps=5, sampler=sampler_name, progress=lambda d, t: reports.append((d, t))
    )
    assert reports == [(i, 5) for i in range(1, 6)]


@pytest.mark.parametrize("sampler_name", SAMPLERS)
def test_cancel_stops_between_steps(sampler_name):
    calls = []
    reports = []
    with pytest.raises(GenerationCancelled):
        sample(
            zero_model(calls),
            (1, 4, 8),
            steps=6,
            sampler=sampler_name,
            cond_free=False,
            progress=lambda d, t: reports.append(d),
            cancel=lambda: len(reports) >= 2,
        )
    assert len(calls) == 2

    calls.clear()
    with pytest.raises(GenerationCancelled):
        sample(zero_model(calls), (1, 4, 8), steps=6, sampler=sampler_name, cancel=lambda: True)
    assert calls == []


def test_guided_batch_rows_match_single_runs():
    noise = torch.randn(2, 100, 40, generator=torch.Generator().manual_seed(3))
    batched = sample(analytic_model(), (2, 100, 40), steps=7, sampler="ddim", noise=noise)
    for row in range(2):
        single = sample(analytic_model(), (1, 100, 40), steps=7, sampler="ddim", noise=noise[row : row + 1])
        torch.testing.assert_close(batched[row : row + 1], single, rtol=0, atol=1e-6)


def test_model_runs_without_gradients():
    grad_states = []

    def model_fn(x, t, conditioning_free=False):
        grad_states.append(torch.is_grad_enabled())
        return torch.zeros(x.shape[0], 2 * x.shape[1], *x.shape[2:])

    for sampler_name in SAMPLERS:
        sample(model_fn, (1, 4, 8), steps=3, sampler=sampler_name)
    assert grad_states and not any(grad_states)


def test_single_step_sampling_is_finite():
    for sampler_name in SAMPLERS:
        out = sample(
            analytic_model(), (1, 100, 40), steps=1, sampler=sampler_name, generator=torch.Generator()
        )
        assert torch.isfinite(out).all()


# --------------------------------------------------------------------------------------------------
# DPM-Solver++(2M): no golden, so known answers


@pytest.mark.parametrize("sampler_name", ["ddim", "dpm++2m"])
@pytest.mark.parametrize("steps", [4, 30])
def test_deterministic_samplers_recover_a_known_clean_sample(sampler_name, steps):
    frames = torch.arange(40, dtype=torch.float32)
    x0 = 0.6 * torch.sin(0.21 * torch.arange(100, dtype=torch.float32)[:, None] + 0.37 * frames)[None]
    noise = torch.randn(1, 100, 40, generator=torch.Generator().manual_seed(11))
    out = sample(
        fixed_x0_model(x0), (1, 100, 40), steps=steps, sampler=sampler_name, noise=noise, cond_free=False
    )
    torch.testing.assert_close(out, x0, rtol=0, atol=1e-5)


def gaussian_data_model(mean: float, std: float):
    """Exact denoiser for data ~ N(mean, std^2) per element: E[x0 | x_t] in closed form (float64)."""
    alphas_cumprod = torch.from_numpy(np.cumprod(1.0 - linear_betas()))

    def model_fn(x, t, conditioning_free=False):
        abar = alphas_cumprod[t].view(-1, 1, 1)
        alpha, sigma = abar.sqrt(), (1 - abar).sqrt()
        x0 = mean + alpha * std**2 / (abar * std**2 + sigma**2) * (x - alpha * mean)
        return torch.cat([(x - alpha * x0) / sigma, torch.zeros_like(x)], dim=1)

    return model_fn


def gaussian_ode_answer(noise: torch.Tensor, steps: int, mean: float, std: float) -> torch.Tensor:
    """For Gaussian data the probability-flow ODE keeps (x - alpha*mean) / sqrt(alpha^2 std^2 + sigma^2)
    constant; the exact sampler output is the denoiser at index 0 applied to the exact ODE state there."""
    diffusion = SpacedDiffusion(steps)
    abar_start, abar_end = diffusion.alphas_cumprod[-1], diffusion.alphas_cumprod[0]
    z = (noise - math.sqrt(abar_start) * mean) / math.sqrt(abar_start * std**2 + 1 - abar_start)
    return mean + math.sqrt(abar_end) * std**2 * z / math.sqrt(abar_end * std**2 + 1 - abar_end)


def test_dpm_solver_converges_at_second_order_on_gaussian_data():
    mean, std = 0.1, 0.5
    # bounded start so that no x0 prediction reaches the [-1, 1] clamp
    noise = torch.randn(1, 4, 500, generator=torch.Generator().manual_seed(0), dtype=torch.float64).clamp(
        -1.5, 1.5
    )
    model_fn = gaussian_data_model(mean, std)
    errors = {}
    for steps in (40, 160, 320):
        exact = gaussian_ode_answer(noise, steps, mean, std)
        for sampler_name in ("ddim", "dpm++2m"):
            out = sample(
                model_fn, noise.shape, steps=steps, sampler=sampler_name, noise=noise, cond_free=False
            )
            errors[sampler_name, steps] = (out - exact).abs().max().item()
    assert errors["dpm++2m", 160] < 1e-3
    assert errors["dpm++2m", 320] < errors["dpm++2m", 160] / 3  # second order: doubling steps gives ~1/4
    for steps in (40, 160):
        assert errors["dpm++2m", steps] < errors["ddim", steps] / 5


def test_dpm_solver_approaches_many_step_ddim(golden):
    cond_free = True
    noise = golden("sampler.pt")["inputs.noise"]
    model_fn = analytic_model()
    reference = sample(model_fn, (1, 100, 40), steps=1000, sampler="ddim", noise=noise, cond_free=cond_free)
    errors = {}
    for steps in (10, 100):
        for sampler_name in ("ddim", "dpm++2m"):
            out = sample(
                model_fn, (1, 100, 40), steps=steps, sampler=sampler_name, noise=noise, cond_free=cond_free
            )
            errors[sampler_name, steps] = (out - reference).abs().max().item()
    assert errors["dpm++2m", 100] < errors["dpm++2m", 10] / 5
    assert errors["dpm++2m", 100] < 2e-3
    for steps in (10, 100):
        assert errors["dpm++2m", steps] <= errors["ddim", steps]


def test_schedule_values_reach_the_device_once_not_every_step(monkeypatch):
    """Each table is copied to the device once per sampling run; steps take views of it."""
    made = []
    original = torch.from_numpy
    monkeypatch.setattr(torch, "from_numpy", lambda array: made.append(array.shape) or original(array))
    for steps in (5, 40):
        made.clear()
        sample(analytic_model(), (1, 100, 40), steps=steps, sampler="p", noise=torch.randn(1, 100, 40))
        assert 0 < len(made) <= len(TABLES)
