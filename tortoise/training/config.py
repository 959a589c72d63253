"""TrainerConfig: every setting of one fine-tuning run, read from the DLAS-style train.yaml that the
Training tab writes (TRAINING_SPEC §5.1), with the defaults of §2-§4.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tortoise.training.errors import TrainingError

LR_SCHEMES = ("MultiStepLR", "CosineAnnealingLR_Restart")
DEFAULT_SAMPLE_TEXT = "This is a sample of the fine-tuned voice, saved with the checkpoint."
# DLAS's unified_voice2 counted the text table's rows (256); our UnifiedVoice argument excludes the
# start-token row, as official TorToiSe builds it (number_text_tokens=255 -> 256 rows).
DLAS_TEXT_TOKENS, TORTOISE_TEXT_TOKENS = 256, 255


@dataclass(frozen=True)
class TrainerConfig:
    """One fine-tuning run. Steps are optimiser steps; the first is step 1.

    Attributes:
        train_list: LJSpeech-style `train.txt` (`<audio path>|<transcript>`, paths relative to it).
        run_dir: where models/, training_state/, metrics.jsonl and the log go.
        iterations: optimiser steps to run in total (train.niter).
        validation_list: optional `validation.txt`; used when validation_enabled.
        validation_batch_size: clips per validation batch.
        source_model: AR weights to start from (`autoregressive.pth` or any `*_gpt.pth`); None starts from
            random weights (benchmarks only). Ignored when resuming.
        resume_state: a `training_state/<step>.state` to continue from.
        models_dir: folder holding dvae.pth, tokenizer.json and mel_norms.pth (the app's models/tortoise).
        dvae_path, tokenizer_path, mel_norms_path: explicit files; None takes them from models_dir.
        codes_cache_dir: DVAE code cache; None is `<train_list folder>/dvae_codes`.
        model_kwargs: UnifiedVoice constructor overrides (empty = the full-size official model).
        dvae_kwargs: DiscreteVAE constructor overrides (empty = the official dvae.pth configuration).
        batch_size: clips per optimiser step over all processes (DLAS batch_size).
        gradient_accumulation: chunks each process's batch is split into (mega_batch_factor).
        learning_rate, weight_decay, betas, eps: AdamW settings (§4.4).
        lr_scheme: MultiStepLR or CosineAnnealingLR_Restart.
        lr_milestones, lr_gamma: MultiStepLR milestones in steps (gen_lr_steps) and factor.
        lr_periods, lr_restarts, lr_restart_weights, lr_eta_min: cosine-with-restarts settings.
        clip_grad_norm: max L2 norm per parameter group.
        text_loss_weight, mel_loss_weight: weights of the two cross-entropies in loss_gpt_total.
        print_freq, save_checkpoint_freq, validation_freq: in steps, each >= 1.
        keep_states: checkpoints kept after each save; 0 keeps all.
        use_fp16: fp16 autocast + GradScaler (CUDA only). use_bf16: bf16 autocast (CUDA or CPU).
        use_bitsandbytes: 8-bit AdamW when bitsandbytes imports and the device is CUDA.
        tortoise_compat: DLAS tortoise_compat (train on all codes of the padded clip, §4.3).
        use_gradient_checkpointing: recompute GPT blocks in backward (memory only).
        workers: DataLoader worker processes. drop_last: drop the last partial batch of an epoch.
        seed: seeds the epoch shuffles (the same on every process, so shards never overlap).
        max_nonfinite_steps: consecutive non-finite losses that abort the run.
        sample_enabled, sample_text, sample_voice_clips, sample_preset: the checkpoint sample.
        sample_model_configs: constructor overrides of the sample's decoder models (tests: tiny sizes).
        sample_overrides: GenerationOptions fields for the sample (e.g. fewer diffusion iterations).
        name: run name for logs. config_path: the yaml it came from (copied into the run folder).
    """

    train_list: Path
    run_dir: Path
    iterations: int
    validation_list: Path | None = None
    validation_enabled: bool = False
    validation_batch_size: int = 1
    source_model: Path | None = None
    resume_state: Path | None = None
    models_dir: Path | None = None
    dvae_path: Path | None = None
    tokenizer_path: Path | None = None
    mel_norms_path: Path | None = None
    codes_cache_dir: Path | None = None
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    dvae_kwargs: dict[str, Any] = field(default_factory=dict)
    batch_size: int = 128
    gradient_accumulation: int = 4
    learning_rate: float = 1e-5
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.96)
    eps: float = 1e-8
    lr_scheme: str = "MultiStepLR"
    lr_milestones: tuple[int, ...] = ()
    lr_gamma: float = 0.5
    lr_periods: tuple[int, ...] = ()
    lr_restarts: tuple[int, ...] = ()
    lr_restart_weights: tuple[float, ...] = ()
    lr_eta_min: float = 1e-8
    clip_grad_norm: float = 4.0
    text_loss_weight: float = 0.01
    mel_loss_weight: float = 1.0
    print_freq: int = 1
    save_checkpoint_freq: int = 100
    validation_freq: int = 100
    keep_states: int = 0
    use_fp16: bool = False
    use_bf16: bool = False
    use_bitsandbytes: bool = False
    tortoise_compat: bool = False
    use_gradient_checkpointing: bool = False
    workers: int = 0
    drop_last: bool = True
    seed: int = 0
    max_nonfinite_steps: int = 10
    sample_enabled: bool = True
    sample_text: str = DEFAULT_SAMPLE_TEXT
    sample_voice_clips: tuple[Path, ...] = ()
    sample_preset: str = "ultra_fast"
    sample_model_configs: dict[str, dict[str, Any]] = field(default_factory=dict)
    sample_overrides: dict[str, Any] = field(default_factory=dict)
    name: str = "finetune"
    config_path: Path | None = None

    def __post_init__(self) -> None:
        checks = (
            ("iterations", self.iterations >= 1), ("batch_size", self.batch_size >= 1),
            ("gradient_accumulation", self.gradient_accumulation >= 1),
            ("print_freq", self.print_freq >= 1), ("save_checkpoint_freq", self.save_checkpoint_freq >= 1),
            ("validation_freq", self.validation_freq >= 1), ("keep_states", self.keep_states >= 0),
            ("validation_batch_size", self.validation_batch_size >= 1), ("workers", self.workers >= 0),
            ("learning_rate", self.learning_rate >= 0),
            ("max_nonfinite_steps", self.max_nonfinite_steps >= 1),
        )
        bad = [name for name, ok in checks if not ok]
        if bad:
            values = ", ".join(f"{name}={getattr(self, name)}" for name in bad)
            raise TrainingError(f"Invalid training settings: {values}. Save the configuration again from "
                                "the Training tab (Validate fixes these).")
        if self.lr_scheme not in LR_SCHEMES:
            raise TrainingError(f"Unknown learning rate scheme '{self.lr_scheme}'; use one of "
                                f"{', '.join(LR_SCHEMES)}.")
        if self.use_fp16 and self.use_bf16:
            raise TrainingError("Choose either fp16 (Half Precision) or bf16, not both.")

    def replace(self, **changes: Any) -> TrainerConfig:
        """A copy with `changes` applied (validated again)."""
        return dataclasses.replace(self, **changes)

    def model_file(self, name: str) -> Path:
        """Path of dvae.pth / tokenizer.json / mel_norms.pth: the explicit one, else models_dir/<name>."""
        explicit = {"dvae.pth": self.dvae_path, "tokenizer.json": self.tokenizer_path,
                    "mel_norms.pth": self.mel_norms_path}[name]
        if explicit is not None:
            return explicit
        if self.models_dir is None:
            raise TrainingError(f"No models folder is set, so {name} cannot be found. Pass --models-dir.")
        return self.models_dir / name


def load_config(
    path: str | os.PathLike[str], *, merge: dict[str, Any] | None = None, **overrides: Any
) -> TrainerConfig:
    """Read a train.yaml (as src/finetune.py `build_yaml` writes it) into a TrainerConfig.

    Relative paths in the file resolve against the file's folder. Besides the DLAS keys, optional keys
    `path.models_dir`, `path.dvae`, `path.tokenizer`, `path.mel_norms`, `path.codes_cache`,
    `networks.dvae.kwargs`, `bf16`, `seed` and an `ext.sample` block ({enabled, text, voice_clips,
    preset, model_configs, overrides}) are understood.

    Args:
        path: the yaml file.
        merge: a mapping in the file's own shape merged into it first (nested mappings merge, other
            values replace), e.g. `{"networks": {"gpt": {"kwargs": {"layers": 2}}}}` for a small model.
        **overrides: TrainerConfig fields that win over the file (e.g. from command-line flags).

    Raises:
        TrainingError: the file is missing, unreadable, or lacks a required key.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise TrainingError(f"Training configuration {path} not found; press Save Training Configuration "
                            "first.") from e
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise TrainingError(f"Training configuration {path} cannot be read ({e}); save it again.") from e
    if not isinstance(data, dict):
        raise TrainingError(f"Training configuration {path} is not a YAML mapping; save it again.")
    values = _from_mapping(merge_mappings(data, merge or {}), path.parent)
    values["config_path"] = path
    values.update(overrides)
    return TrainerConfig(**values)


def merge_mappings(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """`base` with `changes` applied: nested mappings merge key by key, any other value replaces."""
    merged = dict(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_mappings(merged[key], value)
        else:
            merged[key] = value
    return merged


def _from_mapping(data: dict[str, Any], base: Path) -> dict[str, Any]:
    def get(*keys: str, default: Any = None) -> Any:
        node: Any = data
        for key in keys:
            if not isinstance(node, dict) or key not in node:
                return default
            node = node[key]
        return default if node is None else node

    def path_of(*keys: str) -> Path | None:
        value = get(*keys)
        if value in (None, ""):
            return None
        candidate = Path(str(value)).expanduser()
        return candidate if candidate.is_absolute() else base / candidate

    train_list = path_of("datasets", "train", "path")
    if train_list is None:
        raise TrainingError("The configuration has no datasets.train.path (the train.txt list).")
    run_dir = path_of("path", "run_dir") or train_list.parent / "finetune"
    niter = get("train", "niter")
    if niter is None:
        raise TrainingError("The configuration has no train.niter (number of steps).")
    gpt_kwargs = dict(get("networks", "gpt", "kwargs", default={}))
    step = get("steps", "gpt_train", default={})
    optimizer = step.get("optimizer_params", {}) if isinstance(step, dict) else {}
    losses = step.get("losses", {}) if isinstance(step, dict) else {}
    sample = get("ext", "sample", default={})
    values: dict[str, Any] = {
        "name": str(get("name", default="finetune")),
        "train_list": train_list, "run_dir": run_dir, "iterations": int(niter),
        "validation_list": path_of("datasets", "val", "path"),
        "validation_enabled": bool(get("datasets", "val", "enabled", default=False)),
        "validation_batch_size": max(1, int(get("datasets", "val", "batch_size", default=1))),
        "source_model": path_of("path", "pretrain_model_gpt"),
        "resume_state": path_of("path", "resume_state"),
        "models_dir": path_of("path", "models_dir"), "dvae_path": path_of("path", "dvae"),
        "tokenizer_path": path_of("path", "tokenizer"), "mel_norms_path": path_of("path", "mel_norms"),
        "codes_cache_dir": path_of("path", "codes_cache"),
        "model_kwargs": model_kwargs_from_dlas(gpt_kwargs),
        "dvae_kwargs": dict(get("networks", "dvae", "kwargs", default={})),
        "tortoise_compat": bool(gpt_kwargs.get("tortoise_compat", False)),
        "use_gradient_checkpointing": bool(gpt_kwargs.get("checkpointing", False)),
        "batch_size": int(get("datasets", "train", "batch_size", default=128)),
        "workers": int(get("datasets", "train", "n_workers", default=0)),
        "drop_last": bool(get("datasets", "train", "drop_last", default=True)),
        "gradient_accumulation": int(get("train", "mega_batch_factor", default=1)),
        "validation_freq": int(get("train", "val_freq", default=100)),
        "lr_scheme": str(get("train", "default_lr_scheme", default="MultiStepLR")),
        "lr_milestones": tuple(int(m) for m in get("train", "gen_lr_steps", default=[])),
        "lr_gamma": float(get("train", "lr_gamma", default=0.5)),
        "lr_periods": tuple(int(p) for p in get("train", "T_period", default=[])),
        "lr_restarts": tuple(int(r) for r in get("train", "restarts", default=[])),
        "lr_restart_weights": tuple(float(w) for w in get("train", "restart_weights", default=[])),
        "lr_eta_min": float(get("train", "eta_min", default=1e-8)),
        "learning_rate": float(optimizer.get("lr", 1e-5)),
        "weight_decay": float(optimizer.get("weight_decay", 0.01)),
        "betas": (float(optimizer.get("beta1", 0.9)), float(optimizer.get("beta2", 0.96))),
        "eps": float(optimizer.get("eps", 1e-8)),
        "clip_grad_norm": float(step.get("clip_grad_eps", 4.0)) if isinstance(step, dict) else 4.0,
        "text_loss_weight": float(losses.get("text_ce", {}).get("weight", 0.01)),
        "mel_loss_weight": float(losses.get("mel_ce", {}).get("weight", 1.0)),
        "print_freq": int(get("logger", "print_freq", default=1)),
        "save_checkpoint_freq": int(get("logger", "save_checkpoint_freq", default=100)),
        "keep_states": int(get("logger", "keep_states", default=0)),
        "use_fp16": bool(get("fp16", default=False)), "use_bf16": bool(get("bf16", default=False)),
        "use_bitsandbytes": bool(get("ext", "bitsandbytes", default=False)),
        "seed": int(get("seed", default=0)),
    }
    if isinstance(sample, dict):
        values["sample_enabled"] = bool(sample.get("enabled", True))
        values["sample_text"] = str(sample.get("text") or DEFAULT_SAMPLE_TEXT)
        values["sample_preset"] = str(sample.get("preset") or "ultra_fast")
        clips = sample.get("voice_clips") or []
        values["sample_voice_clips"] = tuple(
            Path(c) if Path(c).is_absolute() else base / c for c in clips)
        configs = sample.get("model_configs") or {}
        values["sample_model_configs"] = {str(k): dict(v) for k, v in configs.items() if isinstance(v, dict)}
        values["sample_overrides"] = dict(sample.get("overrides") or {})
    return values


def model_kwargs_from_dlas(kwargs: dict[str, Any]) -> dict[str, Any]:
    """UnifiedVoice constructor arguments from a DLAS `networks.gpt.kwargs` block.

    Keys our UnifiedVoice does not take (tortoise_compat, DLAS-only switches) are dropped;
    `checkpointing` only switches gradient checkpointing (memory), so it is dropped too.
    `number_text_tokens: 256` (DLAS counts every text table row) becomes 255 (TorToiSe's argument).
    """
    from tortoise.models.autoregressive import UnifiedVoice

    accepted = set(inspect.signature(UnifiedVoice.__init__).parameters) - {"self", "checkpointing"}
    out = {k: v for k, v in kwargs.items() if k in accepted}
    if out.get("number_text_tokens") == DLAS_TEXT_TOKENS and out.get("start_text_token", 255) == 255:
        out["number_text_tokens"] = TORTOISE_TEXT_TOKENS
    return out


def resolved_model_config(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Every UnifiedVoice constructor argument (defaults filled in, `checkpointing` left out), so two
    configurations that build the same model compare equal."""
    from tortoise.models.autoregressive import UnifiedVoice

    parameters = inspect.signature(UnifiedVoice.__init__).parameters
    defaults = {name: p.default for name, p in parameters.items() if name not in ("self", "checkpointing")}
    return {**defaults, **{k: v for k, v in kwargs.items() if k != "checkpointing"}}
