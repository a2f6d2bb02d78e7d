"""Multi-process training with torch's own engine: ``torchrun`` + DistributedDataParallel.

Under ``torchrun`` the environment holds ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``;
:func:`setup` then joins the process group (backend ``nccl`` on CUDA, ``gloo`` on the CPU) and
picks the process's device (``cuda:<LOCAL_RANK>``). Without those variables training runs in one
process. Only rank 0 writes files.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.distributed as dist

from hybrid_asd.utils import env_world

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    initialised_here: bool = False  # we started the process group, so we end it

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(device: str) -> tuple[DistInfo, str]:
    """Join the process group when launched by torchrun; returns the info and this process's device."""
    world = env_world()
    if world is None or world[1] <= 1:
        return DistInfo(), device
    rank, world_size, local_rank = world
    if device.startswith("cuda"):
        device = f"cuda:{local_rank}"
        torch.cuda.set_device(device)
    initialised_here = False
    if not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        dist.init_process_group(backend=backend)
        initialised_here = True
        log.info("joined process group: rank %d of %d (%s)", rank, world_size, backend)
    return DistInfo(rank, world_size, local_rank, initialised_here), device


def teardown(info: DistInfo) -> None:
    if info.initialised_here and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def all_sum(info: DistInfo, values: list[float], device: str) -> list[float]:
    """Element-wise sum of ``values`` over all processes (identity in one process)."""
    if not info.enabled:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()
