"""A process's place in a torchrun job, one way for training (train/loop.py) and inference (inference/jobs.py).

    with DistContext.from_env(device) as ctx:   # joins torchrun's group, leaves it at the end
        ctx.rank, ctx.world_size, ctx.device, ctx.barrier(), ctx.gather(obj)

`DistContext.from_env` reads torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK): without torchrun (no
WORLD_SIZE > 1) it is one process of one and joins nothing. Under torchrun it joins the default group (gloo
on the CPU, nccl on CUDA) with a timeout of TIMEOUT on every collective, one GPU per rank (cuda:LOCAL_RANK;
more ranks on a node than GPUs is a one-line error), and leaves it with the steps below.

Leaving a torchrun job cleanly:

Why this exists (issue 25, kind 7): about 1 in 20 complete 2-rank runs ended with one rank aborting at process
exit ("terminate called without an active exception", SIGABRT) after all its work was written, so torchrun
reported a failure. That message is a C++ thread being unwound where it must not be: during interpreter
finalization a background thread of the process group (gloo's transport loop and worker threads, which
hold tensors with Python objects) tries to take the GIL or is torn down with the interpreter, CPython ends
that thread with a forced unwind, the unwind meets a `noexcept` C++ frame and the runtime calls
std::terminate (pytorch/pytorch#179291, #190489). Those threads were still there at exit although both
commands called destroy_process_group:
- inference: `import torch._dynamo` (which `torch.compiler.assume_constant_result` in ops/scan_cpu.py does
  when the model is loaded, after the group was joined) takes 10 references to the default group that
  destroy_process_group never drops, so the group and its three gloo threads lived until interpreter exit;
- training: the DistributedDataParallel module holds the group until the garbage collector frees it,
  possibly only during finalization.
A barrier before leaving the group does not help: the race is after it.

So a rank joins and leaves in four steps:
1. `join_group(backend)`: torch._dynamo is imported before the group exists (it then takes no reference to
   it), then the group is joined.
2. `leave_group(finished)`: after a normal end the ranks meet at a barrier (no rank closes its connections
   while a peer still reads them); then the group is destroyed and the garbage collector runs, so the
   backend's threads are joined now, in the main thread, while the interpreter is whole (tested: no gloo
   thread is left).
3. The command returns its exit code as usual.
4. `exit_process(code)` (the `python -m mambast` entry point): in a process that joined a group, stdout,
   stderr and logging are flushed and the process ends with `os._exit(code)`, skipping interpreter
   finalization, so that nothing left (a thread of torch's or of a library's) can race it. Every file of the
   run is closed by then (outputs, manifests and checkpoints are written atomically and fsynced). Outside
   torchrun: a normal exit.
"""

from __future__ import annotations

import datetime
import gc
import logging
import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:  # torch is imported when a context is made: `python -m mambast --help` does not load it
    import torch

__all__ = ["TIMEOUT", "DistContext", "join_group", "leave_group", "exit_process"]

# of every collective: rank 0 may list and check a large folder, or write a checkpoint, while the others wait
TIMEOUT = datetime.timedelta(hours=2)

_joined = False  # this process joined a process group at some point (then exit_process skips finalization)


@dataclass
class DistContext:
    """This process's place in a run: rank of world_size, local_rank (its GPU on this node), its device, and
    whether it joined the process group itself (`owns_group`: then `close` leaves it). A bare
    `DistContext()` is one process of one on the CPU."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device | None = None
    owns_group: bool = False

    def __post_init__(self) -> None:
        if self.device is None:
            import torch

            self.device = torch.device("cpu")

    @classmethod
    def from_env(cls, device: str | torch.device | None = "auto",
                 timeout: datetime.timedelta = TIMEOUT) -> DistContext:
        """One process (no torchrun), or join torchrun's group (unless this process is in one already).

        device: a setting as `mambast.device.resolve_device` takes it ("auto", "cpu", "cuda", "cuda:N"...).
        Under torchrun a CUDA device is cuda:LOCAL_RANK (one GPU per rank, made the current device). Raises
        FieldError naming `device` (see resolve_device), or UserError when a node starts more ranks than it
        has GPUs."""
        import torch
        import torch.distributed as dist

        from .device import resolve_device
        from .errors import UserError

        world = int(os.environ.get("WORLD_SIZE", "1"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
        resolved = resolve_device(device, local_rank=local)
        if world <= 1:
            return cls(device=resolved)
        rank = int(os.environ["RANK"])
        if resolved.type == "cuda":
            if local >= torch.cuda.device_count():
                raise UserError(f"rank {rank}: LOCAL_RANK {local} but only {torch.cuda.device_count()} GPU(s) "
                                "here; start at most one process per GPU (torchrun --nproc_per_node)")
            resolved = torch.device("cuda", local)
            torch.cuda.set_device(resolved)
        owns = not dist.is_initialized()
        if owns:
            join_group("nccl" if resolved.type == "cuda" else "gloo", timeout=timeout)
        return cls(dist.get_rank(), dist.get_world_size(), local, resolved, owns)

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that reports and writes what is written once."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """More than one rank (collectives go through the group)."""
        return self.world_size > 1

    def barrier(self) -> None:
        """Wait for every rank (nothing in one process)."""
        if self.distributed:
            import torch.distributed as dist

            dist.barrier()

    def gather(self, obj: Any) -> list:
        """Every rank's `obj` (picklable), in rank order, on every rank (every rank must call it)."""
        if not self.distributed:
            return [obj]
        import torch.distributed as dist

        out = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def close(self, finished: bool = True) -> None:
        """Leave the group this context joined (`leave_group`: after a normal end (`finished`) the ranks first
        meet at a barrier; after an error they do not, the others may never arrive)."""
        if self.owns_group:
            self.owns_group = False
            leave_group(finished)

    def __enter__(self) -> DistContext:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(finished=exc_type is None)


def join_group(backend: str, timeout: datetime.timedelta | None = TIMEOUT) -> None:
    """Join torchrun's default process group (env:// rendezvous: RANK, WORLD_SIZE, MASTER_ADDR/PORT).
    backend: "gloo" or "nccl"; timeout: of every collective (None: torch's default)."""
    import torch.distributed as dist

    try:  # before the group exists: imported later, it keeps the group alive past destroy_process_group
        import torch._dynamo  # noqa: F401
    except ImportError:  # a torch without it: nothing to hold the group either
        pass
    dist.init_process_group(backend, **({} if timeout is None else {"timeout": timeout}))
    global _joined
    _joined = True


def leave_group(finished: bool = True) -> None:
    """Leave the default process group, if any. finished: the ranks first meet at a barrier (only after a
    normal end: after an error the other ranks may never arrive, and torchrun stops them). Then the group is
    destroyed and a garbage collection frees what still held it (a DDP module, futures), joining the
    backend's threads here rather than at interpreter exit."""
    import torch.distributed as dist  # here: `python -m mambast --help` does not load torch

    if not (dist.is_available() and dist.is_initialized()):
        return
    try:
        if finished and dist.get_world_size() > 1:
            dist.barrier()
    finally:
        dist.destroy_process_group()
        gc.collect()


def exit_process(code: int | None) -> NoReturn:
    """End the process with `code`. In a process that joined a torchrun group: flush and `os._exit` (no
    interpreter finalization, see the module docstring); otherwise `sys.exit`."""
    code = int(code or 0)
    if not _joined:
        sys.exit(code)
    leave_group(finished=False)  # normally already left: then this does nothing
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing more can be said there
            pass
    os._exit(code)
