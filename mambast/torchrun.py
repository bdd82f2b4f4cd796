"""Leaving a torchrun job cleanly: one way for training (train/distributed.py) and inference (inference/sharding.py).

Why this exists (issue 25, kind 7): about 1 in 20 complete 2-rank runs ended with one rank aborting at process
exit ("terminate called without an active exception", SIGABRT) after all its work was written, so torchrun
reported a failure. That message is a C++ thread being unwound where it must not be: during interpreter
finalization a background thread of the process group (gloo's transport loop and worker threads, which
hold tensors with Python objects) tries to take the GIL or is torn down with the interpreter, CPython ends
that thread with a forced unwind, the unwind meets a `noexcept` C++ frame and the runtime calls
std::terminate (pytorch/pytorch#179291, #190489). Those threads were still there at exit although both
wrappers called destroy_process_group:
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
from typing import NoReturn

_joined = False  # this process joined a process group at some point (then exit_process skips finalization)


def join_group(backend: str, timeout: datetime.timedelta | None = None) -> None:
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
