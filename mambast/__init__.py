"""mambast: Mamba-ST (Botti et al., WACV 2025) arbitrary style transfer.

    import mambast
    model = mambast.load("path/to/weights")          # published folder, .safetensors, or run folder
    out = model(content, style)                      # (B, 3, H, W) in [0, 1] -> raw (B, 3, H, W)
    image = mambast.stylize(model, "content.jpg", "style.jpg", size=512)   # PIL in, PIL out
"""

import importlib

from .config import PRESETS, MambaSTConfig
from .errors import UserError
from .io import load, load_native, load_official, save_native, save_official
from .model import MambaST
from .ops import selective_scan

__version__ = "0.1.0"

__all__ = ["MambaST", "MambaSTConfig", "PRESETS", "UserError", "load", "load_native", "load_official",
           "save_native", "save_official", "selective_scan", "stylize", "Stylizer", "Controls", "__version__"]


# name -> the submodule that defines it, imported on first use (keeps `import mambast` light)
_LAZY = {"stylize": "inference", "Stylizer": "inference", "Controls": "inference",
         "training_losses": "train.losses", "load_vgg": "nets.vgg"}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'mambast' has no attribute {name!r}")


def __dir__() -> list[str]:  # the lazy names too (tab completion, help(mambast))
    return sorted({*globals(), *__all__, *_LAZY})
