"""mambast: Mamba-ST (Botti et al., WACV 2025) arbitrary style transfer.

    import mambast
    model = mambast.load("path/to/weights")          # published folder, .safetensors, or run folder
    out = model(content, style)                      # (B, 3, H, W) in [0, 1] -> raw (B, 3, H, W)
    image = mambast.stylize(model, "content.jpg", "style.jpg", size=512)   # PIL in, PIL out
"""

from .config import PRESETS, MambaSTConfig
from .errors import UserError
from .io import load, load_native, load_official, save_native, save_official
from .model import MambaST
from .ops import selective_scan

__version__ = "0.1.0"

__all__ = ["MambaST", "MambaSTConfig", "PRESETS", "UserError", "load", "load_native", "load_official",
           "save_native", "save_official", "selective_scan", "stylize", "Stylizer", "Controls", "__version__"]


def __getattr__(name):  # lazy: keep `import mambast` light
    if name in ("stylize", "Stylizer", "Controls"):
        from . import inference

        return getattr(inference, name)
    if name == "training_losses":
        from .train.losses import training_losses

        return training_losses
    if name == "load_vgg":
        from .nets.vgg import load_vgg

        return load_vgg
    raise AttributeError(f"module 'mambast' has no attribute {name!r}")


def __dir__() -> list[str]:  # the lazy names too (tab completion, help(mambast))
    return sorted({*globals(), *__all__, "training_losses", "load_vgg"})
