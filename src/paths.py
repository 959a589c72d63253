"""AppPaths: every folder and well-known file of the app, resolved from one root folder.

Nothing is created at import or construction; `ensure()` and the `*_dir_for` helpers create on demand.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, fields
from pathlib import Path

import pathvalidate

from src.errors import InvalidVoiceName

# Voices chosen in the Generate tab that have no folder of clips under voices/.
SPECIAL_VOICES = ("random", "microphone")
MAX_NAME_LENGTH = 100
_FORBIDDEN_CHARS_RE = re.compile(r'[\x00-\x1f\x7f<>:"/\\|?*]')


@dataclass(frozen=True)
class AppPaths:
    """Folders of one installation. Build with `AppPaths.from_root(root)`.

    Attributes:
        root: the installation folder (the repository root).
        models_dir: downloaded and fine-tuned models (`models/`).
        tortoise_models_dir: TorToiSe checkpoints (`models/tortoise/`).
        finetunes_dir: fine-tuned AR models offered in Settings (`models/finetunes/`).
        transformers_dir: Hugging Face cache for helper models (`models/transformers/`).
        voices_dir: one subfolder of reference clips per voice (`voices/`).
        legacy_voices_dir: voices kept inside the package by old installs (`tortoise/voices/`).
        results_dir: generated audio, `results/<voice>/<run>/` (`results/`).
        training_dir: datasets and fine-tuning runs (`training/`).
        config_dir: `exec.json` and `generate.json` (`config/`).
        bin_dir: bundled tools such as ffmpeg, searched before PATH (`bin/`).
    """

    root: Path
    models_dir: Path
    tortoise_models_dir: Path
    finetunes_dir: Path
    transformers_dir: Path
    voices_dir: Path
    legacy_voices_dir: Path
    results_dir: Path
    training_dir: Path
    config_dir: Path
    bin_dir: Path

    @classmethod
    def from_root(cls, root: str | os.PathLike[str]) -> AppPaths:
        """Resolve every folder under `root` (made absolute; nothing is created)."""
        base = Path(root).expanduser().resolve()
        models = base / "models"
        return cls(
            root=base,
            models_dir=models,
            tortoise_models_dir=models / "tortoise",
            finetunes_dir=models / "finetunes",
            transformers_dir=models / "transformers",
            voices_dir=base / "voices",
            legacy_voices_dir=base / "tortoise" / "voices",
            results_dir=base / "results",
            training_dir=base / "training",
            config_dir=base / "config",
            bin_dir=base / "bin",
        )

    @property
    def settings_file(self) -> Path:
        """`config/exec.json`: the Settings tab's values."""
        return self.config_dir / "exec.json"

    @property
    def generate_file(self) -> Path:
        """`config/generate.json`: the Generate tab's last values."""
        return self.config_dir / "generate.json"

    def ensure(self) -> None:
        """Create every folder that does not exist yet (except the legacy one, which is only read)."""
        for f in fields(self):
            if f.name not in ("root", "legacy_voices_dir"):
                getattr(self, f.name).mkdir(parents=True, exist_ok=True)

    def voice_dir(self, voice: str) -> Path:
        """`voices/<voice>/` (not created). Raises InvalidVoiceName for names that are not a plain folder."""
        return self.voices_dir / validate_voice_name(voice)

    def results_dir_for(self, voice: str, *, create: bool = False) -> Path:
        """`results/<voice>/`; the special voices `random` and `microphone` get their own folders.

        Args:
            voice: a voice name or one of SPECIAL_VOICES.
            create: make the folder (and its parents) if missing.

        Raises:
            InvalidVoiceName: the name is not a plain folder name.
        """
        folder = self.results_dir / validate_voice_name(voice, allow_special=True)
        if create:
            folder.mkdir(parents=True, exist_ok=True)
        return folder

    def training_dir_for(self, name: str, *, create: bool = False) -> Path:
        """`training/<name>/` for a dataset or run; created on request."""
        folder = self.training_dir / validate_voice_name(name)
        if create:
            folder.mkdir(parents=True, exist_ok=True)
        return folder


def validate_voice_name(name: str, *, allow_special: bool = False) -> str:
    """Check that `name` can be a folder under voices/, results/ or training/ on every platform.

    The app runs on Windows too, so a name Windows cannot hold is refused everywhere, keeping a folder
    portable: no path separators or `< > : " | ? *`, no control characters, no reserved device names
    (CON, NUL, COM1, LPT1, ... with or without an extension) and no trailing dot or space. A name must
    also be non-empty, at most 100 characters, and must not start with a dot (hidden folders such as
    `.temp` are not voices).

    Args:
        name: the name the user typed or picked.
        allow_special: accept `random` and `microphone` (results folders exist for them).

    Returns:
        The name, unchanged.

    Raises:
        InvalidVoiceName: with the reason.
    """
    name = name or ""
    if not name.strip():
        raise InvalidVoiceName(name, "it is empty; type a name")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidVoiceName(name, f"it is longer than {MAX_NAME_LENGTH} characters")
    if name.startswith("."):
        raise InvalidVoiceName(name, "it starts with a dot")
    if name != name.lstrip():
        raise InvalidVoiceName(name, "it starts with a space; remove it")
    if _FORBIDDEN_CHARS_RE.search(name):
        raise InvalidVoiceName(name, 'it contains a control character, a slash or one of < > : " | ? *')
    try:
        pathvalidate.validate_filename(name, platform="windows", max_len=MAX_NAME_LENGTH)
    except pathvalidate.ValidationError as exc:
        if exc.reason == pathvalidate.ErrorReason.RESERVED_NAME:
            reserved = "Windows reserves this name (CON, PRN, AUX, NUL, COM1-9, LPT1-9)"
            raise InvalidVoiceName(name, reserved) from exc
        if name.rstrip(" .") != name:
            trailing = "it ends with a space or a dot, which Windows does not allow"
            raise InvalidVoiceName(name, trailing) from exc
        raise InvalidVoiceName(name, "Windows cannot use it as a folder name") from exc
    if name.lower() in SPECIAL_VOICES and not allow_special:
        raise InvalidVoiceName(name, "this name is reserved for a built-in voice")
    return name
