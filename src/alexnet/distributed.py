"""One code path for one process and N: torchrun's environment turns on DistributedDataParallel.

``torchrun --nproc_per_node=N -m alexnet train ...`` sets RANK, WORLD_SIZE and LOCAL_RANK; we
then join the process group (NCCL on GPUs, gloo on CPUs), give each process its GPU, deal each
process its share of every epoch, average gradients through DDP, and let rank 0 alone log and
write files. Without those variables everything below is a no-op.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from .settings import dist_timeout


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owned: bool = False  # this module created the process group (and so destroys it)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def backend_for(device: str, cuda_available: bool) -> str:
    """The process group's backend for the device the run asked for (not for what the host has):
    NCCL for CUDA tensors, gloo for CPU tensors (``torchrun ... --device cpu`` on a GPU host)."""
    wants_cuda = device.startswith("cuda") or (device == "auto" and cuda_available)
    return "nccl" if wants_cuda and cuda_available else "gloo"


def join_processes(device: str = "auto") -> DistInfo:
    """Join torchrun's process group if this process was started by torchrun (else a single process);
    ``device``: the run's ``--device``, which chooses the backend."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if dist.is_initialized():
        return DistInfo(rank, world, local_rank)
    backend = backend_for(device, torch.cuda.is_available())
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    timeout = _timeout()
    dist.init_process_group(backend=backend, **timeout, **_restart_store(rank, world, timeout.get("timeout")))
    return DistInfo(rank, world, local_rank, owned=True)


def _restart_store(rank: int, world: int, timeout: datetime.timedelta | None = None) -> dict[str, Any]:
    """The process group's store for a worker of an elastic job: the agent's store, under a prefix of
    this restart's number.

    torchrun's agent keeps one TCPStore for the life of the job and its workers join the group through
    it (``TORCHELASTIC_USE_AGENT_STORE``) with the same keys in every restart round, so a restarted
    group can read the addresses its dead predecessors published there: gloo then connects to a
    socket that no longer listens and the join times out (seen here in about half the restarts,
    torch 2.14.1); NCCL's id exchange goes through the same keys. Torch once prefixed the keys by
    ``TORCHELASTIC_RESTART_COUNT`` (pytorch#61590) and dropped it when the agent's store became shared
    across rounds; we put it back for our own group. Outside an elastic agent: torch's default."""
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True" or "TORCHELASTIC_RESTART_COUNT" not in os.environ:
        return {}
    store = dist.TCPStore(
        os.environ["MASTER_ADDR"],
        int(os.environ["MASTER_PORT"]),
        world,
        is_master=False,
        timeout=timeout or datetime.timedelta(minutes=30),
    )
    prefix = f"alexnet/restart_{os.environ['TORCHELASTIC_RESTART_COUNT']}"
    return {"store": dist.PrefixStore(prefix, store), "rank": rank, "world_size": world}


def _timeout() -> dict[str, Any]:
    """``ALEXNET_DIST_TIMEOUT`` (seconds): how long joining the group and each collective may wait,
    instead of torch's 30 minutes (10 for NCCL). An elastic job (torchrun --max-restarts) is restarted
    when a worker times out, so an attempt whose join or collective hangs fails and is retried
    instead of waiting out the default."""
    seconds = dist_timeout()
    return {} if seconds is None else {"timeout": datetime.timedelta(seconds=seconds)}


def cleanup(info: DistInfo) -> None:
    if info.owned and dist.is_initialized():
        dist.destroy_process_group()


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_sum(*values: torch.Tensor) -> list[torch.Tensor]:
    """Sum tensors over the processes (returned as new tensors; unchanged in a single process)."""
    if not active():
        return list(values)
    out = []
    for v in values:
        v = v.clone()
        dist.all_reduce(v, op=dist.ReduceOp.SUM)
        out.append(v)
    return out


def any_true(flag: bool, device: torch.device) -> bool:
    """True on every process if it is true on any (so that all of them stop together)."""
    if not active():
        return flag
    (t,) = all_reduce_sum(torch.tensor([1.0 if flag else 0.0], device=device))
    return bool(t.item() > 0)


def gather_objects(obj: object) -> list[object]:
    """Every process's ``obj``, in rank order (``[obj]`` in a single process)."""
    if not active():
        return [obj]
    out: list[object] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out
