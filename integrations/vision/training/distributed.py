"""Process-group set-up from torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``...)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["DistributedContext", "init_distributed", "shutdown_distributed", "per_process_batch_size"]


@dataclass(frozen=True)
class DistributedContext:
    """Where this process sits in the job: global ``rank`` of ``world_size``, ``local_rank`` on its node.

    Args:
        rank: Global rank (0 is the one that logs and checkpoints).
        world_size: Number of processes.
        local_rank: Rank on this node (picks the CUDA device).
        device: Device this process computes on.
        backend: Process-group backend (``"nccl"``, ``"gloo"``) or ``None`` for a single process.
    """

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str | None

    @property
    def is_main(self) -> bool:
        """True on rank 0, the only rank that logs and writes files."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        """True when a process group with more than one process is active."""
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name)
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError as error:
        raise ValueError(f"environment variable {name} must be an integer, got {text!r}") from error


def init_distributed(device: str | None = None) -> DistributedContext:
    """Join the process group described by torchrun's environment variables, or run as a single process.

    With ``WORLD_SIZE > 1`` the group is initialised with ``init_method="env://"`` (``MASTER_ADDR`` /
    ``MASTER_PORT``), NCCL when computing on CUDA and gloo on CPU. The device is ``cuda:LOCAL_RANK``
    when CUDA is available, else the CPU.

    Args:
        device: ``"cpu"`` or ``"cuda"`` to force one; ``None`` picks CUDA when available.
    """
    if device not in (None, "cpu", "cuda"):
        raise ValueError(f"device must be None, 'cpu' or 'cuda', got {device!r}")
    world_size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"RANK must lie in [0, WORLD_SIZE), got RANK={rank}, WORLD_SIZE={world_size}")
    use_cuda = torch.cuda.is_available() if device is None else device == "cuda"
    if use_cuda and not torch.cuda.is_available():
        raise ValueError("device='cuda' was asked for but CUDA is not available")
    if use_cuda:
        torch.cuda.set_device(local_rank)
        compute_device = torch.device("cuda", local_rank)
    else:
        compute_device = torch.device("cpu")
    backend = None
    if world_size > 1:
        backend = "nccl" if use_cuda else "gloo"
        if not dist.is_initialized():
            dist.init_process_group(backend=backend, init_method="env://", rank=rank, world_size=world_size)
    return DistributedContext(rank=rank, world_size=world_size, local_rank=local_rank,
                              device=compute_device, backend=backend)


def shutdown_distributed() -> None:
    """Destroy the process group if one is active (no-op otherwise)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def per_process_batch_size(global_batch_size: int, world_size: int) -> int:
    """Split the global batch evenly: ``global_batch_size / world_size``, which must be a whole number.

    Args:
        global_batch_size: Images per optimiser step over all processes.
        world_size: Number of processes.
    """
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    if global_batch_size % world_size != 0:
        raise ValueError(
            f"batch_size {global_batch_size} is not divisible by the number of processes {world_size}; "
            f"choose a multiple of {world_size}"
        )
    return global_batch_size // world_size
