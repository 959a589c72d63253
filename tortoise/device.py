"""Device layer: resolve a device string, pick dtypes and autocast, and move models per stage.

All backend branching (CUDA and ROCm, DirectML, MPS, CPU) lives here. Probing goes through a small
`Backends` object so tests can fake hardware that is absent.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import gc
import importlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from tortoise.errors import InvalidInputError

log = logging.getLogger(__name__)


@dataclass
class Backends:
    """What the machine offers. The defaults probe torch; tests pass fakes."""

    cuda_count: Callable[[], int] = field(
        default=lambda: torch.cuda.device_count() if torch.cuda.is_available() else 0
    )
    cuda_name: Callable[[int], str] = field(default=lambda i: torch.cuda.get_device_name(i))
    is_rocm: Callable[[], bool] = field(default=lambda: getattr(torch.version, "hip", None) is not None)
    mps_available: Callable[[], bool] = field(
        default=lambda: bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()
    )
    directml_module: Callable[[], Any | None] = field(default=lambda: _import_optional("torch_directml"))
    cuda_free_bytes: Callable[[int], int] = field(default=lambda i: _cuda_free_bytes(i))
    cpu_free_bytes: Callable[[], int | None] = field(default=lambda: _cpu_available_bytes())


def _cuda_free_bytes(index: int) -> int:
    """Free device memory plus what torch's caching allocator holds but does not use."""
    free = torch.cuda.mem_get_info(index)[0]
    return free + torch.cuda.memory_reserved(index) - torch.cuda.memory_allocated(index)


def _cpu_available_bytes() -> int | None:
    """MemAvailable of /proc/meminfo (Linux); None where it cannot be read."""
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _import_optional(name: str) -> Any | None:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None
    except Exception as e:  # a broken optional backend must never crash the app
        log.warning("optional backend %s failed to import: %s", name, e)
        return None


def list_devices(backends: Backends | None = None) -> list[tuple[str, str]]:
    """Every valid device string with a readable name, best first; always ends with ('cpu', ...)."""
    b = backends or Backends()
    out: list[tuple[str, str]] = []
    kind = "ROCm" if b.is_rocm() else "CUDA"
    for i in range(b.cuda_count()):
        out.append((f"cuda:{i}", f"{kind}: {b.cuda_name(i)}"))
    dml = b.directml_module()
    if dml is not None:
        for i in range(dml.device_count()):
            out.append((f"directml:{i}", f"DirectML: {dml.device_name(i)}"))
    if b.mps_available():
        out.append(("mps", "Apple Metal (MPS)"))
    out.append(("cpu", "CPU"))
    return out


@dataclass(frozen=True)
class DevicePlan:
    """Where each stage runs and in which precision.

    Attributes:
        device: the main compute device (AR, CLVP, diffusion).
        kind: 'cuda', 'directml', 'mps' or 'cpu'.
        half: fp16 autocast on CUDA; on CPU `half` means bf16 autocast (only where the CPU supports it).
        low_vram: keep models on the CPU and move each to `device` only for its stage.
        latents_device / vocoder_device: DirectML cannot run these, so they stay on the CPU there.
    """

    device: torch.device | Any
    kind: str
    half: bool = False
    low_vram: bool = False

    @property
    def latents_device(self) -> Any:
        return torch.device("cpu") if self.kind == "directml" else self.device

    @property
    def vocoder_device(self) -> Any:
        return torch.device("cpu") if self.kind == "directml" else self.device

    @property
    def weights_dtype(self) -> torch.dtype:
        """The dtype the weights are stored in: fp16 on CUDA and bf16 on the CPU in half precision.

        Stored, not autocast: autocast casts every weight on every step, which made half precision
        slower than fp32 on GPUs.
        """
        if self.half and self.kind == "cuda":
            return torch.float16
        if self.half and self.kind == "cpu":
            return torch.bfloat16
        return torch.float32

    @property
    def use_cuda_graphs(self) -> bool:
        """Capture the AR decode step in CUDA graphs (not in low-VRAM mode, where models move)."""
        return self.kind == "cuda" and not self.low_vram

    @property
    def decode_check_every(self) -> int:
        """AR decode steps between host reads: a GPU read stalls the queue; a CPU read is cheap and
        lets finished rows retire sooner."""
        return 16 if self.kind == "cuda" else 8

    def with_half(self, half: bool, *, few_rows: bool = False) -> DevicePlan:
        """This plan with half precision on or off where the device supports it (CUDA, bf16 CPUs).

        Args:
            few_rows: the job decodes one row at a time (fast mode). On a CPU without bf16 instructions
                bf16 weights then still pay (a step reads half the bytes; see tortoise.models.gpt2), while
                the standard mode's batches of candidates run faster in fp32, so half is on there only
                with `few_rows`.
        """
        if self.kind == "cuda":
            return dataclasses.replace(self, half=half)
        if self.kind == "cpu":
            return dataclasses.replace(self, half=half and (few_rows or cpu_supports_bf16()))
        return self

    @property
    def storage_device(self) -> Any:
        """Where idle models live: the CPU in low-VRAM mode, else the compute device."""
        return torch.device("cpu") if self.low_vram else self.device

    def autocast(self) -> contextlib.AbstractContextManager:
        """Mixed precision for the AR and CLVP stages; a no-op when half is off or unsupported."""
        if not self.half:
            return contextlib.nullcontext()
        if self.kind == "cuda":
            return torch.autocast("cuda", dtype=torch.float16)
        if self.kind == "cpu":
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    @contextlib.contextmanager
    def on_device(self, model: nn.Module, device: Any | None = None) -> Iterator[nn.Module]:
        """Use `model` on `device` (default: the compute device) for one stage.

        In low-VRAM mode the model goes back to the CPU afterwards and the device cache is emptied.
        """
        target = self.device if device is None else device
        model.to(target)
        try:
            yield model
        finally:
            if self.low_vram and target != torch.device("cpu"):
                model.to("cpu")
                self.empty_cache()

    def synchronize(self) -> None:
        """Wait for the device's queued work (CUDA runs asynchronously), e.g. to time a stage."""
        if self.kind == "cuda":
            torch.cuda.synchronize(self.device)

    def empty_cache(self) -> None:
        if self.kind == "cuda":
            torch.cuda.empty_cache()
        elif self.kind == "mps":
            torch.mps.empty_cache()


def device_kind(device: Any) -> str:
    """The plan kind of a torch device: 'cuda', 'directml', 'mps' or 'cpu' (anything else)."""
    kind = torch.device(device).type
    return {"cuda": "cuda", "mps": "mps", "privateuseone": "directml"}.get(kind, "cpu")


def resolve_device(
    spec: str | None = "auto", half: bool = False, low_vram: bool = False, backends: Backends | None = None
) -> DevicePlan:
    """Turn a device string into a DevicePlan.

    Args:
        spec: 'auto' (CUDA/ROCm, then DirectML, then MPS, then CPU), 'cuda', 'cuda:N', 'directml',
            'directml:N', 'mps' or 'cpu'. ROCm builds answer to 'cuda'.
        half: use fp16 (CUDA) / bf16 (CPU) autocast where supported.
        low_vram: move each model to the device only for its stage.

    Raises:
        InvalidInputError: the string names no device this machine has; the message lists valid ones.
    """
    b = backends or Backends()
    text = (spec or "auto").strip().lower()
    valid = [name for name, _ in list_devices(b)]

    def fail(reason: str) -> InvalidInputError:
        return InvalidInputError(
            f"Device '{spec}' is not usable: {reason}. Valid devices: {', '.join(valid)}."
        )

    if text == "auto":
        if b.cuda_count() > 0:
            text = "cuda:0"
        elif b.directml_module() is not None:
            text = "directml:0"
        elif b.mps_available():
            text = "mps"
        else:
            text = "cpu"
    kind, _, index_text = text.partition(":")
    if index_text and not index_text.isdigit():
        raise fail(f"'{index_text}' is not a device number")
    index = int(index_text) if index_text else 0
    if kind == "cpu":
        return DevicePlan(torch.device("cpu"), "cpu", half=half and cpu_supports_bf16(), low_vram=False)
    if kind == "cuda":
        if index >= b.cuda_count():
            raise fail("no such CUDA/ROCm GPU (is a GPU build of torch installed?)")
        return DevicePlan(torch.device("cuda", index), "cuda", half=half, low_vram=low_vram)
    if kind in ("directml", "dml"):
        dml = b.directml_module()
        if dml is None:
            raise fail("torch-directml is not installed (run setup-directml.bat)")
        if index >= dml.device_count():
            raise fail("no such DirectML device")
        # DirectML has no reliable fp16 autocast; keep fp32 there
        return DevicePlan(dml.device(index), "directml", half=False, low_vram=low_vram)
    if kind == "mps":
        if not b.mps_available():
            raise fail("Apple MPS is not available on this machine")
        return DevicePlan(torch.device("mps"), "mps", half=False, low_vram=low_vram)
    raise fail("unknown device type")


@functools.cache
def cpu_supports_bf16() -> bool:
    """True when the CPU has native bf16 matrix instructions (AVX512-BF16 or AMX)."""
    try:
        caps = torch.backends.cpu.get_cpu_capability()
    except Exception:  # older torch builds: report no support rather than crash
        log.debug("cpu capability probe failed", exc_info=True)
        return False
    if caps in ("AVX512_BF16", "AMX"):
        return True
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = f.read()
        return "avx512_bf16" in flags or "amx_bf16" in flags
    except OSError:
        return False


def auto_sample_batch_size(plan: DevicePlan, backends: Backends | None = None) -> int:
    """The official auto batch size: from free GPU memory (>14 GiB: 16, >10: 8, >7: 4, else 1); CPU: 1.

    On CPU we use 4 rather than 1: batched rows share each weight read, so 4 rows cost far less than 4x.
    """
    if plan.kind != "cuda":
        return 4 if plan.kind == "cpu" else 1
    b = backends or Backends()
    free_gib = b.cuda_free_bytes(plan.device.index or 0) / 2**30
    if free_gib > 14:
        return 16
    if free_gib > 10:
        return 8
    if free_gib > 7:
        return 4
    return 1


def cuda_device_count() -> int:
    """How many CUDA (or ROCm) GPUs torch can use here; 0 without a GPU build or a visible GPU."""
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def release_accelerator_memory() -> None:
    """Collect garbage and hand the CUDA/MPS caching allocators' free blocks back to the driver.

    For callers outside the TTS (Whisper, the trainer) that freed a model and want the memory to show as
    free; a no-op on the CPU.
    """
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    mps = getattr(torch, "mps", None)
    if mps is not None and torch.backends.mps.is_available():
        mps.empty_cache()


def torch_build_info() -> dict[str, Any]:
    """The installed torch build and the GPUs it can use.

    Returns:
        {"version", "cuda" (None on a CPU or ROCm build), "hip" (ROCm version or None), "gpus": a list of
        (name, free bytes, total bytes); memory is 0 for a device that cannot be queried}.
    """
    gpus = []
    for index in range(cuda_device_count()):
        try:
            free, total = torch.cuda.mem_get_info(index)
        except RuntimeError:  # a device that cannot be queried still counts, memory unknown
            free = total = 0
        gpus.append((torch.cuda.get_device_name(index), int(free), int(total)))
    return {"version": torch.__version__, "cuda": torch.version.cuda, "hip": torch.version.hip, "gpus": gpus}

def free_memory_bytes(plan: DevicePlan, backends: Backends | None = None) -> int | None:
    """Memory free for a stage on the plan's device (GPU memory, or the CPU's available RAM); None
    when unknown (DirectML, MPS, or no /proc/meminfo)."""
    b = backends or Backends()
    if plan.kind == "cuda":
        return b.cuda_free_bytes(plan.device.index or 0)
    if plan.kind == "cpu":
        return b.cpu_free_bytes()
    return None


def check_batch_fits(
    plan: DevicePlan,
    batch: int,
    bytes_per_row: int,
    fixed_bytes: int = 0,
    backends: Backends | None = None,
    what: str = "sample_batch_size",
) -> None:
    """Refuse a batch whose estimated memory exceeds what the device has free, before any work starts.

    Raises:
        InvalidInputError: naming the estimate, the free memory and the largest batch that fits.
    """
    free = free_memory_bytes(plan, backends)
    need = fixed_bytes + batch * bytes_per_row
    if free is None or need <= free:
        return
    fits = max(0, (free - fixed_bytes) // max(1, bytes_per_row))
    where = "the GPU" if plan.kind == "cuda" else "this machine"
    advice = f"Use {what} {fits} or less" if fits >= 1 else "Free some memory or use a smaller model"
    raise InvalidInputError(
        f"{what} {batch} needs about {_gib(need)} for decoding ({_gib(bytes_per_row)} per row), but "
        f"{where} has {_gib(free)} free. {advice}, or set it to 0 to pick one from the free memory."
    )


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB"
