"""The fine-tuning run: builds data, model and optimiser from a TrainerConfig, loops over epochs until
`iterations` steps, validates, saves and prunes checkpoints, samples them, and resumes from a state.
Runs alone or as one process of a torchrun group (rank 0 alone writes files).
"""

from __future__ import annotations

import contextlib
import logging
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from tortoise import models as registry
from tortoise.download import ModelStore, sha256_of
from tortoise.dvae_codes import DLAS_PADDED_SAMPLES, encode_clips
from tortoise.errors import GenerationCancelled
from tortoise.mel import load_mel_norms
from tortoise.tokenizer import VoiceBpeTokenizer
from tortoise.training import checkpoint as ckpt
from tortoise.training.config import TrainerConfig, resolved_model_config
from tortoise.training.control import SAMPLING, SAVING, StopControl
from tortoise.training.data import (
    MAX_TEXT_TOKENS,
    Clip,
    EpochBatchSampler,
    PairedVoiceDataset,
    collate,
    prepare_clips,
)
from tortoise.training.distributed import Distributed
from tortoise.training.errors import DatasetError, ResumeError, TrainingError
from tortoise.training.memory import (
    MARGIN,
    available_memory,
    estimate_run_memory,
    gigabytes,
    release_memory,
)
from tortoise.training.metrics import MetricsLog
from tortoise.training.objective import LRSchedule, TrainingForward
from tortoise.training.sample import CheckpointSampler, SampleFn
from tortoise.training.step import (
    StepResult,
    StepRunner,
    choose_precision,
    make_optimizer,
)

log = logging.getLogger(__name__)

MIN_CLIPS = 2
RecordFn = Callable[[dict[str, Any]], None]


@dataclass
class TrainingResult:
    """How a run ended: last step and epoch, newest checkpoint, metrics file, whether it was stopped."""

    step: int
    epoch: int
    last_checkpoint: Path | None
    metrics_path: Path
    was_stopped: bool = False


def train(config: TrainerConfig, *, device: str = "auto", sample_fn: SampleFn | None = None,
          on_record: RecordFn | None = None, should_stop: Callable[[], bool] | None = None) -> TrainingResult:
    """Run (or resume) a fine-tuning run; see `Trainer`."""
    return Trainer(config, device=device, sample_fn=sample_fn, on_record=on_record,
                   should_stop=should_stop).run()


class Trainer:
    """One fine-tuning run.

    Args:
        config: the run's settings (`load_config` reads them from train.yaml).
        device: "auto" (CUDA when available, the process's local GPU under torchrun), "cpu", "cuda", ...
        sample_fn: called after each save with (model, wav path, step, cancel); None uses
            `CheckpointSampler` when `config.sample_enabled`.
        on_record: receives every metrics record (for in-process callers such as a UI).
        should_stop: polled every step (and during a sample); True saves a checkpoint and ends the run.
            A `StopControl` is also told the phase (saving, sampling), so a stop can abandon a save.

    Raises (from `run`):
        TrainingError: bad config, dataset, source model, resume state, disk full, or too many
            non-finite losses; the message says what to do. WeightsError: the source model does not fit.
    """

    def __init__(self, config: TrainerConfig, *, device: str = "auto", sample_fn: SampleFn | None = None,
                 on_record: RecordFn | None = None, should_stop: Callable[[], bool] | None = None):
        self.config = config
        self.dist = Distributed.from_env(device)
        self.layout = ckpt.RunLayout(config.run_dir)
        self.sample_fn = sample_fn
        self.on_record = on_record
        self.should_stop = should_stop
        self.step = self.epoch = self.batch_in_epoch = 0
        self.nonfinite_streak = 0
        self.last_checkpoint: Path | None = None
        self.metrics = MetricsLog(None)

    # ------------------------------------------------------------------ run

    def run(self) -> TrainingResult:
        """Set everything up, train until `iterations` steps (or a stop), save at the end."""
        try:
            self.dist.init()
            self._setup()
            was_stopped = self._loop()
            if self.last_saved_step != self.step:
                self._save()
            self._record("end", step=self.step, epoch=self.epoch)
            log.info("Training finished at step %d.", self.step)
            return TrainingResult(self.step, self.epoch, self.last_checkpoint, self.layout.metrics_path,
                                  was_stopped)
        finally:
            self.metrics.close()
            self.dist.close()

    def _setup(self) -> None:
        c = self.config
        model_config = resolved_model_config(c.model_kwargs)
        state = ckpt.load_resume_state(c.resume_state, model_config, c.iterations) if c.resume_state else None
        # loaded before the old run folder is archived: the source may be one of its checkpoints
        self.model = self._load_model(state, model_config)
        self.dist.barrier()
        if self.dist.is_main:
            if state is None:
                ckpt.archive_run_dir(c.run_dir)
            self.layout.create()
            ckpt.copy_config(c.config_path, c.run_dir)
            self.metrics = MetricsLog(self.layout.metrics_path, c.print_freq)
        self._setup_data()
        self.forward = TrainingForward(self.model, c.text_loss_weight, c.mel_loss_weight, c.tortoise_compat,
                                       c.use_gradient_checkpointing)
        self.optimizer, self.optimizer_kind = make_optimizer(
            self.model, self.dist.device, c.learning_rate, c.weight_decay, c.betas, c.eps, c.use_bitsandbytes)
        precision = choose_precision(self.dist.device, c.use_fp16, c.use_bf16)
        schedule = LRSchedule(c.learning_rate, c.lr_scheme, c.lr_milestones, c.lr_gamma, c.lr_periods,
                              c.lr_restarts, c.lr_restart_weights, c.lr_eta_min)
        self.runner = StepRunner(self.dist.wrap(self.forward), self.optimizer, schedule,
                                 c.gradient_accumulation, c.clip_grad_norm, precision, self.dist.device)
        torch.manual_seed(c.seed + self.dist.rank)
        random.seed(c.seed + self.dist.rank)
        if state is not None:
            self._restore(state)
        self.last_saved_step = self.step
        spe = self.sampler.batches_per_epoch
        log.info("Start training from epoch: %d, iter: %d", self.epoch, self.step)
        log.info("%d clips, %d steps per epoch, %d steps in total, %s on %s x%d, optimiser %s.",
                 len(self.train_set), spe, c.iterations, precision.name, self.dist.device,
                 self.dist.world_size, self.optimizer_kind)
        self._record("start", step=self.step, steps=c.iterations, epoch=self.epoch, steps_per_epoch=spe,
                     batch_size=c.batch_size, world_size=self.dist.world_size,
                     resumed_from=str(c.resume_state) if state else None)
        if self.sample_fn is None and c.sample_enabled and self.dist.is_main:
            self.sample_fn = self._default_sampler()
        elif self.sample_fn is None and self.dist.is_main:
            self._samples_off("checkpoint samples are turned off in the configuration")
        self._fit_memory()

    def _loop(self) -> bool:
        """Epochs of steps until `iterations`; returns True when `should_stop` ended it early."""
        c = self.config
        spe = self.sampler.batches_per_epoch
        last = time.perf_counter()
        while self.step < c.iterations:
            self.sampler.set_epoch(self.epoch, self.batch_in_epoch)
            for batch in self.loader:
                self.step += 1
                result = self.runner.run(batch, self.step)
                self.batch_in_epoch += 1
                now = time.perf_counter()
                self._after_step(result, now - last, spe)
                last = time.perf_counter()  # saving and validation do not count towards it/s
                if self.should_stop is not None and self.should_stop():
                    log.info("Stop requested at step %d.", self.step)
                    return True
                if self.step >= c.iterations:
                    break
            if self.batch_in_epoch >= spe:
                self.epoch, self.batch_in_epoch = self.epoch + 1, 0
        return False

    def _after_step(self, result: StepResult, seconds: float, spe: int) -> None:
        c = self.config
        self._record("train", step=self.step, steps=c.iterations, epoch=self.epoch,
                     epoch_progress=round(self.epoch + self.batch_in_epoch / spe, 4),
                     loss_text_ce=result.loss_text_ce, loss_mel_ce=result.loss_mel_ce,
                     loss_gpt_total=result.loss_gpt_total, lr=result.lr, grad_norm=result.grad_norm,
                     it_s=round(1.0 / max(seconds, 1e-9), 4), step_time_s=round(seconds, 4),
                     skipped=result.skipped)
        self._check_finite(result)
        if self.val_set is not None and self.step % c.validation_freq == 0:
            self._validate()
        if self.step % c.save_checkpoint_freq == 0:
            self._save()

    def _check_finite(self, result: StepResult) -> None:
        if result.is_loss_finite:
            self.nonfinite_streak = 0
            return
        self.nonfinite_streak += 1
        log.warning("Loss is NaN or infinite at step %d (%d in a row); the step was skipped.",
                    self.step, self.nonfinite_streak)
        if self.nonfinite_streak >= self.config.max_nonfinite_steps:
            raise TrainingError(
                f"The loss was NaN or infinite for {self.nonfinite_streak} steps in a row (up to step "
                f"{self.step}); training stopped. Lower the learning rate, turn off Half Precision, or "
                "resume from an earlier state.")

    # ------------------------------------------------------------------ setup pieces

    def _load_model(self, state: dict[str, Any] | None, model_config: dict[str, Any]) -> torch.nn.Module:
        c = self.config
        if state is not None:
            source = state["gpt_path"]
        elif c.source_model is not None:
            source = c.source_model
            if not source.is_file():
                raise TrainingError(f"Source model {source} does not exist. Pick an existing *.pth file "
                                    "or clear Source Model to fine-tune the base model.")
        else:
            log.warning("No source model: training from random weights (only for tests and benchmarks).")
            return registry.build("autoregressive", **model_config).train().to(self.dist.device)
        log.info("Loading the autoregressive model from %s", source)
        model = registry.load("autoregressive", source, **model_config)  # strict; half weights become fp32
        return model.float().train().requires_grad_(True).to(self.dist.device)

    def _setup_data(self) -> None:
        c = self.config
        self.tokenizer = VoiceBpeTokenizer(self._model_file("tokenizer.json"))
        self.mel_norms = load_mel_norms(self._model_file("mel_norms.pth"))
        limits = {"max_text_tokens": min(MAX_TEXT_TOKENS, self.model.max_text_tokens),
                  "max_codes": self.model.mel_pos_embedding.emb.num_embeddings - 2,
                  "tortoise_compat": c.tortoise_compat}
        train_clips, _ = prepare_clips(c.train_list, self.tokenizer, **limits)
        self._check_dataset(train_clips)
        val_clips: list[Clip] = []
        if c.validation_enabled and c.validation_list is not None:
            if c.validation_list.is_file():
                val_clips, _ = prepare_clips(c.validation_list, self.tokenizer, **limits)
            if not val_clips:
                log.warning("Validation is off: %s has no usable clips.", c.validation_list)
        codes = self._dataset_codes([clip.audio for clip in train_clips + val_clips])
        self.train_set = PairedVoiceDataset(train_clips, codes, self.mel_norms)
        self.val_set = PairedVoiceDataset(val_clips, codes, self.mel_norms,
                                          torch.Generator().manual_seed(c.seed)) if val_clips else None
        self.sampler = EpochBatchSampler(len(train_clips), c.batch_size, c.drop_last, c.seed, self.dist.rank,
                                         self.dist.world_size)
        self.loader = DataLoader(self.train_set, batch_sampler=self.sampler, collate_fn=collate,
                                 num_workers=c.workers, pin_memory=self.dist.device.type == "cuda",
                                 persistent_workers=c.workers > 0)
        self.voice_clips = c.sample_voice_clips or tuple(
            clip.audio for clip in sorted(train_clips, key=lambda x: -x.samples)[:3])
        every = train_clips + val_clips
        self.longest = (max(clip.samples for clip in every) // 1024 + 1,
                        max(len(clip.tokens) for clip in every))

    def _estimate(self, batch_size: int, workers: int, sample: bool):
        c = self.config
        return estimate_run_memory(
            c.model_kwargs, batch_size=batch_size, longest_codes=self.longest[0],
            longest_text=self.longest[1], workers=workers, sample=sample, models_dir=c.models_dir,
            eight_bit_adam=self.optimizer_kind != "adamw",
            gradient_checkpointing=c.use_gradient_checkpointing, heads=self.model.gpt.h[0].attn.heads)

    def _fit_memory(self) -> None:
        """Estimate the peak memory; lower the workers, then turn samples off, then refuse, until it fits."""
        c = self.config
        batch = max(1, c.batch_size // self.dist.world_size)
        available = int(available_memory(self.dist.device) * MARGIN)
        workers, sample = c.workers, self.sample_fn is not None
        estimate = self._estimate(batch, workers, sample)
        changes = []
        if estimate.peak > available and workers:
            workers, estimate = 0, self._estimate(batch, 0, sample)
            changes.append(f"data-loader workers {c.workers} -> 0")
            self.loader = DataLoader(self.train_set, batch_sampler=self.sampler, collate_fn=collate,
                                     num_workers=0, pin_memory=self.dist.device.type == "cuda")
        if estimate.peak > available and sample:
            sample, estimate = False, self._estimate(batch, workers, False)
            self.sample_fn = None
            changes.append("checkpoint samples off")
            self._samples_off(f"they would not fit in memory ({gigabytes(available)} usable)")
        self._record("memory", step=self.step, estimate=estimate.peak, available=available, changes=changes,
                     parts=estimate.describe())
        log.info("Memory: the run needs %s; %s usable on %s.%s", estimate.describe(), gigabytes(available),
                 self.dist.device, f" Lowered: {', '.join(changes)}." if changes else "")
        if estimate.peak <= available:
            return
        fits = [b for b in range(batch - 1, 0, -1) if self._estimate(b, workers, sample).peak <= available]
        hint = (f"Lower Batch Size to {fits[0] * self.dist.world_size} (raise Gradient Accumulation to keep "
                "the effective batch)" if fits else "Turn on gradient checkpointing, use shorter clips")
        raise TrainingError(
            f"This run needs {estimate.describe()}, but only {gigabytes(available)} of memory is usable on "
            f"{self.dist.device}. {hint}, or close other programs, and start again.")

    def _check_dataset(self, clips: list[Clip]) -> None:
        c = self.config
        if len(clips) < MIN_CLIPS:
            raise DatasetError(f"{c.train_list} has {len(clips)} usable clip(s); training needs at least "
                               f"{MIN_CLIPS}. Add more audio to the voice and run Prepare Dataset again.")
        if c.batch_size > len(clips):
            raise DatasetError(f"Batch size {c.batch_size} is larger than the {len(clips)} usable clips of "
                               f"{c.train_list}. Press Validate Training Configuration and save again.")
        if c.batch_size % self.dist.world_size:
            raise TrainingError(f"Batch size {c.batch_size} does not split evenly over "
                                f"{self.dist.world_size} processes; use a multiple of the GPU count.")

    def _model_file(self, name: str) -> Path:
        path = self.config.model_file(name)
        if path.is_file():
            return path
        if path.parent != self.config.models_dir:
            raise TrainingError(f"{name} not found at {path}.")
        return ModelStore(self.config.models_dir).get(name)  # downloads unless offline mode is on

    def _dataset_codes(self, clips: list[Path]) -> dict[str, torch.Tensor]:
        """DVAE codes through the on-disk cache: rank 0 encodes, the others then read the cache."""
        codes: dict[str, torch.Tensor] = {}
        for turn in (True, False):
            if self.dist.is_main == turn:
                codes = self._encode(clips)
            self.dist.barrier()
        return codes

    def _encode(self, clips: list[Path]) -> dict[str, torch.Tensor]:
        c = self.config
        dvae_path = self._model_file("dvae.pth")
        dvae = registry.load("dvae", dvae_path, self.dist.device, **c.dvae_kwargs)
        cache = c.codes_cache_dir or c.train_list.parent / "dvae_codes"
        codes = encode_clips(dvae, clips, cache, sha256_of(dvae_path), self.mel_norms,
                             padded_samples=DLAS_PADDED_SAMPLES)
        del dvae
        return codes

    def _default_sampler(self) -> SampleFn | None:
        c = self.config
        if c.models_dir is None:
            self._samples_off("no models folder is set")
            return None
        device = "cpu" if self.dist.device.type == "cpu" else str(self.dist.device)
        sampler = CheckpointSampler(c.models_dir, self.voice_clips, c.sample_text, c.sample_preset, device,
                                    c.sample_model_configs, c.sample_overrides)
        try:
            sampler.check(self.model)
        except (TrainingError, OSError, RuntimeError) as e:  # unreadable decoder files land here too
            self._samples_off(str(e))
            return None
        return sampler

    def _check_disk(self) -> None:
        """Warn (log and a `disk` record) when the coming save may not fit on the disk; the save still
        runs, and a failed one leaves the previous checkpoint intact."""
        saved = [s for s in self.layout.saved_steps() if self.layout.state_path(s).is_file()]
        if saved:
            last = saved[-1]
            needed = self.layout.gpt_path(last).stat().st_size + self.layout.state_path(last).stat().st_size
        else:  # fp32 weights, plus the state: AdamW's two moments (or 8-bit ones) and bookkeeping
            params = sum(p.numel() for p in self.model.parameters())
            needed = params * (4 + (2 if self.optimizer_kind != "adamw" else 8)) + (1 << 20)
        free = shutil.disk_usage(self.layout.run_dir).free
        if free >= needed * 1.05:
            return
        keep = self.config.keep_states
        if keep:
            advice = (f"Keep Previous States is {keep}: older states are deleted only after a save "
                      "succeeds, so lower it")
        else:
            advice = ("Keep Previous States is 0 (every state is kept): set it to 1 or 2 so that older "
                      "states are deleted after each save")
        message = (f"The save of step {self.step} needs about {gigabytes(needed)} but only "
                   f"{gigabytes(free)} is free on the disk of {self.layout.run_dir}. If it fails, the "
                   f"previous checkpoint stays intact. {advice}, or free disk space.")
        log.warning("%s", message)
        self._record("disk", step=self.step, needed=needed, free=free, message=message)

    def _samples_off(self, reason: str) -> None:
        log.warning("Checkpoint samples are off for this run: %s", reason)
        self._record("samples_off", step=self.step, reason=reason)

    def _phase(self, phase: str) -> contextlib.AbstractContextManager:
        if isinstance(self.should_stop, StopControl):
            return self.should_stop.during(phase)
        return contextlib.nullcontext()

    def _stop_requested(self) -> bool:
        return self.should_stop is not None and bool(self.should_stop())

    # ------------------------------------------------------------------ state

    def _state(self) -> dict[str, Any]:
        return {
            "format_version": ckpt.STATE_FORMAT_VERSION, "step": self.step, "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch, "iterations": self.config.iterations,
            "model_config": resolved_model_config(self.config.model_kwargs),
            "optimizer": self.optimizer.state_dict(), "optimizer_kind": self.optimizer_kind,
            "scheduler": self.runner.schedule.state_dict(),
            "lr": self.runner.schedule.lr_at(max(self.step, 1)),
            "scaler": self.runner.scaler.state_dict() if self.runner.scaler else None,
            "rng": _rng_state(), "world_size": self.dist.world_size, "batch_size": self.config.batch_size,
            "nonfinite_streak": self.nonfinite_streak,
        }

    def _restore(self, state: dict[str, Any]) -> None:
        if state.get("optimizer_kind", "adamw") != self.optimizer_kind:
            raise ResumeError(f"The state was saved with optimiser {state['optimizer_kind']} but this run "
                              f"uses {self.optimizer_kind}; set BitsAndBytes as it was for that run.")
        try:
            self.optimizer.load_state_dict(state["optimizer"])
        except (ValueError, KeyError, RuntimeError) as e:
            raise ResumeError(f"The optimiser state in {self.config.resume_state} does not fit this model "
                              f"({e}).") from e
        if self.runner.scaler is not None and state.get("scaler"):
            self.runner.scaler.load_state_dict(state["scaler"])
        self.step, self.epoch = int(state["step"]), int(state["epoch"])
        self.batch_in_epoch = int(state["batch_in_epoch"])
        self.nonfinite_streak = int(state.get("nonfinite_streak", 0))
        if self.batch_in_epoch >= self.sampler.batches_per_epoch:  # the dataset shrank, or the epoch ended
            self.epoch, self.batch_in_epoch = self.epoch + 1, 0
        if self.dist.is_main and state.get("rng"):
            _set_rng_state(state["rng"])
        else:
            torch.manual_seed(self.config.seed + self.dist.rank + self.step)
        log.info("Resumed from %s at step %d (epoch %d), learning rate %.3g.", self.config.resume_state,
                 self.step, self.epoch, self.runner.schedule.lr_at(self.step + 1))

    def _save(self) -> None:
        self.last_saved_step = self.step
        if not self.dist.is_main:
            return
        log.info("Saving models and training states.")
        self._check_disk()
        with self._phase(SAVING):
            gpt = ckpt.save_checkpoint(self.layout, self.step, self.model, self._state())
        self.last_checkpoint = gpt
        pruned = ckpt.prune_checkpoints(self.layout, self.config.keep_states)
        self._record("checkpoint", step=self.step, epoch=self.epoch, gpt=gpt,
                     state=self.layout.state_path(self.step), pruned=pruned)
        if not self._stop_requested():  # a stopping run ends now; its sample would only delay that
            self._sample()

    def _sample(self) -> Path | None:
        if self.sample_fn is None:
            return None
        self._record("sample_start", step=self.step)
        rng = _rng_state()  # TextToSpeech reseeds the global generators; training must not notice
        wav = None
        try:
            with self._phase(SAMPLING):
                # the step is complete: its gradients are not needed, and freeing them makes room for
                # the decoders
                self.optimizer.zero_grad(set_to_none=True)
                release_memory()
                wav = self.sample_fn(self.model, self.layout.sample_path(self.step), self.step,
                                     self._stop_requested)
        except GenerationCancelled:
            log.info("The checkpoint sample of step %d was cancelled: the run is stopping.", self.step)
        except Exception as e:  # boundary: a failed sample must not end the run; later saves skip sampling
            log.exception("The checkpoint sample of step %d failed.", self.step)
            self.sample_fn = None
            self._samples_off(f"the sample of step {self.step} failed ({type(e).__name__}: {e})")
        finally:
            _set_rng_state(rng)
            self.model.train()
        self._record("sample", step=self.step, sample=wav)
        return wav

    @torch.no_grad()
    def _validate(self) -> None:
        if not self.dist.is_main:
            return
        self.forward.eval()
        loader = DataLoader(self.val_set, batch_size=self.config.validation_batch_size, collate_fn=collate)
        totals, clips = torch.zeros(3), 0
        for batch in loader:
            batch = {k: v.to(self.dist.device) for k, v in batch.items()}
            with self.runner.precision.autocast():
                loss_text, loss_mel = self.forward(**batch)
            losses = self.forward.weigh(loss_text.float(), loss_mel.float())
            n = batch["text"].shape[0]
            totals += torch.stack([losses.loss_text_ce, losses.loss_mel_ce, losses.loss_gpt_total]).cpu() * n
            clips += n
        self.forward.train()
        text, mel, total = (totals / max(clips, 1)).tolist()
        self._record("val", step=self.step, epoch=self.epoch, val_loss_text_ce=text, val_loss_mel_ce=mel,
                     val_loss_gpt_total=total, clips=clips)

    def _record(self, kind: str, **values: Any) -> None:
        if not self.dist.is_main:
            return
        record = self.metrics.write(kind, **values)
        if self.on_record is not None:
            self.on_record(record)


def _rng_state() -> dict[str, Any]:
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
    return {"python": random.getstate(), "torch": torch.get_rng_state(), "cuda": cuda}


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
