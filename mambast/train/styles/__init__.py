"""A style corpus for distilling the default model: thousands of distinct style images, generated or derived
here, covering the whole hue circle and many textures (issue 26; docs/style-corpus.md).

    from mambast.train.styles import generate, StyleCorpus, Sources
    img = generate(17, seed=0, size=256, dev="shared/images/dev")        # PIL RGB, deterministic
    corpus = StyleCorpus(0, 256, Sources.from_dev("shared/images/dev"))
    array, params = corpus.sample(17)                                     # uint8 (256, 256, 3), its recipe

Needs OpenCV (`mambast[distill]`). Never reads the evaluation images (paths under an `eval` folder are refused).
"""

from .corpus import FAMILIES, StyleCorpus, generate, write_manifest
from .sources import PACKAGE_IMAGES, Sources

__all__ = ["FAMILIES", "PACKAGE_IMAGES", "Sources", "StyleCorpus", "generate", "write_manifest"]
