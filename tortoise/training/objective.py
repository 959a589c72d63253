"""What one optimiser step computes (TRAINING_SPEC §4): the DLAS training forward with two conditioning
vectors, the weighted losses, AdamW parameter groups without decay, and the learning-rate schedules.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from tortoise.models.autoregressive import LearnedPositionEmbeddings, UnifiedVoice

NO_DECAY_MODULES = (nn.Embedding, nn.LayerNorm, nn.GroupNorm, LearnedPositionEmbeddings)


@dataclass
class Losses:
    """Unweighted cross-entropies (scalars) and their weighted sum, as DLAS logged them."""

    loss_text_ce: torch.Tensor
    loss_mel_ce: torch.Tensor
    loss_gpt_total: torch.Tensor


class TrainingForward(nn.Module):
    """Wraps a UnifiedVoice with the DLAS training forward; this is the module DDP wraps.

    Differences from `UnifiedVoice.forward` (one averaged conditioning latent): each of the two
    conditioning clips becomes its own input position, `[cond1, cond2, text, mel]` (§4.2 step 3-4).
    Text logits are taken at the text positions themselves, so they are aligned with their targets; DLAS
    read them one position early with two conditioning inputs (§4.2 step 5 allows either; the text loss
    has weight 0.01). Mel logits are aligned in both.

    Args:
        model: the UnifiedVoice being trained.
        text_loss_weight, mel_loss_weight: weights of loss_gpt_total.
        tortoise_compat: DLAS tortoise_compat — wav lengths are multiplied by 1024 first, so every item
            trains on all codes of its zero-padded clip (§4.3).
        use_gradient_checkpointing: recompute each GPT block in backward (saves activation memory).
    """

    def __init__(self, model: UnifiedVoice, text_loss_weight: float = 0.01, mel_loss_weight: float = 1.0,
                 tortoise_compat: bool = False, use_gradient_checkpointing: bool = False):
        super().__init__()
        self.model = model
        self.text_loss_weight = text_loss_weight
        self.mel_loss_weight = mel_loss_weight
        self.tortoise_compat = tortoise_compat
        self.use_gradient_checkpointing = use_gradient_checkpointing

    def forward(self, text: torch.Tensor, text_length: torch.Tensor, codes: torch.Tensor,
                wav_length: torch.Tensor, cond_mels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Losses of one (micro-)batch.

        Args:
            text: (batch, T) int64 ids, zero padded; text_length: (batch,).
            codes: (batch, 250) int64 DVAE codes of the padded clips; wav_length: (batch,) samples.
            cond_mels: (batch, 2, 80, frames) normalised AR mels of the conditioning crops.

        Returns:
            (loss_text_ce, loss_mel_ce): mean cross-entropy over every position, padding included.
        """
        m = self.model
        if self.tortoise_compat:
            wav_length = wav_length * m.mel_length_compression
        aligned = m.align_inputs(text, text_length, codes, wav_length)
        b, clips = cond_mels.shape[:2]
        cond = m.conditioning_encoder(cond_mels.flatten(0, 1)).view(b, clips, -1)  # (batch, 2, dim)
        text_emb = m.embed_text(aligned.text_inputs)
        mel_emb = m.embed_mel(aligned.mel_inputs)
        h = self._gpt(torch.cat([cond, text_emb, mel_emb], dim=1))
        h = m.final_norm(h)
        tt, tm = text_emb.shape[1], mel_emb.shape[1]
        # the state at input position p predicts input p + 1: take the states at the inputs themselves
        text_logits = m.text_head(h[:, clips : clips + tt]).permute(0, 2, 1)  # (batch, vocab, Tt)
        mel_logits = m.mel_head(h[:, -tm:]).permute(0, 2, 1)  # (batch, 8194, Tm)
        loss_text = F.cross_entropy(text_logits.float(), aligned.text_targets)
        loss_mel = F.cross_entropy(mel_logits.float(), aligned.mel_targets)
        return loss_text, loss_mel

    def _gpt(self, x: torch.Tensor) -> torch.Tensor:
        """The GPT-2 stack (causal, no padding mask), optionally with per-block recomputation."""
        gpt = self.model.gpt
        for block in gpt.h:
            if self.use_gradient_checkpointing and torch.is_grad_enabled():
                x = checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
        return gpt.ln_f(x)

    def weigh(self, loss_text: torch.Tensor, loss_mel: torch.Tensor) -> Losses:
        """loss_gpt_total = text weight · loss_text_ce + mel weight · loss_mel_ce."""
        total = self.text_loss_weight * loss_text + self.mel_loss_weight * loss_mel
        return Losses(loss_text, loss_mel, total)


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: [weights with decay, no decay for biases, norm layers and embedding tables].

    Embedding tables include the learned position tables and any bare `*_solo_embedding` parameters.
    """
    no_decay_ids: set[int] = set()
    for module in model.modules():
        if isinstance(module, NO_DECAY_MODULES):
            no_decay_ids.update(id(p) for p in module.parameters(recurse=False))
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        is_plain = id(param) not in no_decay_ids and not name.endswith("bias") and "embedding" not in name
        (decay if is_plain else no_decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay, "name": "decay"},
            {"params": no_decay, "weight_decay": 0.0, "name": "no_decay"}]


def clip_gradients(groups: list[dict], max_norm: float) -> tuple[float, bool]:
    """Clip each parameter group to `max_norm` separately (as DLAS); returns (total norm, is_finite).

    The total is the L2 norm over both groups before clipping. When it is non-finite the gradients are
    garbage (the caller skips the step and zeroes them).
    """
    norms = [torch.nn.utils.clip_grad_norm_(group["params"], max_norm) for group in groups]
    total = float(torch.linalg.vector_norm(torch.stack([n.float() for n in norms]))) if norms else 0.0
    return total, math.isfinite(total)


class LRSchedule:
    """Learning rate per optimiser step (first step = 1), as DLAS's schedulers gave it.

    MultiStepLR: DLAS evaluated the scheduler at step + 1, so the LR halves on the step just before
    each milestone: lr(s) = base · gamma^#{m : m <= s + 1} (milestones [9, 18] -> 5e-6 from step 8).
    CosineAnnealingLR_Restart: cosine from the segment's start LR (base · restart weight, 1 for the
    first) down to eta_min over T_period steps, restarting at each restart step (closed form of DLAS's
    recursive update).

    Args:
        base_lr: the configured learning rate.
        scheme: "MultiStepLR" or "CosineAnnealingLR_Restart".
        milestones, gamma: MultiStepLR settings, in steps.
        periods, restarts, restart_weights, eta_min: cosine settings, in steps.
    """

    def __init__(self, base_lr: float, scheme: str = "MultiStepLR", milestones: tuple[int, ...] = (),
                 gamma: float = 0.5, periods: tuple[int, ...] = (), restarts: tuple[int, ...] = (),
                 restart_weights: tuple[float, ...] = (), eta_min: float = 1e-8):
        self.base_lr, self.scheme = base_lr, scheme
        self.milestones, self.gamma = tuple(sorted(milestones)), gamma
        self.periods, self.restarts = tuple(periods) or (1,), tuple(restarts)
        self.restart_weights, self.eta_min = tuple(restart_weights), eta_min

    def lr_at(self, step: int) -> float:
        """The LR that optimiser step `step` (>= 1) uses."""
        if self.scheme == "MultiStepLR":
            return self.base_lr * self.gamma ** sum(1 for m in self.milestones if m <= step + 1)
        t = step - 1  # DLAS's cosine scheduler starts at last_epoch 0 on the first step
        start, peak, period = 0, self.base_lr, self.periods[0]
        for i, restart in enumerate(self.restarts):
            if t >= restart:
                start, period = restart, self.periods[min(i + 1, len(self.periods) - 1)]
                peak = self.base_lr * (self.restart_weights[i] if i < len(self.restart_weights) else 1.0)
        return self.eta_min + (peak - self.eta_min) * (1 + math.cos(math.pi * (t - start) / period)) / 2

    def apply(self, optimizer: torch.optim.Optimizer, step: int) -> float:
        """Set every group's LR for `step`; returns it."""
        lr = self.lr_at(step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        return lr

    def state_dict(self) -> dict:
        """Settings, for the record in `<step>.state` (a resumed run uses the current config's)."""
        return {"scheme": self.scheme, "base_lr": self.base_lr, "milestones": list(self.milestones),
                "gamma": self.gamma, "periods": list(self.periods), "restarts": list(self.restarts),
                "restart_weights": list(self.restart_weights), "eta_min": self.eta_min}
