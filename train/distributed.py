"""Training on several processes: torchrun starts them, DistributedDataParallel keeps them in step.

Each process (a rank) trains its share of the batch rows (lanes) of the global epoch plan:
lanes rank, rank + W, rank + 2W, ... of the plan every rank computes alike (train/batches.py).
DDP all-reduces the gradients, so every rank takes the same optimizer step and holds the same
weights; the loss of each rank is scaled so that their average is the mean over the whole
batch, which makes W processes train as one process with the same global batch does.
Validation is split across ranks by file and its sums are all-reduced. Rank 0 alone writes
checkpoints, after gathering the lanes' states and the ranks' random generators into them.

Backend: gloo on CPU, nccl on GPUs (one GPU per rank: cuda:LOCAL_RANK). Several machines:
torchrun's rendezvous flags (docs/training-at-scale.md). `mpx train --nproc N` runs
`torchrun --standalone --nproc-per-node N -m mpx train ...` for one machine.
"""
from __future__ import annotations

import dataclasses
import inspect
import logging
import os
from collections.abc import Sequence
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from mpx.runtime.checks import integer
from mpx.runtime.errors import MpxError, OptionsError

log = logging.getLogger(__name__)

MAX_NPROC = 1024
TIMEOUT = timedelta(minutes=30)  # a collective waits this long for a slow rank (a long validation)


@dataclasses.dataclass(frozen=True)
class LaunchOptions:
    """`mpx train --nproc N`: processes on this machine (torchrun for several machines)."""

    nproc: int = 1

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        n = integer("nproc", self.nproc, 1, MAX_NPROC,
                    allowed=f"1..{MAX_NPROC} (processes on this machine; several machines: torchrun)")
        if n > 1 and launched():
            raise OptionsError("--nproc starts torchrun itself; under torchrun, leave it out "
                               "(torchrun's --nproc-per-node sets the processes)")


def launched() -> bool:
    """True in a process that torchrun started (it sets these variables for every rank)."""
    return all(name in os.environ for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))


def env_rank() -> int:
    """This process's rank as torchrun set it (0 when not launched by torchrun)."""
    return int(os.environ.get("RANK", "0")) if launched() else 0


@dataclasses.dataclass(frozen=True)
class World:
    """The processes training together; one process is a world of size 1."""

    device: torch.device = torch.device("cpu")
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def lanes(self, total: int) -> np.ndarray:
        """This rank's lanes of a plan with `total` lanes."""
        return np.arange(self.rank, total, self.size)

    def all_sum(self, tensor: Tensor) -> Tensor:
        """The element-wise sum over ranks (the tensor itself in one process)."""
        if not self.distributed:
            return tensor
        moved = tensor.to(self.device) if self.device.type == "cuda" else tensor.cpu()
        dist.all_reduce(moved, op=dist.ReduceOp.SUM)
        return moved.to(tensor.device)

    def any(self, flag: bool) -> bool:
        """True on every rank when it is True on one (all stop at the same batch)."""
        if not self.distributed:
            return flag
        return bool(self.all_sum(torch.tensor([float(flag)], dtype=torch.float64)).item() > 0)

    def gather_rows(self, row: Tensor) -> Tensor:
        """[size, *row.shape]: every rank's `row` (rows must have one shape on every rank)."""
        out = torch.zeros((self.size, *row.shape), dtype=torch.float64)
        out[self.rank] = row.double().cpu()
        return self.all_sum(out)

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


def start(device: torch.device) -> World:
    """Join the process group torchrun set up (no-op outside torchrun or with one process).

    `device` is the resolved --device; on CUDA each rank takes GPU LOCAL_RANK.
    """
    if not launched() or int(os.environ["WORLD_SIZE"]) < 2:
        return World(device=device)
    rank, size, local = (int(os.environ[k]) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
    if device.type == "cuda":
        if device.index not in (None, local):
            raise OptionsError(f"--device {device}: under torchrun rank {rank} uses cuda:{local} "
                               "(its LOCAL_RANK); pass --device cuda")
        if local >= torch.cuda.device_count():
            raise OptionsError(f"rank {rank} needs GPU {local}, torch sees {torch.cuda.device_count()}: "
                               "start at most one process per GPU")
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend, rank=rank, world_size=size, timeout=TIMEOUT)
    log.info("rank %d of %d on %s (%s)", rank, size, device, backend)
    return World(device=device, rank=rank, size=size, local_rank=local)


def stop(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()


class _Scores(nn.Module):
    """The training view of the model: DDP synchronises what runs through forward(), and the
    model's forward() is the graph contract (it samples); training needs its training_scores()."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, notes: Tensor, h0: Tensor, c0: Tensor, controls: Tensor,
                targets: Tensor) -> tuple[list[Tensor], Tensor, Tensor]:
        return self.model.training_scores(notes, h0, c0, controls, targets)


def wrap(model: nn.Module, world: World) -> nn.Module:
    """The module a training step calls: DDP over the model's scores on several ranks."""
    view = _Scores(model)
    if not world.distributed:
        return view
    # The model's buffers are constants of the bins (the same on every rank): no need to send
    # them before every forward. (torch 2.13 renamed the switch.)
    ddp = nn.parallel.DistributedDataParallel
    buffers = ({"forward_sync_buffers": False} if "forward_sync_buffers" in inspect.signature(ddp).parameters
               else {"broadcast_buffers": False})
    return ddp(view, device_ids=[world.device] if world.device.type == "cuda" else None, **buffers)


def share(lengths: Sequence[int], world: World) -> list[int]:
    """This rank's files of a validation split: longest first onto the least loaded rank, so the
    ranks finish together."""
    load = [0] * world.size
    mine = []
    for i in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        rank = min(range(world.size), key=lambda r: (load[r], r))
        load[rank] += int(lengths[i])
        if rank == world.rank:
            mine.append(i)
    return sorted(mine)


def check_launch(options: LaunchOptions, device: str) -> None:
    """Fail before starting processes that could not run (one GPU per rank)."""
    if options.nproc > 1 and device.startswith("cuda"):
        count = torch.cuda.device_count()
        if count < options.nproc:
            raise OptionsError(f"--nproc {options.nproc} with --device {device} needs {options.nproc} GPUs "
                               f"(one per process), torch sees {count}")


def without_flag(argv: Sequence[str], flag: str) -> list[str]:
    """argv without `flag VALUE` / `flag=VALUE` (what each rank is given)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == flag:
            skip = True
        elif not arg.startswith(flag + "="):
            out.append(arg)
    return out


def launch(options: LaunchOptions, argv: Sequence[str]) -> None:
    """Run `torchrun --standalone --nproc-per-node N -m mpx ARGV` (torchrun's own code, in this
    process) until every rank is done. RankFailed when a rank fails, LaunchInterrupted on
    Ctrl-C: torchrun passes it on to the ranks, which stop at the same batch, rank 0 saving
    `last` first.
    """
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    # torchrun would set 1 thread per rank and print a banner about it; share the cores instead.
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // options.nproc)))
    args = parse_args(["--standalone", f"--nproc-per-node={options.nproc}", "-m", "mpx", *argv])
    # torchrun's notes on stopping ranks, each logger with its own level: the outcome is said below.
    quiet = [logging.getLogger(name) for name in list(logging.root.manager.loggerDict)
             if name.startswith("torch.distributed.elastic")]
    levels = [logger.level for logger in quiet]
    for logger in quiet:
        logger.setLevel(logging.CRITICAL)
    try:
        run(args)
    except SignalException as exc:
        raise LaunchInterrupted(f"interrupted (signal {exc.sigval.name})") from None
    except ChildFailedError as exc:
        rank, failure = first_cause(exc.failures)
        how = (f"killed by {failure.signal_name()}" if failure.exitcode < 0
               else f"exit code {failure.exitcode}, its error above")
        raise RankFailed(f"rank {rank} of {options.nproc} failed ({how}); torchrun stopped the others") from None
    finally:
        for logger, level in zip(quiet, levels):
            logger.setLevel(level)


def first_cause(failures: dict) -> tuple:
    """The rank whose failure caused the others: one killed by a signal first (its peers then
    exit 1 having lost contact, often within the same second, and torchrun's timestamps are
    whole seconds), else the earliest failure, the lowest rank on a tie."""
    signalled = [rank for rank, failure in failures.items() if failure.exitcode < 0]
    rank = min(signalled or failures, key=lambda r: (failures[r].timestamp, r))
    return rank, failures[rank]


class LaunchInterrupted(MpxError):
    """Ctrl-C (or SIGTERM) reached torchrun; the ranks saved `last` and stopped."""


class RankFailed(MpxError):
    """Another rank stopped (it died or was killed); this one cannot go on alone."""


def lost_contact(exc: BaseException) -> RankFailed | None:
    """The one-line error for a collective that failed because a peer is gone, else None."""
    if isinstance(exc, dist.DistError) or (isinstance(exc, RuntimeError) and any(
            word in str(exc) for word in ("gloo", "Connection closed", "NCCL", "Connection reset"))):
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return RankFailed(f"rank {env_rank()}: lost contact with the other ranks ({first[:160]})")
    return None
