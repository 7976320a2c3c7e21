"""Data-parallel runs through ``torch.distributed`` (docs/distributed.md).

One run on N processes keeps every decision global and identical on every rank: each rank
walks the same epoch plan from the same generators and materialises the same raw batch; the
*forward passes* are split. Each rank scores a contiguous share of the raw batch and the
per-sample results (logits, features) are all-gathered, so every rank's strategy sees the
whole batch's scores and selects the same samples; each rank then trains its contiguous share
of every selected batch under DDP (gradients averaged by DDP's all-reduce, the loss scaled so
that the average is the global batch mean), and the training forward's per-sample losses and
logits are all-gathered again for the strategies' histories. Evaluation is split the same way.

:class:`Group` is the one place that knows the rank: shares, gathers, broadcasts, and the time
spent in selection collectives. A run on one process uses ``Group()`` (rank 0 of 1), whose
operations are identities, so the loops have one code path.
"""

from __future__ import annotations

import os
import pickle
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch
import torch.distributed as dist

from assist.engine.accumulate import Chunk


class DistributedError(RuntimeError):
    """The distributed environment cannot run this job (backend, devices)."""


@dataclass
class Group:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    comm_s: float = 0.0   # seconds in selection collectives since the last reset
    owned: bool = False   # this Group initialised the process group (and closes it)

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # ------------------------------------------------------------------ set-up
    @classmethod
    def current(cls) -> "Group":
        """The initialised default process group (the user's, Lightning's), or one process."""
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            return cls(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
        return cls()

    @classmethod
    def from_environment(cls, device: str) -> "Group":
        """Join the process group a launcher described (torchrun's RANK/WORLD_SIZE, a Slurm
        job step, or a submitit job of several tasks), initialising it when needed: ``gloo``
        for CPU runs, ``nccl`` for CUDA ones. Without such an environment: one process."""
        if dist.is_available() and dist.is_initialized():
            return cls.current()
        slurm = int(os.environ.get("SLURM_NTASKS", "1")) > 1 and "SLURM_PROCID" in os.environ
        local = int(os.environ.get("SUBMITIT_LOCAL_NTASKS", "1")) > 1   # submitit's LocalExecutor
        if "WORLD_SIZE" not in os.environ and (slurm or local):
            try:
                from submitit.helpers import TorchDistributedEnvironment
            except ImportError:  # pragma: no cover - the slurm extra is missing
                raise DistributedError("a Slurm job step of several tasks needs submitit to set up "
                                       "torch.distributed: pip install 'assist-sampling[cluster]'") from None
            # submitit reads a job's Slurm variables once told it runs under Slurm (its own
            # jobs set this; a plain ``srun`` step does not); it parses the node list for us
            os.environ.setdefault("SUBMITIT_EXECUTOR", "slurm" if slurm else "local")
            TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        cuda = torch.device(device).type == "cuda"
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if cuda:
            if local_rank >= torch.cuda.device_count():
                raise DistributedError(f"local rank {local_rank} has no GPU: this machine has "
                                       f"{torch.cuda.device_count()}; launch at most that many processes per node")
            torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl" if cuda else "gloo")
        return cls(dist.get_rank(), dist.get_world_size(), local_rank, owned=True)

    def close(self, *, wait: bool = True) -> None:
        """Tear down the process group this Group set up, after waiting for the other ranks
        (``wait``: the run ended on every rank; not after an error). A gloo process that exits
        with its group open can abort in the library's destructors."""
        if self.owned and dist.is_initialized():
            if wait:
                dist.barrier()
            dist.destroy_process_group()
            self.owned = False

    def check(self, config: Any) -> None:
        """Refuse, before anything is written, what this group cannot run."""
        from assist.config import ConfigError

        if self.active and config.sync_batchnorm and torch.device(config.device).type == "cpu":
            raise ConfigError("sync_batchnorm: torch's SyncBatchNorm runs on GPUs only; a data-parallel CPU run "
                              "keeps per-rank BatchNorm statistics (set sync_batchnorm=false)")

    def device(self, configured: str) -> torch.device:
        """This rank's device: ``cuda`` becomes ``cuda:<local rank>`` under DDP."""
        device = torch.device(configured)
        if self.active and device.type == "cuda" and device.index is None:
            return torch.device("cuda", self.local_rank)
        return device

    def wrap(self, model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        """``model`` under DistributedDataParallel, for the training forwards."""
        ids = [device.index] if device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)

    # ------------------------------------------------------------------ shares
    def bounds(self, total: int, rank: Optional[int] = None) -> tuple[int, int]:
        """This rank's contiguous rows of ``total`` (as ``torch.tensor_split``: the first
        ``total % world_size`` ranks hold one more)."""
        rank = self.rank if rank is None else rank
        base, extra = divmod(total, self.world_size)
        start = rank * base + min(rank, extra)
        return start, start + base + (rank < extra)

    def sizes(self, total: int) -> list[int]:
        return [b - a for a, b in (self.bounds(total, r) for r in range(self.world_size))]

    def splits(self, total: int) -> bool:
        """Whether ``total`` rows are split (every rank gets at least one) or replicated."""
        return self.active and total >= self.world_size

    def span(self, total: int) -> tuple[int, int]:
        """The rows of ``total`` this rank works on: its bounds when they are split, else all."""
        return self.bounds(total) if self.splits(total) else (0, total)

    def share(self, chunk: Chunk) -> tuple[Chunk, float]:
        """This rank's part of a batch to train, and the factor that makes the mean of its
        per-sample losses, averaged over ranks by DDP, the mean over the whole batch. A batch
        smaller than the group is trained whole on every rank (factor 1)."""
        if not self.splits(len(chunk)):
            return chunk, 1.0
        a, b = self.bounds(len(chunk))
        weights = None if chunk.weights is None else chunk.weights[a:b]
        part = Chunk(chunk.x[a:b], chunk.y[a:b], chunk.indices[a:b], weights)
        return part, (b - a) * self.world_size / len(chunk)

    # ------------------------------------------------------------------ collectives
    def gather_rows(self, local: torch.Tensor, total: int, *, timed: bool = True) -> torch.Tensor:
        """The rows of a tensor split by :meth:`bounds` over ``total``, from every rank, in
        rank order (so in the order of the whole). Identity when nothing was split."""
        if not self.splits(total):
            return local
        started = time.perf_counter()
        out = self._gather(local, self.sizes(total))
        if timed:
            self.comm_s += time.perf_counter() - started
        return out

    def gather_variable(self, local: torch.Tensor) -> torch.Tensor:
        """Rows from every rank, in rank order, when each rank holds any number (the
        Selector's loader shares); one extra all-gather of the row counts."""
        if not self.active:
            return local
        started = time.perf_counter()
        count = torch.tensor([int(local.shape[0])], device=local.device)
        counts = [torch.empty_like(count) for _ in range(self.world_size)]
        dist.all_gather(counts, count)
        out = self._gather(local, [int(c) for c in counts])
        self.comm_s += time.perf_counter() - started
        return out

    def _gather(self, local: torch.Tensor, sizes: list[int]) -> torch.Tensor:
        """All-gather rows of unequal counts: pad to the largest, gather, cut, concatenate."""
        dtype = local.dtype
        send = local.to(torch.uint8) if dtype == torch.bool else local  # gloo has no bool
        padded = send.new_zeros((max(sizes), *send.shape[1:]))
        padded[:send.shape[0]] = send
        parts = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(parts, padded.contiguous())
        out = torch.cat([p[:n] for p, n in zip(parts, sizes)])
        return out.to(dtype) if dtype == torch.bool else out

    def sync_buffers(self, module: torch.nn.Module) -> None:
        """Rank 0's buffers (BatchNorm running statistics) on every rank. DDP sends them at
        each training forward, and then each rank updates its copy from its own share."""
        if self.active:
            for buffer in module.buffers():
                dist.broadcast(buffer, src=0)

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank (pickled; for set-up and rare results)."""
        if not self.active:
            return value
        box = [value if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def first(self, action: Callable[[], Any]) -> Any:
        """Run ``action`` on rank 0 before the other ranks go on; an exception there is
        raised on every rank (so a bad run directory or data set stops the whole group with
        the same error). The other ranks get ``None``."""
        if not self.active:
            return action()
        if self.is_main:
            try:
                result = action()
            except BaseException as error:
                try:
                    pickle.dumps(error)
                    sent: BaseException = error
                except Exception:
                    sent = DistributedError(f"rank 0 failed: {type(error).__name__}: {error}")
                self.broadcast(sent)
                raise
            self.broadcast(None)
            return result
        failure = self.broadcast(None)
        if failure is not None:
            raise failure
        return None

    def all_objects(self, value: Any) -> list[Any]:
        """Every rank's ``value``, in rank order."""
        if not self.active:
            return [value]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, value)
        return out

    def take_comm_s(self) -> float:
        spent, self.comm_s = self.comm_s, 0.0
        return spent


def main_process() -> bool:
    """Whether this process is rank 0 of its launch, or not launched as a group at all (read
    from the launcher's environment, before any process group exists)."""
    return int(os.environ.get("RANK", "0")) == 0


def cpu_state(value: Any) -> Any:
    """A (nested) state dict with every tensor moved to the CPU, to send between ranks."""
    if isinstance(value, dict):
        return {k: cpu_state(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(cpu_state(v) for v in value)
    return value.cpu() if isinstance(value, torch.Tensor) else value
