"""Inference: the one path from images to stylized images (see engine.py), with its size policy, controls,
colour preservation, masks and output naming."""

from .api import StylizeReport, stylize, stylize_pairs
from .controls import Controls
from .engine import Stylizer
from .naming import output_name
from .size import DEFAULT_MAX_PIXELS

__all__ = ["Controls", "Stylizer", "stylize", "stylize_pairs", "StylizeReport", "output_name", "DEFAULT_MAX_PIXELS"]
