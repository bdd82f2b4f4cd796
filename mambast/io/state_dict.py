"""Strict state-dict loading with one clear error, safe torch-file reading, and the wrappers PyTorch tools add.

`torch.compile` keeps the original model as `_orig_mod` and DistributedDataParallel / DataParallel as
`module`, so their state dicts prefix every key with `_orig_mod.` / `module.`. Saving unwraps the model
(:func:`unwrap_model`); loading removes a prefix that every key carries (:func:`strip_wrapper_prefixes`).
"""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path

import torch
from torch import nn

from ..errors import UserError

WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def first_line(e: BaseException, limit: int = 200) -> str:
    """The first non-empty line of an exception's message (its type name when the message is empty)."""
    lines = [line for line in str(e).strip().splitlines() if line.strip()]
    return (lines[0] if lines else type(e).__name__)[:limit]


def require_file(path: str | Path, what: str = "checkpoint", error: type[UserError] = UserError,
                 hint: str = "") -> Path:
    """`path` as a Path when it is a non-empty regular file; otherwise one `error` line naming it (and `what` it
    should be), `hint` (e.g. "; get it with ...") appended."""
    path = Path(path)
    if not path.exists():
        raise error(f"{path}: {what} file not found{hint}")
    if not path.is_file():
        raise error(f"{path}: not a file (a {what} file was expected){hint}")
    if path.stat().st_size == 0:
        raise error(f"{path}: empty file (0 bytes; an interrupted copy or download?){hint}")
    return path


_PICKLED = re.compile(r"GLOBAL ([\w.]+)")  # the names torch's weights_only unpickler refused


def torch_load_tensors(path: str | Path, what: str = "checkpoint", error: type[UserError] = UserError,
                       hint: str = "", map_location: str | torch.device = "cpu"):
    """The one reader of torch files (checkpoints, training and distillation checkpoints, VGG, Inception and
    LPIPS weights): torch.load with weights_only=True -> what the file holds (tensors in dicts, lists, numbers,
    strings).

    A file that holds other pickled objects (which could run code when loaded) is refused, never unpickled;
    missing, empty, truncated or corrupt files are one line too, whatever the reader raised. Every failure is an
    `error` (a UserError subclass) naming the path and `what` the file should be, `hint` appended."""
    path = require_file(path, what, error, hint)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:  # the allow-list said no: to objects, or to bytes that are no pickle
        found = _PICKLED.search(str(e))
        if found or zipfile.is_zipfile(path):
            named = f" (it names {found[1]})" if found else ""
            raise error(f"{path}: refused: it holds pickled Python objects, not only tensors, and loading it "
                        f"could run code{named}") from None
        raise error(f"{path}: cannot read {what} (not a torch file){hint}") from None
    except MemoryError:
        raise error(f"{path}: cannot read {what} (it asks for more memory than there is)") from None
    except Exception as e:  # noqa: BLE001 - a corrupt file can make the zip/pickle readers raise anything
        raise error(f"{path}: cannot read {what} ({first_line(e)}){hint}") from None


class _WriteRecorder:
    """A file object that remembers the OSError its write raised (torch.save turns it into a RuntimeError)."""

    def __init__(self, f):
        self.f, self.error = f, None

    def write(self, data) -> int:
        try:
            return self.f.write(data)
        except OSError as e:
            self.error = e
            raise

    def flush(self) -> None:
        self.f.flush()


def torch_save(obj, f) -> None:
    """torch.save(obj, f) into an open binary file, re-raising the file's own OSError (ENOSPC: "no space left")
    instead of torch's "[enforce fail at inline_container.cc ...]" RuntimeError; for `mambast.fs.atomic_write`."""
    recorder = _WriteRecorder(f)
    try:
        torch.save(obj, recorder)
    except RuntimeError:
        if recorder.error is not None:
            raise recorder.error from None
        raise


def unwrap_model(model: nn.Module) -> nn.Module:
    """The model inside torch.compile (`_orig_mod`) and DataParallel / DistributedDataParallel (`module`)
    wrappers, however nested."""
    while True:
        if isinstance(getattr(model, "_orig_mod", None), nn.Module):
            model = model._orig_mod
        elif isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            model = model.module
        else:
            return model


def strip_wrapper_prefixes(state: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """Remove the `module.` / `_orig_mod.` prefixes (in any nesting) when every key carries them.

    When only some keys do, the file mixes wrapped and unwrapped names: one UserError naming `source` and the
    first offending keys.
    """
    while state:
        for prefix in WRAPPER_PREFIXES:
            marked = [k for k in state if k.startswith(prefix)]
            if marked and len(marked) == len(state):
                state = {k[len(prefix):]: v for k, v in state.items()}
                break
            if marked:
                raise UserError(f"{source}: {len(marked)} of {len(state)} keys carry the wrapper prefix "
                                f"{prefix!r} (first: {', '.join(marked[:3])}) and the others do not: save the "
                                "unwrapped model's state_dict")
        else:
            return state
    return state


def _listing(name: str, items: list[str], limit: int = 8) -> str:
    more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
    return f"{len(items)} {name}: {', '.join(items[:limit])}{more}"


def load_state_dict_strict(module: nn.Module, state: dict[str, torch.Tensor], source: str,
                           assign: bool = False) -> None:
    """Load `state` into `module` (wrapper prefixes removed, see :func:`strip_wrapper_prefixes`) requiring every
    key consumed and every shape equal; otherwise raise one UserError naming `source` and listing the missing,
    unexpected and mis-shaped keys."""
    state = strip_wrapper_prefixes(state, source)
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shaped = [f"{k} {tuple(state[k].shape)} != {tuple(own[k].shape)}" for k in own
              if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shaped:
        parts = [_listing(n, i) for n, i in (("missing", missing), ("unexpected", unexpected),
                                             ("mis-shaped", shaped)) if i]
        raise UserError(f"{source}: checkpoint does not match the model: {'; '.join(parts)}")
    module.load_state_dict(state, strict=True, assign=assign)
