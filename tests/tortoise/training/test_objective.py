"""The training forward, parameter groups, per-group clipping and the LR schedules (TRAINING_SPEC §4)."""

import math

import pytest
import torch

from tests.tortoise.training.conftest import tiny_ar_config
from tortoise.models import build
from tortoise.training.objective import LRSchedule, TrainingForward, clip_gradients, parameter_groups


@pytest.fixture
def tiny_ar(golden):
    g = golden("autoregressive.pt")
    model = build("autoregressive", **g["config"])
    model.load_state_dict(g["state_dict"])
    return model


def _batch(b=2, text=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        "text": torch.randint(3, 200, (b, text), generator=g),
        "text_length": torch.tensor([text, text - 2][:b]),
        "codes": torch.randint(0, 8192, (b, 250), generator=g),
        "wav_length": torch.tensor([30000, 21000][:b]),
        "cond_mels": torch.randn(b, 2, 80, 172, generator=g),
    }


def test_one_conditioning_clip_equals_the_model_forward(tiny_ar):
    batch = _batch()
    forward = TrainingForward(tiny_ar)
    one_clip = batch["cond_mels"][:, :1]
    loss_text, loss_mel = forward(batch["text"], batch["text_length"], batch["codes"], batch["wav_length"],
                                  one_clip)
    latent = tiny_ar.get_conditioning(one_clip)
    ref_text, ref_mel, _ = tiny_ar(latent, batch["text"], batch["text_length"], batch["codes"],
                                   batch["wav_length"])
    torch.testing.assert_close(loss_text, ref_text)
    torch.testing.assert_close(loss_mel, ref_mel)


def test_two_conditioning_clips_and_weights(tiny_ar):
    forward = TrainingForward(tiny_ar, text_loss_weight=0.01, mel_loss_weight=1.0)
    loss_text, loss_mel = forward(**_batch())
    assert loss_text.shape == () and math.isfinite(loss_mel.item())
    losses = forward.weigh(loss_text, loss_mel)
    torch.testing.assert_close(losses.loss_gpt_total, 0.01 * loss_text + loss_mel)
    (loss_mel + loss_text).backward()
    assert all(p.grad is not None for p in tiny_ar.parameters())  # everything is trainable


def test_gradient_checkpointing_changes_nothing_but_memory(tiny_ar):
    batch = _batch()
    plain = TrainingForward(tiny_ar)(**batch)
    recomputed = TrainingForward(tiny_ar, use_gradient_checkpointing=True)(**batch)
    torch.testing.assert_close(plain, recomputed)


def test_tortoise_compat_trains_on_every_padded_code():
    model = build("autoregressive", **{**tiny_ar_config(), "max_mel_tokens": 252})
    batch = _batch()
    compat = TrainingForward(model, tortoise_compat=True)
    aligned = model.align_inputs(batch["text"], batch["text_length"], batch["codes"],
                                 batch["wav_length"] * 1024)
    assert aligned.mel_inputs.shape[1] == 252 and (aligned.mel_targets[:, :250] == batch["codes"]).all()
    loss_compat = compat(**batch)[1]
    loss_plain = TrainingForward(model)(**batch)[1]
    assert not torch.isclose(loss_compat, loss_plain)


def test_parameter_groups_exclude_biases_norms_and_embeddings(tiny_ar):
    decay, no_decay = parameter_groups(tiny_ar, 0.01)
    names = {id(p): n for n, p in tiny_ar.named_parameters()}
    decay_names = {names[id(p)] for p in decay["params"]}
    no_decay_names = {names[id(p)] for p in no_decay["params"]}
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    assert decay_names | no_decay_names == set(names.values()) and not decay_names & no_decay_names
    for expected in ("text_embedding.weight", "mel_embedding.weight", "mel_pos_embedding.emb.weight",
                     "text_pos_embedding.emb.weight", "final_norm.weight", "gpt.h.0.ln_1.weight",
                     "gpt.ln_f.bias", "conditioning_encoder.attn.0.norm.weight", "mel_head.bias"):
        assert expected in no_decay_names
    for expected in ("mel_head.weight", "gpt.h.0.attn.c_attn.weight", "conditioning_encoder.init.weight"):
        assert expected in decay_names


def test_clipping_is_per_group_and_reports_nan():
    a, b = torch.nn.Parameter(torch.zeros(4)), torch.nn.Parameter(torch.zeros(4))
    a.grad, b.grad = torch.full((4,), 10.0), torch.full((4,), 0.5)
    groups = [{"params": [a]}, {"params": [b]}]
    total, ok = clip_gradients(groups, 4.0)
    assert ok and total == pytest.approx(math.hypot(20.0, 1.0))
    assert a.grad.norm().item() == pytest.approx(4.0, rel=1e-4)
    assert b.grad.norm().item() == pytest.approx(1.0)  # under the limit: untouched
    b.grad[0] = float("nan")
    assert clip_gradients(groups, 4.0)[1] is False


def test_multistep_lr_halves_the_step_before_each_milestone():
    schedule = LRSchedule(1e-5, milestones=(9, 18, 25, 33), gamma=0.5)
    lrs = {s: schedule.lr_at(s) for s in (1, 7, 8, 16, 17, 23, 24, 31, 32)}
    assert lrs == pytest.approx({1: 1e-5, 7: 1e-5, 8: 5e-6, 16: 5e-6, 17: 2.5e-6, 23: 2.5e-6, 24: 1.25e-6,
                                 31: 1.25e-6, 32: 6.25e-7})
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    assert schedule.apply(opt, 8) == opt.param_groups[0]["lr"] == pytest.approx(5e-6)


def test_cosine_restart_schedule():
    schedule = LRSchedule(1.0, "CosineAnnealingLR_Restart", periods=(10, 10), restarts=(10,),
                          restart_weights=(0.5,), eta_min=0.0)
    assert schedule.lr_at(1) == pytest.approx(1.0)
    assert schedule.lr_at(6) == pytest.approx(0.5)
    assert schedule.lr_at(11) == pytest.approx(0.5)  # restart at half the base
    assert schedule.lr_at(16) == pytest.approx(0.25)
