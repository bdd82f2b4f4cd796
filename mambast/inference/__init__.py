"""Inference: the one path from images to stylized images (see engine.py), with its preprocessor (size policy,
style fit, colour preservation, masks: preprocess.py), controls, output naming and the one folder entry
(folder.py: `stylize_folder`, run by jobs.py)."""

from .api import StylizeReport, stylize, stylize_pairs
from .controls import Controls
from .engine import Stylizer
from .naming import output_name
from .preprocess import Preprocessor
from .size import DEFAULT_MAX_PIXELS

__all__ = ["Controls", "Stylizer", "Preprocessor", "stylize", "stylize_pairs", "StylizeReport", "output_name",
           "DEFAULT_MAX_PIXELS"]
