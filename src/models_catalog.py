"""The autoregressive models offered in Settings: the base `autoregressive.pth`, fine-tunes dropped into
`models/finetunes/`, and the checkpoints of training runs (`training/<run>/finetune/models/<step>_gpt.pth`,
and mrq's older `training/<run>/models/<step>_gpt.pth`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from src.errors import SettingsError
from src.paths import AppPaths

BASE_MODEL_FILE = "autoregressive.pth"
BASE_MODEL_VALUE = ""  # the dropdown value meaning "the base model" (stored as null in exec.json)
FINETUNE_RUN_FOLDER = "finetune"  # training/<run>/finetune/, as src.training.finetune lays runs out
CHECKPOINT_SUFFIX = "_gpt.pth"  # DLAS names AR checkpoints <step>_gpt.pth
_STEP_RE = re.compile(r"^(\d+)_gpt\.pth$")


@dataclass(frozen=True)
class ModelChoice:
    """One entry of the Autoregressive Model dropdown.

    Attributes:
        label: what the user reads: the path relative to the installation folder.
        value: the `autoregressive_model` setting it selects: an absolute path, or
            BASE_MODEL_VALUE for the base model.
    """

    label: str
    value: str


def list_autoregressive_models(paths: AppPaths, current: str | None = None) -> list[ModelChoice]:
    """The models to offer, in mrq's order: base, `models/finetunes/*.pth` (by name), then each
    training run's checkpoints (runs by name, steps ascending).

    Args:
        paths: the installation's folders.
        current: the setting in effect; a path found nowhere above is added last (marked
            missing when the file is gone) so that the dropdown can still show it.
    """
    choices = [ModelChoice(f"Base model ({_relative(paths.tortoise_models_dir / BASE_MODEL_FILE, paths)})",
                           BASE_MODEL_VALUE)]  # fmt: skip
    found = _finetunes(paths.finetunes_dir) + _training_checkpoints(paths.training_dir)
    choices += [ModelChoice(_relative(path, paths), str(path)) for path in found]
    if current and current not in {choice.value for choice in choices}:
        path = Path(current)
        suffix = "" if path.is_file() else " (missing)"
        choices.append(ModelChoice(f"{_relative(path, paths)}{suffix}", current))
    return choices


def check_model_choice(paths: AppPaths, value: str | None) -> str | None:
    """The `autoregressive_model` setting for a dropdown value: None for the base model, else the
    checkpoint's absolute path.

    Raises:
        SettingsError: the file does not exist or is not a `.pth` checkpoint.
    """
    if value is None or not str(value).strip():
        return None
    path = Path(str(value).strip()).expanduser()
    if not path.is_absolute():
        path = paths.root / path
    if path.suffix.lower() != ".pth" or not path.is_file():
        raise SettingsError(
            f"The model {value} was not found (or is not a .pth checkpoint). Press Refresh Model "
            "List and pick one from the list."
        )
    return str(path.resolve())


def _finetunes(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p.resolve() for p in folder.glob("*.pth") if p.is_file())


def _training_checkpoints(training_dir: Path) -> list[Path]:
    if not training_dir.is_dir():
        return []
    found: list[Path] = []
    for run in sorted(p for p in training_dir.iterdir() if p.is_dir()):
        for models in (run / FINETUNE_RUN_FOLDER / "models", run / "models"):
            if models.is_dir():
                found += sorted(
                    (p.resolve() for p in models.glob(f"*{CHECKPOINT_SUFFIX}") if p.is_file()),
                    key=_step_key,
                )
    return found


def _step_key(path: Path) -> tuple[int, str]:
    """Sort `<step>_gpt.pth` by step number (500 before 1000), odd names last by name."""
    match = _STEP_RE.match(path.name)
    return (int(match.group(1)), "") if match else (2**63, path.name)


def _relative(path: Path, paths: AppPaths) -> str:
    try:
        return path.resolve().relative_to(paths.root).as_posix()
    except ValueError:
        return str(path)
