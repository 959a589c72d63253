"""Fine-tuning configuration: the TrainingConfig form, its Validate arithmetic, the derived step schedule,
and the training/<voice>/ files (train.yaml for the trainer, train.json for Reuse/Import).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from src.atomic import write_json_atomic, write_text_atomic
from src.config_file import coerce_fields
from src.errors import DatasetEmpty, InvalidInput, TrainingError
from src.paths import AppPaths, validate_voice_name

SCHEMA_VERSION = 1  # of train.json
TRAIN_LIST, VALIDATION_LIST = "train.txt", "validation.txt"
YAML_NAME, JSON_NAME = "train.yaml", "train.json"
RUN_FOLDER = "finetune"  # training/<voice>/finetune/{models,training_state}/, as mrq's later layout
BASE_MODEL_NAME = "autoregressive.pth"
RULES = ("seed", "modern")  # TRAINING_SPEC §5.2 (parity with 5037752) and §5.3 (later mrq)
LR_SCHEMES = ("MultiStepLR", "CosineAnnealingLR_Restart")
DEFAULT_LR_SCHEDULE = (9, 18, 25, 33)  # epochs at which MultiStepLR halves the LR
LR_GAMMA = 0.5
COSINE_ETA_MIN = 1e-8
# Micro-batch (batch / accumulation) cap by total VRAM in GB, as mrq's later get_device_batch_size.
VRAM_BATCH_CAPS = ((69, 128), (31, 64), (15, 8), (7, 4), (5, 2))
# Fixed data and model values the DLAS template carried (TRAINING_SPEC §2-§4).
DATASET_FIXED = {
    "mode": "paired_voice_audio", "fetcher_mode": ["lj"], "max_wav_length": 255995, "max_text_length": 200,
    "sample_rate": 22050, "load_conditioning": True, "num_conditioning_candidates": 2,
    "conditioning_length": 44000, "use_bpe_tokenizer": True, "load_aligned_codes": False,
}
GPT_FIXED = {
    "layers": 30, "model_dim": 1024, "heads": 16, "max_text_tokens": 402, "max_mel_tokens": 604,
    "max_conditioning_inputs": 2, "mel_length_compression": 1024, "number_text_tokens": 256,
    "number_mel_codes": 8194, "start_mel_token": 8192, "stop_mel_token": 8193, "start_text_token": 255,
    "train_solo_embeddings": False, "use_mel_codes_as_input": True, "checkpointing": True,
}
OPTIMIZER_FIXED = {"weight_decay": 0.01, "beta1": 0.9, "beta2": 0.96, "eps": 1e-8}
CLIP_GRAD_NORM = 4.0


def _field(default: Any, label: str, help_text: str, **extra: Any) -> Any:
    """A dataclass field whose metadata drives the form (label, help, minimum, maximum, step, choices)."""
    return field(default=default, metadata={"label": label, "help": help_text, **extra})


@dataclass(frozen=True)
class TrainingConfig:
    """The Generate Configuration form. Rates are in epochs; derive_schedule turns them into steps."""

    voice: str = _field("", "Dataset", "Folder under training/ holding train.txt (made by Prepare Dataset).")
    epochs: int = _field(500, "Epochs", "Passes over the dataset.", minimum=1)
    learning_rate: float = _field(
        1e-5, "Learning Rate", "AdamW learning rate; 1e-5 suits fine-tuning.", minimum=0.0, maximum=1e-4,
        step=1e-6)
    text_loss_weight: float = _field(
        0.01, "Text Loss Weight", "Weight of the text cross-entropy (later 'Text LR Ratio').",
        minimum=0.0, maximum=1.0)
    mel_loss_weight: float = _field(
        1.0, "Mel Loss Weight", "Weight of the mel-code cross-entropy (later 'Mel LR Ratio').",
        minimum=0.0, maximum=1.0)
    lr_scheme: str = _field(
        "MultiStepLR", "Learning Rate Scheme", "MultiStepLR halves the LR at each schedule epoch; "
        "CosineAnnealingLR_Restart anneals and restarts.", choices=LR_SCHEMES)
    lr_schedule: tuple[int, ...] = _field(
        DEFAULT_LR_SCHEDULE, "Learning Rate Schedule", "Epochs at which MultiStepLR halves the LR, "
        "as a JSON list such as [9, 18, 25, 33].")
    lr_restarts: int = _field(
        4, "Learning Rate Restarts", "Cosine scheme only: how many times the LR restarts.", minimum=1)
    batch_size: int = _field(128, "Batch Size", "Clips per optimiser step.", minimum=1)
    gradient_accumulation_size: int = _field(
        4, "Gradient Accumulation Size", "Chunks each batch is split into to save memory "
        "(the original 'Mega Batch Factor').", minimum=1)
    print_rate: int = _field(5, "Print Frequency (in epochs)", "How often losses are logged.", minimum=1)
    save_rate: int = _field(5, "Save Frequency (in epochs)", "How often a checkpoint is saved.", minimum=1)
    validation_rate: int = _field(
        5, "Validation Frequency (in epochs)", "How often the validation loss is computed.", minimum=1)
    use_validation: bool = _field(
        True, "Validation Enabled", "Compute a validation loss on validation.txt when it has lines.")
    keep_states: int = _field(
        0, "Keep X Previous States", "Checkpoints kept after each save; 0 keeps all.", minimum=0, maximum=8)
    use_half_precision: bool = _field(
        False, "Half Precision", "Train under fp16 autocast with a gradient scaler (CUDA).")
    use_bitsandbytes: bool = _field(
        True, "BitsAndBytes", "8-bit AdamW from bitsandbytes; needs the package and a CUDA GPU.")
    resume_state: str = _field(
        "", "Resume State Path", "A training_state/<step>.state file to continue from; empty starts fresh.")
    source_model: str = _field(
        "", "Source Model", "Autoregressive weights to start from (any *_gpt.pth); empty = base model.")
    tortoise_compat: bool = _field(
        False, "TorToiSe Compatibility", "DLAS tortoise_compat: train on all 250 codes of the padded clip.")
    gpus: int = _field(1, "GPUs", "GPUs to train on (modern rules round the batch to a multiple).", minimum=1)
    workers: int = _field(2, "Worker Processes", "Data-loading worker processes.", minimum=0, maximum=32)
    rules: str = _field(
        "seed", "Configuration Rules", "seed: the original tool's Validate arithmetic; modern: its later "
        "rules (no batch shrinking, ceil steps per epoch).", choices=RULES)


@dataclass(frozen=True)
class DatasetInfo:
    """A prepared dataset: list files and their line counts."""

    folder: Path
    train_path: Path
    train_size: int
    validation_path: Path | None = None
    validation_size: int = 0


@dataclass(frozen=True)
class TrainingSchedule:
    """Everything in steps (optimiser steps = iterations), as the trainer and train.yaml need it.

    Attributes:
        iterations: total steps (train.niter).
        steps_per_epoch: batches per epoch the rules assume (seed: floor(N/B); modern: ceil(N/B)).
        drop_last: whether the loader drops the last partial batch (seed) or keeps it (modern).
        print_freq, save_checkpoint_freq, validation_freq: in steps, each >= 1.
        validation_enabled: use_validation and validation.txt has lines.
        validation_batch_size: int(B / G) clamped to the validation lines (0 when disabled).
        lr_milestones: MultiStepLR milestones in steps (train.gen_lr_steps).
        lr_periods, lr_restarts, lr_restart_weights: CosineAnnealingLR_Restart settings (empty otherwise).
    """

    iterations: int
    steps_per_epoch: int
    drop_last: bool
    print_freq: int
    save_checkpoint_freq: int
    validation_freq: int
    validation_enabled: bool
    validation_batch_size: int
    lr_milestones: tuple[int, ...]
    lr_periods: tuple[int, ...] = ()
    lr_restarts: tuple[int, ...] = ()
    lr_restart_weights: tuple[float, ...] = ()

    @property
    def checkpoints(self) -> int:
        """How many checkpoints the run saves on schedule (the UI's [c/C] counter)."""
        return self.iterations // self.save_checkpoint_freq


@dataclass(frozen=True)
class SavedTraining:
    """What write_training_files wrote and why it changed anything."""

    config: TrainingConfig
    schedule: TrainingSchedule
    yaml_path: Path
    json_path: Path
    messages: tuple[str, ...]


def read_dataset_info(folder: str | os.PathLike[str]) -> DatasetInfo:
    """Count the non-empty lines of `folder/train.txt` and `folder/validation.txt`.

    Raises:
        DatasetEmpty: train.txt is missing or has no lines.
    """
    folder = Path(folder)
    train_path = folder / TRAIN_LIST
    if not train_path.is_file():
        raise DatasetEmpty(f"{folder} has no {TRAIN_LIST}; run Prepare Dataset for this voice first.")
    train_size = _count_lines(train_path)
    if train_size == 0:
        raise DatasetEmpty(f"{train_path} is empty; run Prepare Dataset again with audio that has speech.")
    validation_path = folder / VALIDATION_LIST
    if not validation_path.is_file():
        return DatasetInfo(folder, train_path, train_size)
    return DatasetInfo(folder, train_path, train_size, validation_path, _count_lines(validation_path))


def parse_lr_schedule(text: str) -> tuple[int, ...]:
    """Read the Learning Rate Schedule box: a JSON list of epochs; empty gives [9, 18, 25, 33].

    Raises:
        InvalidInput: the text is not a list of whole numbers.
    """
    if not text or not text.strip():
        return DEFAULT_LR_SCHEDULE
    try:
        values = json.loads(text)
    except json.JSONDecodeError:
        values = None
    if not isinstance(values, list) or not all(
            type(v) in (int, float) and float(v).is_integer() for v in values):
        raise InvalidInput(f"Learning Rate Schedule '{text}' is not a list of epochs like [9, 18, 25, 33].")
    return tuple(int(v) for v in values)


def detect_bitsandbytes() -> str | None:
    """Return None when 8-bit AdamW can run here, else the reason it cannot."""
    import importlib.util

    if importlib.util.find_spec("bitsandbytes") is None:
        return "the bitsandbytes package is not installed"
    from tortoise import cuda_device_count

    if cuda_device_count() == 0:
        return "no CUDA GPU was found"
    return None


def validate_config(
    config: TrainingConfig,
    dataset_size: int,
    mode: str | None = None,
    *,
    validation_size: int = 0,
    vram_gb: float | None = None,
    bitsandbytes_usable: bool | None = None,
    root: str | os.PathLike[str] | None = None,
) -> tuple[TrainingConfig, list[str]]:
    """Adjust a form to the dataset, as the Validate Training Configuration button does.

    Args:
        config: the form values.
        dataset_size: lines in train.txt (N).
        mode: "seed" (TRAINING_SPEC §5.2, including its batch-size rule) or "modern" (§5.3);
            None uses `config.rules`. The returned config records the mode in `rules`.
        validation_size: lines in validation.txt (0 when missing).
        vram_gb: total GPU memory for the modern micro-batch cap; None skips the cap.
        bitsandbytes_usable: whether 8-bit AdamW can run; None detects it (package + CUDA).
        root: folder that relative resume/source paths are resolved against (default: working folder).

    Returns:
        The adjusted config and one plain sentence per adjustment, ending with the step count.

    Raises:
        DatasetEmpty: dataset_size < 1.
        InvalidInput: unknown mode.
    """
    rules = mode or config.rules
    if rules not in RULES:
        raise InvalidInput(f"Unknown configuration rules '{rules}'; use one of {', '.join(RULES)}.")
    if dataset_size < 1:
        raise DatasetEmpty("The dataset has no lines; run Prepare Dataset first.")
    messages: list[str] = []
    config = _clamp_to_metadata(dataclasses.replace(config, rules=rules), messages)
    config = _clean_lr_schedule(config, messages)
    if rules == "seed":
        config = _seed_batch_rules(config, dataset_size, messages)
    else:
        config = _modern_batch_rules(config, dataset_size, vram_gb, messages)
    for name, label in (("print_rate", "Print"), ("save_rate", "Save"), ("validation_rate", "Validation")):
        rate = getattr(config, name)
        if rate > config.epochs:
            config = dataclasses.replace(config, **{name: config.epochs})
            messages.append(f"{label} frequency of {rate} epochs is more than the {config.epochs} training "
                            f"epochs; lowered to {config.epochs}.")
    config = _check_machine_and_paths(config, validation_size, bitsandbytes_usable, root, messages)
    schedule = derive_schedule(config, dataset_size, validation_size)
    messages.append(
        f"For {config.epochs} epochs with {dataset_size} lines in batches of {config.batch_size}, iterating "
        f"for {schedule.iterations} steps ({int(schedule.iterations / config.epochs)} steps per epoch).")
    return config, messages


def _check_machine_and_paths(
    config: TrainingConfig, validation_size: int, bitsandbytes_usable: bool | None,
    root: str | os.PathLike[str] | None, messages: list[str],
) -> TrainingConfig:
    """Clear a missing resume state, turn off unusable 8-bit AdamW, and warn about the rest."""
    if config.resume_state and not _resolve(config.resume_state, root).is_file():
        messages.append(f"Resume state {config.resume_state} does not exist; the run will start fresh.")
        config = dataclasses.replace(config, resume_state="")
    if config.source_model and not _resolve(config.source_model, root).is_file():
        messages.append(f"Source model {config.source_model} does not exist; pick an existing model "
                        "before saving.")
    if config.use_bitsandbytes:
        problem = detect_bitsandbytes() if bitsandbytes_usable is None else (
            None if bitsandbytes_usable else "it is not available on this machine")
        if problem:
            messages.append(f"BitsAndBytes (8-bit AdamW) turned off: {problem}.")
            config = dataclasses.replace(config, use_bitsandbytes=False)
    if config.use_validation and validation_size < 1:
        messages.append(f"Validation is skipped: the dataset has no {VALIDATION_LIST} lines.")
    if config.learning_rate == 0:
        messages.append("The learning rate is 0, so training will not change the model.")
    return config


def _clamp_to_metadata(config: TrainingConfig, messages: list[str]) -> TrainingConfig:
    """Bring numbers inside their field's minimum/maximum (zero and negatives too) and choices back to one."""
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        value, low, high = getattr(config, f.name), f.metadata.get("minimum"), f.metadata.get("maximum")
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            continue
        label = f.metadata["label"]
        if f.metadata.get("choices") and value not in f.metadata["choices"]:
            changes[f.name] = f.default
            messages.append(f"{label} '{value}' is not one of {', '.join(f.metadata['choices'])}; "
                            f"using {f.default}.")
        elif low is not None and value < low:
            changes[f.name] = low
            messages.append(f"{label} {value} is below the minimum {low}; raised to {low}.")
        elif high is not None and value > high:
            changes[f.name] = high
            messages.append(f"{label} {value} is above the maximum {high}; lowered to {high}.")
    return dataclasses.replace(config, **changes)


def _clean_lr_schedule(config: TrainingConfig, messages: list[str]) -> TrainingConfig:
    cleaned = tuple(sorted({int(e) for e in config.lr_schedule if e > 0}))
    if cleaned != tuple(config.lr_schedule):
        messages.append(f"Learning rate schedule {list(config.lr_schedule)} changed to {list(cleaned)}: "
                        "epochs must be positive, distinct and in order.")
    return dataclasses.replace(config, lr_schedule=cleaned)


def _seed_batch_rules(config: TrainingConfig, lines: int, messages: list[str]) -> TrainingConfig:
    """TRAINING_SPEC §5.2 steps 1-3 exactly, with a floor of 1 where the reference could reach 0."""
    batch, accumulation = config.batch_size, config.gradient_accumulation_size
    if batch > lines:
        messages.append(f"Batch size {batch} is larger than the {lines}-line dataset; lowered to {lines}.")
        batch = lines
    # The reference tested `batch % lines != 0`, which is true whenever batch < lines (kept for parity).
    if batch % lines != 0:
        slices = lines // batch + 1
        adjusted = max(1, lines // slices)
        if adjusted != batch:
            messages.append(f"Batch size {batch} lowered to {adjusted}: the original rule splits the "
                            f"{lines}-line dataset into {lines // adjusted} batches per epoch.")
            batch = adjusted
    if batch == 1 and accumulation != 1:
        messages.append(f"Gradient accumulation size {accumulation} set to 1 because the batch size is 1.")
        accumulation = 1
    elif batch / accumulation < 2 and batch > 1:  # batch 1 with factor 1 would give 0 in the reference
        messages.append(f"Gradient accumulation size {accumulation} would leave fewer than 2 clips per chunk "
                        f"of the {batch}-clip batch; lowered to {int(batch / 2)}.")
        accumulation = int(batch / 2)
    return dataclasses.replace(config, batch_size=batch, gradient_accumulation_size=accumulation)


def _modern_batch_rules(
    config: TrainingConfig, lines: int, vram_gb: float | None, messages: list[str]
) -> TrainingConfig:
    """TRAINING_SPEC §5.3: the batch is only clamped to the dataset; the accumulation adapts to it."""
    batch, accumulation, gpus = config.batch_size, config.gradient_accumulation_size, config.gpus
    if batch > lines:
        messages.append(f"Batch size {batch} is larger than the {lines}-line dataset; lowered to {lines}.")
        batch = lines
    if batch / accumulation < 2:
        adjusted = max(1, int(batch / 2))
        if adjusted != accumulation:
            messages.append(f"Gradient accumulation size {accumulation} would leave fewer than 2 clips per "
                            f"chunk of the {batch}-clip batch; lowered to {adjusted}.")
            accumulation = adjusted
    elif batch % accumulation != 0:
        adjusted = max(1, accumulation - batch % accumulation)
        messages.append(f"Batch size {batch} does not split evenly into {accumulation} chunks; gradient "
                        f"accumulation size lowered to {adjusted}.")
        accumulation = adjusted
    if batch % gpus != 0:
        adjusted = max(1, batch - batch % gpus)
        messages.append(f"Batch size {batch} lowered to {adjusted}, a multiple of the {gpus} GPUs.")
        batch = adjusted
    if vram_gb is not None:
        cap = next((c for gb, c in VRAM_BATCH_CAPS if vram_gb > gb), 1)
        if int(batch / accumulation) > cap:
            adjusted = int(batch / cap)
            messages.append(f"{int(batch / accumulation)} clips per chunk may not fit in {vram_gb:.1f} GB "
                            f"(suggested at most {cap}); gradient accumulation size raised to {adjusted}.")
            accumulation = adjusted
    return dataclasses.replace(config, batch_size=batch, gradient_accumulation_size=accumulation)


def derive_schedule(config: TrainingConfig, dataset_size: int, validation_size: int = 0) -> TrainingSchedule:
    """Turn a validated config into steps, with the arithmetic of `config.rules` (TRAINING_SPEC §5.2/§5.3).

    Seed: I = int(E*N/B); print/save/validation = int(rate*I/E); milestones = int(I/E*epoch).
    Modern: I = E*ceil(N/B); frequencies = rate*int(I/E); milestones = int(I/E)*epoch. All frequencies >= 1.

    Raises:
        TrainingError: the config has not been validated (batch outside 1..N, epochs < 1).
    """
    batch, epochs, lines = config.batch_size, config.epochs, dataset_size
    if epochs < 1 or not 1 <= batch <= lines or config.gradient_accumulation_size < 1:
        raise TrainingError(f"Batch size {batch} or {epochs} epochs do not fit the {lines}-line dataset; "
                            "press Validate Training Configuration first.")
    rates = (config.print_rate, config.save_rate, config.validation_rate)
    if config.rules == "modern":
        steps_per_epoch = math.ceil(lines / batch)
        iterations = epochs * steps_per_epoch
        per_epoch = int(iterations / epochs)
        print_freq, save_freq, validation_freq = (r * per_epoch for r in rates)
        milestones = tuple(per_epoch * e for e in config.lr_schedule)
    else:  # float arithmetic in the reference's order, for identical rounding
        steps_per_epoch = lines // batch
        iterations = int(epochs * lines / batch)
        per_epoch = int(iterations / epochs)
        print_freq, save_freq, validation_freq = (int(r * iterations / epochs) for r in rates)
        milestones = tuple(int(iterations / epochs * e) for e in config.lr_schedule)
    use_validation = config.use_validation and validation_size > 0
    periods, restarts, weights = _cosine_restarts(config, per_epoch)
    return TrainingSchedule(
        iterations=iterations, steps_per_epoch=steps_per_epoch, drop_last=config.rules == "seed",
        print_freq=max(1, print_freq), save_checkpoint_freq=max(1, save_freq),
        validation_freq=max(1, validation_freq), validation_enabled=use_validation,
        validation_batch_size=min(max(1, int(batch / config.gradient_accumulation_size)), validation_size)
        if use_validation else 0,
        lr_milestones=milestones, lr_periods=periods, lr_restarts=restarts, lr_restart_weights=weights)


def _cosine_restarts(
    config: TrainingConfig, per_epoch: int
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[float, ...]]:
    """Restart points every int(E/R) epochs with weights (R-1-x)/R, the last halved (mrq's later rule)."""
    if config.lr_scheme != "CosineAnnealingLR_Restart":
        return (), (), ()
    count = config.lr_restarts
    period = max(1, per_epoch * int(config.epochs / count))
    weights = [(count - x - 1) / count for x in range(count)]
    weights[-1] = weights[-2] * 0.5 if count > 1 else 0.5
    # DLAS reads T_period[i + 1] at restart i, so there is one more period than restarts.
    return (period,) * (count + 1), tuple(period * (x + 1) for x in range(count)), tuple(weights)


def build_yaml(config: TrainingConfig, dataset: DatasetInfo, schedule: TrainingSchedule,
               source_model: Path | None, resume_state: Path | None, run_dir: Path,
               models_dir: Path | None = None) -> dict[str, Any]:
    """The train.yaml mapping: DLAS names for the §5.1 fields plus the fixed §2-§4 values.

    `path.pretrain_model_gpt` is None when resuming (the state's weights win) or for the base model
    when no models folder is known; paths are absolute.
    """
    def dataset_block(name: str, path: Path | None, batch: int, **extra: Any) -> dict[str, Any]:
        return {"name": name, "path": str(path.absolute()) if path else None, "batch_size": batch, **extra,
                **copy.deepcopy(DATASET_FIXED)}  # copies, or yaml would write anchors for shared lists

    train: dict[str, Any] = {
        "niter": schedule.iterations, "warmup_iter": -1,
        "mega_batch_factor": config.gradient_accumulation_size,
        "val_freq": schedule.validation_freq, "ema_enabled": False, "default_lr_scheme": config.lr_scheme,
        "gen_lr_steps": list(schedule.lr_milestones), "lr_gamma": LR_GAMMA,
    }
    if config.lr_scheme == "CosineAnnealingLR_Restart":
        train.update(T_period=list(schedule.lr_periods), warmup=0, eta_min=COSINE_ETA_MIN,
                     restarts=list(schedule.lr_restarts), restart_weights=list(schedule.lr_restart_weights))
    return {
        "name": config.voice, "model": "extensibletrainer", "gpu_ids": list(range(config.gpus)),
        "start_step": -1, "checkpointing_enabled": True, "fp16": config.use_half_precision,
        "use_tb_logger": True, "wandb": False,
        "datasets": {
            "train": dataset_block(f"{config.voice}-train", dataset.train_path, config.batch_size,
                                   phase="train", n_workers=config.workers, drop_last=schedule.drop_last),
            "val": dataset_block(f"{config.voice}-val", dataset.validation_path,
                                 schedule.validation_batch_size, phase="val",
                                 enabled=schedule.validation_enabled),
        },
        "networks": {"gpt": {"type": "generator", "which_model_G": "unified_voice2",
                             "kwargs": {**GPT_FIXED, "tortoise_compat": config.tortoise_compat}}},
        "path": {"pretrain_model_gpt": _absolute(source_model) if not resume_state else None,
                 "strict_load": True, "resume_state": _absolute(resume_state), "run_dir": _absolute(run_dir),
                 # where the trainer finds dvae.pth, tokenizer.json and mel_norms.pth
                 "models_dir": _absolute(models_dir)},
        "steps": {"gpt_train": {
            "training": "gpt", "optimizer": "adamw",
            "optimizer_params": {"lr": config.learning_rate, **OPTIMIZER_FIXED},
            "clip_grad_eps": CLIP_GRAD_NORM,
            "losses": {
                "text_ce": {"type": "direct", "weight": config.text_loss_weight, "key": "loss_text_ce"},
                "mel_ce": {"type": "direct", "weight": config.mel_loss_weight, "key": "loss_mel_ce"}},
        }},
        "train": train,
        "logger": {"print_freq": schedule.print_freq, "save_checkpoint_freq": schedule.save_checkpoint_freq,
                   "visual_debug_rate": schedule.print_freq, "keep_states": config.keep_states},
        "ext": {"bitsandbytes": config.use_bitsandbytes},
    }


def write_training_files(
    target: AppPaths | str | os.PathLike[str],
    config: TrainingConfig,
    dataset: DatasetInfo | None = None,
    *,
    vram_gb: float | None = None,
    bitsandbytes_usable: bool | None = None,
) -> SavedTraining:
    """Validate `config`, then write train.yaml and train.json (each atomically) into the dataset folder.

    Args:
        target: AppPaths (files go to training/<config.voice>/, relative paths resolve against the root,
            the base model is models/tortoise/autoregressive.pth) or the dataset folder itself.
        config: the form values; adjusted by validate_config with `config.rules`.
        dataset: the dataset's line counts; read from the folder when None.
        vram_gb, bitsandbytes_usable: passed to validate_config.

    Returns:
        The adjusted config, its schedule, the two paths and the messages to show.

    Raises:
        InvalidInput: no dataset is chosen.
        InvalidVoiceName: the dataset name is not a plain folder name.
        DatasetEmpty: no usable train.txt.
        TrainingError: the resume state or the source model does not exist.
    """
    if not (config.voice or "").strip():
        raise InvalidInput("Choose a Dataset first (prepare one in Prepare Dataset), then save.")
    voice = validate_voice_name(config.voice)
    config = dataclasses.replace(config, voice=voice)
    if isinstance(target, AppPaths):
        folder, root = target.training_dir_for(voice), target.root
        models_dir: Path | None = target.tortoise_models_dir
        base_model: Path | None = models_dir / BASE_MODEL_NAME
    else:
        folder, root, base_model, models_dir = Path(target), None, None, None
    dataset = dataset or read_dataset_info(folder)
    resume = _resolve(config.resume_state, root) if config.resume_state else None
    if resume is not None and not resume.is_file():
        raise TrainingError(f"Resume state {config.resume_state} does not exist. Pick one of the "
                            "training_state/*.state files or clear the box to start fresh.")
    source = _resolve(config.source_model, root) if config.source_model else base_model
    if resume is None and config.source_model and not _resolve(config.source_model, root).is_file():
        raise TrainingError(f"Source model {config.source_model} does not exist. Pick an existing "
                            "*.pth file or clear the box to fine-tune the base model.")
    config, messages = validate_config(
        config, dataset.train_size, validation_size=dataset.validation_size, vram_gb=vram_gb,
        bitsandbytes_usable=bitsandbytes_usable, root=root)
    schedule = derive_schedule(config, dataset.train_size, dataset.validation_size)
    data = build_yaml(config, dataset, schedule, source, resume, folder / RUN_FOLDER, models_dir)
    yaml_path, json_path = folder / YAML_NAME, folder / JSON_NAME
    header = "# Written by the Training tab from train.json; change the form and Save instead of editing.\n"
    write_text_atomic(yaml_path, header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    write_json_atomic(json_path, {"schema_version": SCHEMA_VERSION, **dataclasses.asdict(config)})
    messages.append(f"Training settings saved to: {yaml_path}")
    return SavedTraining(config, schedule, yaml_path, json_path, tuple(messages))


def load_training_config(
    folder: str | os.PathLike[str], *, offer_resume: bool = True
) -> tuple[TrainingConfig, list[str]]:
    """Read `folder/train.json` back into the form (Reuse/Import).

    Args:
        folder: training/<voice>/.
        offer_resume: put the newest finetune/training_state/<step>.state in resume_state, if any.

    Returns:
        The config (wrong or missing values take their defaults) and messages for the console.

    Raises:
        TrainingError: train.json is missing or not a readable JSON object.
    """
    folder = Path(folder)
    path = folder / JSON_NAME
    if not path.is_file():
        raise TrainingError(f"No saved training configuration in {folder}; "
                            "press Save Training Configuration first.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise TrainingError(f"{path} could not be read ({error}); save the configuration again.") from error
    if not isinstance(data, dict):
        raise TrainingError(f"{path} does not hold a configuration; save the configuration again.")
    data.pop("schema_version", None)
    values, problems, unknown = coerce_fields(TrainingConfig, data)
    messages = [f"Importing from: {path}", *problems]
    if unknown:
        messages.append(f"Ignored unknown setting(s): {', '.join(sorted(unknown))}.")
    config = TrainingConfig(**{"voice": folder.name, **values})
    if offer_resume:
        states = find_resume_states(folder / RUN_FOLDER)
        if states:
            config = dataclasses.replace(config, resume_state=str(states[0]))
            messages.append(f"Latest resume found: {states[0]}")
    return config, messages


def find_resume_states(run_dir: str | os.PathLike[str]) -> list[Path]:
    """List `run_dir/training_state/<step>.state`, highest step first (empty if there are none)."""
    state_dir = Path(run_dir) / "training_state"
    if not state_dir.is_dir():
        return []
    states = [p for p in state_dir.glob("*.state") if p.stem.isdigit() and p.is_file()]
    return sorted(states, key=lambda p: int(p.stem), reverse=True)


def _resolve(path: str, root: str | os.PathLike[str] | None) -> Path:
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() or root is None else Path(root) / candidate


def _absolute(path: Path | None) -> str | None:
    return str(path.absolute()) if path else None


def _count_lines(path: Path) -> int:
    return sum(1 for line in path.read_text(encoding="utf-8").split("\n") if line.strip())


