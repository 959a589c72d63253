"""Run folder and checkpoints (TRAINING_SPEC §6): `models/<step>_gpt.pth` (flat fp32 state dict that loads
as autoregressive.pth), `training_state/<step>.state` for resume, atomic saves, keep-X pruning, and
archiving the previous run folder.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tortoise.training.errors import ResumeError, TrainingError

log = logging.getLogger(__name__)

STATE_FORMAT_VERSION = 1
GPT_SUFFIX = "_gpt.pth"
STATE_SUFFIX = ".state"
SAMPLE_SUFFIX = "_sample.wav"
METRICS_NAME = "metrics.jsonl"
_STEP_FILE = re.compile(r"^(\d+)(_gpt\.pth|\.state)$")
REQUIRED_STATE_KEYS = ("format_version", "step", "epoch", "batch_in_epoch", "model_config", "optimizer")


@dataclass(frozen=True)
class RunLayout:
    """Where a run keeps its files (mrq's later layout, training/<voice>/finetune/)."""

    run_dir: Path

    @property
    def models_dir(self) -> Path:
        return self.run_dir / "models"

    @property
    def state_dir(self) -> Path:
        return self.run_dir / "training_state"

    @property
    def metrics_path(self) -> Path:
        return self.run_dir / METRICS_NAME

    def gpt_path(self, step: int) -> Path:
        return self.models_dir / f"{step}{GPT_SUFFIX}"

    def state_path(self, step: int) -> Path:
        return self.state_dir / f"{step}{STATE_SUFFIX}"

    def sample_path(self, step: int) -> Path:
        return self.models_dir / f"{step}{SAMPLE_SUFFIX}"

    def create(self) -> None:
        self.models_dir.mkdir(parents=True, exist_ok=True)
        self.state_dir.mkdir(parents=True, exist_ok=True)

    def saved_steps(self) -> list[int]:
        """Steps with a `_gpt.pth` or `.state` file, ascending."""
        steps = set()
        for folder in (self.models_dir, self.state_dir):
            if folder.is_dir():
                steps.update(int(m.group(1)) for p in folder.iterdir() if (m := _STEP_FILE.match(p.name)))
        return sorted(steps)


def gpt_path_for_state(state_path: Path) -> Path:
    """`<run>/training_state/<n>.state` -> `<run>/models/<n>_gpt.pth`."""
    return state_path.parent.parent / "models" / f"{state_path.stem}{GPT_SUFFIX}"


def archive_run_dir(run_dir: Path) -> Path | None:
    """Rename an existing, non-empty run folder to `<folder>_archived_<yymmdd-HHMMSS>` (fresh runs only).

    Returns:
        The archive's path, or None when there was nothing to archive.
    """
    if not run_dir.is_dir() or not any(run_dir.iterdir()):
        return None
    target = run_dir.with_name(f"{run_dir.name}_archived_{time.strftime('%y%m%d-%H%M%S')}")
    suffix = 1
    while target.exists():  # two fresh runs within one second
        target = target.with_name(f"{run_dir.name}_archived_{time.strftime('%y%m%d-%H%M%S')}_{suffix}")
        suffix += 1
    run_dir.rename(target)
    log.info("Archived the previous run folder to %s", target)
    return target


def gpt_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The flat, fp32, CPU state dict that loads as autoregressive.pth (no wrapper, no `module.`)."""
    out = {}
    for key, value in model.state_dict().items():
        if key.startswith("module."):
            raise TrainingError(f"Refusing to save a wrapped model (key {key}); save the UnifiedVoice.")
        out[key] = value.detach().to("cpu", torch.float32 if value.is_floating_point() else value.dtype)
    return out


def save_checkpoint(layout: RunLayout, step: int, model: nn.Module, state: dict[str, Any]) -> Path:
    """Write `<step>_gpt.pth` and `<step>.state` atomically.

    Both files are first written to temporary names in their folders and renamed only when both
    are complete, so a failure (disk full, killed process) leaves every earlier checkpoint intact.

    Returns:
        The `_gpt.pth` path.

    Raises:
        TrainingError: a write failed; the message says whether the disk is full.
    """
    layout.create()
    targets = [(gpt_state_dict(model), layout.gpt_path(step)), (state, layout.state_path(step))]
    temporaries: list[Path] = []
    try:
        for obj, target in targets:
            temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.tmp")
            temporaries.append(temporary)
            with open(temporary, "wb") as f:
                torch.save(obj, f)
                f.flush()
                os.fsync(f.fileno())
        for temporary, (_, target) in zip(temporaries, targets):
            os.replace(temporary, target)
    except (OSError, RuntimeError) as e:  # torch.save reports some write errors as RuntimeError
        full = isinstance(e, OSError) and e.errno == errno.ENOSPC or "No space left" in str(e)
        previous = [s for s in layout.saved_steps() if s != step]
        kept = f"the checkpoint of step {previous[-1]} is intact" if previous else "there is no earlier one"
        reason = "the disk is full" if full else str(e)
        raise TrainingError(f"Could not save the checkpoint of step {step}: {reason}. Nothing was "
                            f"overwritten; {kept}. Free disk space (or lower Keep X Previous States) and "
                            "resume.") from e
    finally:
        for temporary in temporaries:
            temporary.unlink(missing_ok=True)
    return layout.gpt_path(step)


def prune_checkpoints(layout: RunLayout, keep: int) -> list[int]:
    """Delete `_gpt.pth`/`.state` of all but the newest `keep` steps (0 keeps all); samples are kept.

    Returns:
        The steps deleted.
    """
    if keep <= 0:
        return []
    doomed = layout.saved_steps()[:-keep]
    for step in doomed:
        layout.gpt_path(step).unlink(missing_ok=True)
        layout.state_path(step).unlink(missing_ok=True)
    if doomed:
        log.info("Removed the checkpoints of steps %s (keeping %d)", ", ".join(map(str, doomed)), keep)
    return doomed


def load_resume_state(path: Path, model_config: dict[str, Any], iterations: int) -> dict[str, Any]:
    """Read and check a `<step>.state` before anything is restored from it.

    Args:
        path: the state file.
        model_config: UnifiedVoice arguments of the run being resumed; must equal the state's.
        iterations: the run's total steps; the state must be before the end.

    Returns:
        The state dict, with `gpt_path` (its weights file) added.

    Raises:
        ResumeError: missing, unreadable, from another format or model, finished, or weights missing.
    """
    path = Path(path)
    if not path.is_file():
        raise ResumeError(f"Resume state {path} does not exist. Pick one of the training_state/*.state "
                          "files, or clear Resume State Path to start fresh.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # boundary: any damage to the file gets the same readable answer
        raise ResumeError(f"Resume state {path} cannot be read ({type(e).__name__}: {e}); it may be "
                          "truncated. Resume from an earlier state instead.") from e
    missing = [k for k in REQUIRED_STATE_KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        raise ResumeError(f"{path} is not a training state of this trainer (missing {', '.join(missing)}).")
    if state["format_version"] != STATE_FORMAT_VERSION:
        raise ResumeError(f"{path} has state format {state['format_version']}; this trainer reads "
                          f"{STATE_FORMAT_VERSION}. Start a fresh run from its _gpt.pth as the source model.")
    if dict(state["model_config"]) != dict(model_config):
        diff = sorted(k for k in set(model_config) | set(state["model_config"])
                      if model_config.get(k) != state["model_config"].get(k))
        raise ResumeError(f"{path} was saved for a different model ({', '.join(diff)} differ). Resume with "
                          "the configuration it was made with, or start fresh from its _gpt.pth.")
    if state["step"] >= iterations:
        raise ResumeError(f"{path} is at step {state['step']}, and this run has {iterations} steps in total; "
                          "raise the number of epochs to train further.")
    gpt_path = gpt_path_for_state(path)
    if not gpt_path.is_file():
        raise ResumeError(f"The weights of {path} ({gpt_path}) are missing, so it cannot be resumed. "
                          "Pick another state.")
    state["gpt_path"] = gpt_path
    return state


def copy_config(config_path: Path | None, run_dir: Path) -> None:
    """Keep a timestamped copy of the yaml in the run folder (`<ddmmYYYY_HHMMSS>_train.yaml`)."""
    if config_path is not None and config_path.is_file():
        run_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy2(config_path, run_dir / f"{time.strftime('%d%m%Y_%H%M%S')}_train.yaml")
