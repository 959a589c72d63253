"""Model registry: build any TorToiSe network by its checkpoint name and load official weights into it.

`build(name, **overrides)` makes the full-size official configuration unless overrides (official
constructor argument names) say otherwise; `load(name, path_or_state_dict)` builds and fills it strictly.
"""

from __future__ import annotations

import importlib
import os
import pickle
import re
import zipfile
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from tortoise.errors import WeightsError

# name -> (module, class, constructor arguments that the name itself implies)
_REGISTRY: dict[str, tuple[str, str, dict[str, Any]]] = {
    "autoregressive": ("tortoise.models.autoregressive", "UnifiedVoice", {}),
    "diffusion_decoder": ("tortoise.models.diffusion_decoder", "DiffusionTts", {}),
    "clvp2": ("tortoise.models.clvp", "CLVP", {}),
    "cvvp": ("tortoise.models.cvvp", "CVVP", {}),
    "vocoder": ("tortoise.models.vocoder", "UnivNetGenerator", {}),
    "rlg_auto": ("tortoise.models.random_latents", "RandomLatentConverter", {"channels": 1024}),
    "rlg_diffuser": ("tortoise.models.random_latents", "RandomLatentConverter", {"channels": 2048}),
    "dvae": ("tortoise.models.dvae", "DiscreteVAE", {}),
    "hifidecoder": ("tortoise.models.hifigan", "HifiganGenerator", {}),
}

MODEL_NAMES = tuple(_REGISTRY)

# Causal-mask buffers that older transformers saved inside autoregressive.pth; they carry no weights.
_AR_LEGACY_KEY = re.compile(r"^gpt\.h\.\d+\.attn\.(bias|masked_bias)$")


def model_class(name: str) -> type[nn.Module]:
    """Return the class registered under `name` (raises WeightsError for an unknown name)."""
    if name not in _REGISTRY:
        raise WeightsError(f"Unknown model '{name}'. Known models: {', '.join(MODEL_NAMES)}.")
    module, cls, _ = _REGISTRY[name]
    return getattr(importlib.import_module(module), cls)


def build(name: str, **overrides: Any) -> nn.Module:
    """Build model `name` in eval mode; with no overrides this is the full-size official configuration.

    Args:
        name: one of MODEL_NAMES.
        **overrides: official constructor arguments, e.g. a tiny golden config.
    """
    _, _, implied = _REGISTRY.get(name, (None, None, {}))
    model = model_class(name)(**{**implied, **overrides})
    return model.eval()


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint with `weights_only=True`, memory-mapped when the file format allows.

    Raises:
        WeightsError: the file is missing, truncated, not a torch checkpoint, or holds pickled code.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise WeightsError(f"Checkpoint not found: {path}")
    if os.path.getsize(path) == 0:
        raise WeightsError(f"Checkpoint is empty: {path}. Delete it and download it again.")
    mmap = zipfile.is_zipfile(path)  # only the zip format can be memory-mapped
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:
        raise WeightsError(
            f"Refusing to load {path}: it is not a plain tensor checkpoint (it may contain code). {e}"
        ) from e
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as e:
        raise WeightsError(
            f"Checkpoint {path} is truncated or corrupt ({e}). Delete it and download it again."
        ) from e


def _normalise_state_dict(name: str, state_dict: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    if name == "vocoder" and "model_g" in state_dict:
        state_dict = state_dict["model_g"]  # vocoder.pth nests the generator under model_g
    if not isinstance(state_dict, Mapping):
        raise WeightsError(f"Checkpoint for '{name}' is not a state dict")
    out = {}
    for key, value in state_dict.items():
        if name == "autoregressive" and _AR_LEGACY_KEY.match(key):
            continue
        if not isinstance(value, torch.Tensor):
            raise WeightsError(f"Checkpoint for '{name}' has a non-tensor entry '{key}'")
        out[key] = value
    return out


def check_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor], name: str = "model") -> None:
    """Raise WeightsError listing every missing key, unexpected key and shape mismatch."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    mismatched = sorted(
        f"{k}: checkpoint {list(state_dict[k].shape)} vs model {list(expected[k].shape)}"
        for k in set(expected) & set(state_dict)
        if tuple(state_dict[k].shape) != tuple(expected[k].shape)
    )
    if missing or unexpected or mismatched:
        parts = [f"Checkpoint does not fit '{name}':"]
        for label, keys in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("shape mismatches", mismatched),
        ):
            if keys:
                parts.append(f"{len(keys)} {label}: " + ", ".join(keys))
        raise WeightsError("\n".join(parts))


def load(
    name: str,
    path_or_state_dict: str | os.PathLike | Mapping[str, Any],
    device: str | torch.device = "cpu",
    **overrides: Any,
) -> nn.Module:
    """Build model `name` and load a checkpoint into it strictly.

    Args:
        name: one of MODEL_NAMES.
        path_or_state_dict: a checkpoint path (read with weights_only=True, memory-mapped) or a state dict.
        device: where the loaded model lives.
        **overrides: constructor arguments, as for `build`.

    Returns:
        The model in eval mode. The vocoder and the HiFi-GAN decoder come back with weight norm folded.

    Raises:
        WeightsError: unreadable file, or any missing/unexpected key or shape mismatch (all listed).
    """
    if isinstance(path_or_state_dict, Mapping):
        raw = path_or_state_dict
    else:
        raw = read_checkpoint(path_or_state_dict)
    state_dict = _normalise_state_dict(name, raw)
    model = build(name, **overrides)
    check_state_dict(model, state_dict, name)
    model.load_state_dict(state_dict, strict=True)
    prepare = getattr(model, "prepare_for_inference", None)
    if callable(prepare):
        prepare()
    return model.to(device).eval()
