"""Which torch device a `device` setting means: the one resolver of every command (stylize, stylize-dataset,
video, ui, train) and of the torchrun context (`mambast.torchrun.DistContext`)."""

from __future__ import annotations

import torch

from .errors import FieldError

__all__ = ["DEVICE_HELP", "resolve_device"]

DEVICE_HELP = "auto, cpu, cuda or cuda:N"


def resolve_device(name: str | torch.device | None = "auto", local_rank: int | None = None) -> torch.device:
    """The device a setting names: "auto", "" or None -> CUDA when available, else the CPU; otherwise the
    named device ("cpu", "cuda", "cuda:N", "mps", a torch.device), checked.

    local_rank: the GPU index of this process in a torchrun job (LOCAL_RANK): a CUDA device without an index
    ("auto" on a CUDA machine, "cuda") becomes cuda:local_rank; None leaves it without an index.
    Raises FieldError naming `device` for a name torch does not know, CUDA where there is none, or a GPU
    index this machine does not have.
    """
    if name is None or (isinstance(name, str) and name.strip() in ("", "auto")):
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise FieldError(f"device {name!r}: unknown (use {DEVICE_HELP})", "device") from None
    if device.type != "cuda":
        return device
    if not torch.cuda.is_available():
        raise FieldError(f"device {str(device)!r}: CUDA is not available here", "device")
    if device.index is None:
        return device if local_rank is None else torch.device("cuda", local_rank)
    if device.index >= torch.cuda.device_count():
        raise FieldError(f"device {str(device)!r}: this machine has {torch.cuda.device_count()} GPU(s)", "device")
    return device
