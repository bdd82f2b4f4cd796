"""The published three-file checkpoint layout (docs/model.md section 11, keys in official_layout.json):

    mamba_iter_N.pth      encoder_c.*, encoder_s.*, decoder.*, new_ps.*   -> MambaST.mamba
    decoder_iter_N.pth    1.weight ... 28.bias (CNN decoder)              -> MambaST.cnn_decoder
    embedding_iter_N.pth  proj.weight, proj.bias                          -> MambaST.patch_embed

Loading is strict (every key consumed, every shape equal) and never unpickles anything but tensors;
the architecture is read off the tensor shapes, so non-paper configurations load too.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

import torch

from ..config import MambaSTConfig
from ..errors import UserError
from ..fs import WriteError, atomic_write, describe_os_error, ensure_dir
from ..model import MambaST
from .state_dict import first_line, load_state_dict_strict, strip_wrapper_prefixes, torch_load_tensors, unwrap_model

PARTS = {"mamba": "mamba", "decoder": "cnn_decoder", "embedding": "patch_embed"}  # file tag -> submodule


def official_files(directory: str | Path, iteration: int | None = None) -> dict[str, Path]:
    """{tag: path} of one complete set in `directory` (the highest iteration unless one is given)."""
    directory = Path(directory)
    found: dict[int, dict[str, Path]] = {}
    for p in directory.glob("*_iter_*.pth"):
        m = re.fullmatch(r"(mamba|decoder|embedding)_iter_(\d+)\.pth", p.name)
        if m:
            found.setdefault(int(m[2]), {})[m[1]] = p
    complete = sorted(n for n, files in found.items() if len(files) == 3)
    if iteration is not None:
        if iteration not in complete:
            raise UserError(f"{directory}: no complete checkpoint for iteration {iteration} "
                            f"(complete: {complete or 'none'})")
        return found[iteration]
    if not complete:
        partial = {n: sorted(f) for n, f in found.items()}
        raise UserError(f"{directory}: no complete published checkpoint (need mamba_iter_N.pth, "
                        f"decoder_iter_N.pth and embedding_iter_N.pth; found {partial or 'none'})")
    return found[complete[-1]]


def is_official_dir(path: str | Path) -> bool:
    return Path(path).is_dir() and any(Path(path).glob("mamba_iter_*.pth"))


def _count_layers(state: dict, prefix: str) -> int:
    idx = {int(m[1]) for k in state if (m := re.match(rf"{re.escape(prefix)}\.layers\.(\d+)\.", k))}
    return max(idx) + 1 if idx else 0


def infer_config(states: dict[str, dict[str, torch.Tensor]], source: str = "checkpoint") -> MambaSTConfig:
    """Read the architecture off the tensor shapes of the three state dicts ({tag: state}); errors name
    `source` (the folder) and the tensor that is missing or odd."""
    try:
        d_model, _, patch, _ = states["embedding"]["proj.weight"].shape
        mamba = states["mamba"]
        attn = "encoder_c.layers.0.self_attention"
        d_inner = mamba[f"{attn}.in_proj.weight"].shape[0] // 2
        d_state = mamba[f"{attn}.A_logs"].shape[1]
        dt_rank = mamba[f"{attn}.dt_projs_weight"].shape[2]
        outs = [t.shape[0] for k, t in states["decoder"].items() if k.endswith(".weight")]
        stages = patch.bit_length() - 1
        channels = [outs[0]] + [outs[4 + 2 * (i - 1)] for i in range(1, stages)]
    except (KeyError, IndexError, ValueError, TypeError, AttributeError) as e:
        firsts = {tag: next(iter(sd), "(none)") for tag, sd in states.items()}
        raise UserError(f"{source}: published layout not recognised (missing or odd tensor: {e}; first keys: "
                        f"{', '.join(f'{t} {k}' for t, k in firsts.items())})") from None
    dt_rank = None if dt_rank == -(-d_model // 16) else dt_rank  # None = the default rule
    return MambaSTConfig(d_model=d_model, d_state=d_state, expand=d_inner // d_model, dt_rank=dt_rank,
                         patch_size=patch, content_layers=_count_layers(mamba, "encoder_c"),
                         style_layers=_count_layers(mamba, "encoder_s"),
                         decoder_layers=_count_layers(mamba, "decoder"), cnn_channels=tuple(channels))


def load_official(directory: str | Path, iteration: int | None = None, device: str | torch.device = "cpu",
                  config: MambaSTConfig | None = None) -> MambaST:
    """MambaST (eval mode) from a published three-file checkpoint directory; strict."""
    files = official_files(directory, iteration)
    states = {tag: torch_load_tensors(path) for tag, path in files.items()}
    for tag, sd in states.items():
        if not isinstance(sd, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                               for k, v in sd.items()):
            raise UserError(f"{files[tag]}: expected a state dict of tensors")
        states[tag] = strip_wrapper_prefixes(sd, str(files[tag]))
    config = config or infer_config(states, str(directory))
    with torch.device("meta"):
        model = MambaST(config)
    for tag, sub in PARTS.items():
        load_state_dict_strict(getattr(model, sub), states[tag], str(files[tag]), assign=True)
    return model.to(device).eval()


def save_official(model: MambaST, out_dir: str | Path, iteration: int = 160000) -> dict[str, Path]:
    """Write the model in the published layout (same key order, float tensors as held); returns the paths.

    A torch.compile / DDP wrapper is unwrapped first. `out_dir` is created (with its parents); each file is
    written atomically, and a failure (a file in the way, permissions, full disk) is one `WriteError` line
    naming the path, leaving no temp file behind.
    """
    model = unwrap_model(model)
    out_dir = ensure_dir(out_dir)
    paths = {}
    for tag, sub in PARTS.items():
        state = {k: v.detach().cpu().clone().contiguous() for k, v in getattr(model, sub).state_dict().items()}
        paths[tag] = out_dir / f"{tag}_iter_{iteration}.pth"
        _save_published(state, paths[tag])
    return paths


def _save_published(state: dict[str, torch.Tensor], path: Path) -> None:
    """torch.save `state` to `path` byte-for-byte as the published files are (torch names the archive inside
    after the file, so it is saved under its final name in a hidden temp folder first), then published with
    `mambast.fs.atomic_write`."""
    try:
        with tempfile.TemporaryDirectory(dir=path.parent, prefix=".export-") as tmp:
            staged = Path(tmp) / path.name
            try:
                torch.save(state, staged)
            except RuntimeError as e:  # torch reports a full disk as "[enforce fail at inline_container.cc ...]"
                full = shutil.disk_usage(tmp).free < (1 << 20)
                raise WriteError(f"{path}: cannot write "
                                 f"({'no space left on the device' if full else first_line(e, 120)})") from None
            with open(staged, "rb") as src:
                atomic_write(path, lambda f: shutil.copyfileobj(src, f, 1 << 20))
    except OSError as e:
        raise WriteError(f"{path}: cannot write ({describe_os_error(e)})") from None
