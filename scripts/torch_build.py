"""Inspect the torch build inside venv/ for the setup, update and start scripts.

Run with the venv's python, e.g. ``venv/bin/python scripts/torch_build.py verify --backend cuda``.
Shared by the .sh and .bat scripts so that both platforms decide the same way. Standard library
only, except ``verify``, which imports torch (and torch_directml for the DirectML backend).

Subcommands:
  is-installed SPEC [--ignore-local]  exit 0 when SPEC (``name==version``) is installed exactly
  write-constraint PATH               write a pip constraints file pinning the installed torch build
  verify --backend NAME               print the torch version and whether the accelerator works
"""

from __future__ import annotations

import argparse
import importlib.metadata
import sys
from pathlib import Path

# Packages whose installed version must survive a later `pip install -r requirements.txt`.
PINNED_PACKAGES = ("torch", "torch-directml")
BACKENDS = ("cpu", "cuda", "rocm", "directml")
BANNER = "!" * 78


def installed_version(name: str) -> str | None:
    """Return the installed version of distribution ``name`` (e.g. "2.13.0+cpu"), or None."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def is_installed(spec: str, ignore_local: bool = False) -> bool:
    """Tell whether ``spec`` ("torch==2.13.0+cu130") matches the installed distribution.

    Args:
        spec: ``name==version``; the version may carry a local tag such as ``+cpu``.
        ignore_local: compare only the public part, so "2.13.0+cpu" matches "2.13.0".
    """
    name, sep, wanted = spec.partition("==")
    if not sep or not name or not wanted:
        raise ValueError(f"expected name==version, got {spec!r}")
    have = installed_version(name.strip())
    if have is None:
        return False
    if ignore_local:
        return have.split("+")[0] == wanted.split("+")[0]
    return have == wanted.strip()


def write_constraint(path: Path) -> list[str]:
    """Write ``name==version`` for each installed package of PINNED_PACKAGES into ``path``.

    Returns:
        The lines written. Raises SystemExit when torch is not installed at all.
    """
    lines = [f"{name}=={v}" for name in PINNED_PACKAGES if (v := installed_version(name))]
    if not any(line.startswith("torch==") for line in lines):
        raise SystemExit("torch is not installed in this environment; run a setup script first.")
    path.parent.mkdir(parents=True, exist_ok=True)
    header = (
        "# Written by scripts/torch_build.py: keeps pip from replacing the installed torch build.\n"
    )
    path.write_text(header + "\n".join(lines) + "\n", encoding="utf-8")
    return lines


def _warn_loudly(lines: list[str]) -> None:
    print(BANNER)
    for line in lines:
        print(f"!!  {line}")
    print(BANNER)


def _check_cuda_like(torch, backend: str) -> list[str]:
    """Return problems with a CUDA or ROCm build (empty when the GPU computes)."""
    build = torch.version.hip if backend == "rocm" else torch.version.cuda
    label = "ROCm (HIP)" if backend == "rocm" else "CUDA"
    print(f"{label + ' build:':<16}{build or 'no (this torch is a CPU-only build)'}")
    if not build:
        return [
            f"The installed torch ({torch.__version__}) is not a {label} build.",
            f"Rerun the setup-{backend} script to replace it; if pip keeps choosing the CPU",
            "build, check the TORCH_CUDA / TORCH_ROCM tag and the index printed above.",
        ]
    if not torch.cuda.is_available():
        hint = (
            "Is the amdgpu driver loaded and are you in the 'render' and 'video' groups?"
            " Consumer cards may need HSA_OVERRIDE_GFX_VERSION."
            if backend == "rocm"
            else "Is the NVIDIA driver installed and new enough for this CUDA tag (nvidia-smi)?"
        )
        return [f"torch has {label} support but sees no GPU.", hint]
    for index in range(torch.cuda.device_count()):
        print(f"{f'GPU {index}:':<16}{torch.cuda.get_device_name(index)}")
    (torch.ones(2, device="cuda") * 2).sum().item()  # a real kernel launch, not just a device query
    return []


def _check_directml(torch) -> list[str]:
    try:
        import torch_directml
    except ImportError as exc:
        return [f"torch_directml cannot be imported ({exc}).", "Rerun setup-directml.bat."]
    if torch_directml.device_count() < 1:
        return ["torch-directml is installed but finds no DirectX 12 GPU."]
    device = torch_directml.device()
    print(f"DirectML device: {torch_directml.device_name(0)} ({device})")
    (torch.ones(2, device=device) * 2).sum().item()
    return []


def verify(backend: str) -> int:
    """Print what the installed torch can use; warn loudly when the intended GPU does not work.

    Returns:
        0 when torch imports (even if only the CPU works), 1 when torch itself is broken.
    """
    try:
        import torch
    except Exception as exc:  # noqa: BLE001 (boundary: any import failure = broken install)
        print(f"ERROR: torch cannot be imported: {exc}")
        return 1
    print(f"torch version:  {torch.__version__}")
    print(f"python:         {sys.version.split()[0]} ({sys.executable})")
    torch.ones(2).sum().item()  # the CPU path must always work
    if backend == "cpu":
        print("backend:        CPU (as intended)")
        return 0
    try:
        problems = (
            _check_directml(torch) if backend == "directml" else _check_cuda_like(torch, backend)
        )
    except Exception as exc:  # noqa: BLE001 (boundary: a driver error must not hide the summary)
        problems = [f"The {backend} device failed a test computation: {exc}"]
    if problems:
        _warn_loudly(
            [f"WARNING: a {backend.upper()} setup was intended, but only the CPU works."]
            + problems
            + ["The app will still run, on the CPU, which is much slower."]
        )
    else:
        print(f"backend:        {backend.upper()} works")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_inst = sub.add_parser("is-installed", help="exit 0 when name==version is installed")
    p_inst.add_argument("spec")
    p_inst.add_argument("--ignore-local", action="store_true", help="ignore a +cpu/+cuXXX tag")
    p_con = sub.add_parser("write-constraint", help="pin the installed torch build for pip")
    p_con.add_argument("path", type=Path)
    p_ver = sub.add_parser("verify", help="report the torch build and accelerator")
    p_ver.add_argument("--backend", choices=BACKENDS, required=True)
    args = parser.parse_args(argv)

    if args.command == "is-installed":
        return 0 if is_installed(args.spec, ignore_local=args.ignore_local) else 1
    if args.command == "write-constraint":
        for line in write_constraint(args.path):
            print(f"pinned for pip: {line}")
        return 0
    return verify(args.backend)


if __name__ == "__main__":
    sys.exit(main())
