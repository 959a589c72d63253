"""Process group handling for multi-GPU training under torchrun: rank and device from the environment,
DistributedDataParallel wrapping (NCCL on CUDA, gloo on CPU), barriers. A single process needs none of it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as torch_dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from tortoise.training.errors import TrainingError


@dataclass
class Distributed:
    """This process's place in the run.

    Attributes:
        rank, world_size, local_rank: from torchrun's RANK / WORLD_SIZE / LOCAL_RANK (0, 1, 0 alone).
        device: where this process trains.
    """

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @classmethod
    def from_env(cls, device: str = "auto") -> Distributed:
        """Read torchrun's variables and pick the device ("auto": this process's GPU, else the CPU).

        Raises:
            TrainingError: an unusable device name, or more processes than GPUs.
        """
        rank = int(os.environ.get("RANK", 0))
        world_size = int(os.environ.get("WORLD_SIZE", 1))
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        try:
            chosen = torch.device(device)
        except RuntimeError as e:
            raise TrainingError(f"Unknown device '{device}'; use auto, cpu or cuda.") from e
        if chosen.type == "cuda":
            if not torch.cuda.is_available():
                raise TrainingError("CUDA was requested but no CUDA GPU is available; use --device cpu.")
            if chosen.index is None:
                if world_size > 1 and local_rank >= torch.cuda.device_count():
                    raise TrainingError(f"Process {local_rank} has no GPU: only {torch.cuda.device_count()} "
                                        "are visible. Start at most that many processes per node.")
                chosen = torch.device("cuda", local_rank if world_size > 1 else torch.cuda.current_device())
        return cls(rank, world_size, local_rank, chosen)

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that writes checkpoints, metrics and samples."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    def init(self) -> None:
        """Join the process group (torchrun's env:// rendezvous) when there is more than one process."""
        if not self.is_distributed or torch_dist.is_initialized():
            return
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        backend = "nccl" if self.device.type == "cuda" else "gloo"
        torch_dist.init_process_group(backend, rank=self.rank, world_size=self.world_size)

    def wrap(self, module: nn.Module) -> nn.Module:
        """DistributedDataParallel around `module` in a group, else `module` itself."""
        if not self.is_distributed:
            return module
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=ids)

    def barrier(self) -> None:
        if self.is_distributed and torch_dist.is_initialized():
            torch_dist.barrier()

    def close(self) -> None:
        if self.is_distributed and torch_dist.is_initialized():
            torch_dist.destroy_process_group()
