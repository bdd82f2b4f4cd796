"""The one inference path: `Stylizer` holds the model, its device and dtype, the size policy and a cache of
style encodings; every front-end (`mambast.stylize`, `mambast stylize`, eval, video, the web UI, dataset runs)
calls it. Content and style are each encoded once; controls act in the fused token space (see controls.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ..images import to_pil, to_tensor
from ..model import MambaST
from ..model.mamba_st import pad_to_patches
from ..model.shuffle import draw_seed  # the model's own draw; also named here (api.py, cli/stylize.py)
from .colour import keep_content_chroma
from .compiled import engine_stages
from .controls import Controls
from .fast_decoder import FastDecoder
from .precision import DEFAULT_PRECISION, PRECISIONS, resolve_precision  # noqa: F401 - PRECISIONS re-exported
from .precision import autocast as precision_autocast
from .preprocess import ImageLike, Preprocessor, is_path, open_image
from .size import DEFAULT_MAX_PIXELS, memory_guard
from .style_cache import Fingerprint, StyleCache, StyleKey
from .values import check_optional, check_seed


def _weights_version(model: torch.nn.Module) -> int:
    """Changes whenever a parameter or buffer of `model` is modified in place (load_state_dict, optimiser)."""
    return sum(t._version for t in (*model.parameters(), *model.buffers()))


def cat(tensors: Sequence[Tensor]) -> Tensor:
    """torch.cat along dim 0, without a copy for one tensor (a 12-MP token map is 384 MB)."""
    return tensors[0] if len(tensors) == 1 else torch.cat(list(tensors))


@dataclass
class EncodedContent:
    """A content batch encoded once: image (B, 3, h, w), padded (B, 3, H, W), tokens (B, H/p, W/p, C)."""

    image: Tensor
    padded: Tensor
    tokens: Tensor

    @property
    def grid(self) -> tuple[int, int]:
        """The padded (H, W) px its styles are fitted to."""
        return tuple(self.padded.shape[-2:])

    @classmethod
    def cat(cls, contents: Sequence[EncodedContent]) -> EncodedContent:
        """One batch from encoded contents of one padded grid (a batch of one is that content itself, not a
        copy). Contents of different sizes are carried padded (`render` then covers the padded grid, to be
        cropped per content: the same pixels, since the decoder sees the padded grid either way)."""
        if len(contents) == 1:
            return contents[0]
        padded = torch.cat([c.padded for c in contents])
        tokens = torch.cat([c.tokens for c in contents])
        sizes = {tuple(c.image.shape[-2:]) for c in contents}
        image = torch.cat([c.image for c in contents]) if len(sizes) == 1 else padded
        return cls(image, padded, tokens)


_ENGINE_SIZE = object()  # "use Stylizer.size" (a per-call size may be None: keep the content's own size)


class Stylizer:
    """Stylize images with one model, one size policy and cached style encodings.

    model: a MambaST (eval mode is set); size: short side of the content in px (0/None: kept); max_pixels:
    refuse a planned content or style size above this many pixels (None/0: no limit); both held by
    `self.preprocessor` (preprocess.py: size policy, style fit, colour matching, masks); style_cache: how many
    style encodings `self.styles` keeps (keyed by the style's content, never by its path or object:
    `style_tokens`; None: no bound, the caller drops them);
    precision: one of PRECISIONS (mambast.inference.precision): "auto" (default: bf16 for the bundled model
    on devices with native bf16, else fp32), "fp32", or "bf16"/"fp16": the whole model under torch.autocast
    (on CUDA, and on CPUs with BF16/AMX support), the selective scan's inputs and state kept in float32, the
    CNN decoder's upsampling convs in their faster phase form (fast_decoder.py). `self.precision` is the
    concrete one "auto" resolved to. fp32 runs the model's own layers: the same numbers as `model(...)`.
    compile: run the model's stages through torch.compile (compiled.py; minutes per new input size the first
    time, a persistent cache after): for long-lived engines; opt-in (README, Speed: it does not pay on every CPU).
    """

    def __init__(self, model: MambaST, size: int | None = 512, max_pixels: int | None = DEFAULT_MAX_PIXELS,
                 style_cache: int | None = 16, precision: str = DEFAULT_PRECISION, compile: bool = False):
        param = next(model.parameters())
        self.device, self.dtype = param.device, param.dtype
        self.precision = resolve_precision(precision, self.device, model.config)
        self.model = model.eval()
        self.decoder = model.cnn_decoder if self.precision == "fp32" else FastDecoder(model.cnn_decoder)
        self.stages = engine_stages(self, compile)  # encode_content, encode_style, fuse, decode
        self.patch = model.config.patch_size
        self.preprocessor = Preprocessor(self.patch, size, max_pixels)
        self.styles = StyleCache(check_optional(style_cache, "style_cache", 0, whole=True))

    @property
    def size(self) -> int | None:
        """The content's short side in px (None: its own size): `preprocessor.size`."""
        return self.preprocessor.size

    @property
    def max_pixels(self) -> int | None:
        """The pixel limit of a planned content or style (None: none): `preprocessor.max_pixels`."""
        return self.preprocessor.max_pixels

    def autocast(self) -> contextlib.AbstractContextManager:
        """The precision context every model call of the engine runs in (a no-op for fp32)."""
        return precision_autocast(self.precision, self.device)

    def decode(self, fused: Tensor) -> Tensor:
        """The CNN decoder in the engine's form: fused tokens (B, H, W, C) -> raw image (B, 3, H p, W p)."""
        return self.decoder(fused.permute(0, 3, 1, 2))

    # ----- preparing inputs (the preprocessor) ------------------------------------------------------------
    def prepare_content(self, content: ImageLike, size: int | None | object = _ENGINE_SIZE) -> Image.Image:
        """The content at its working size (short side `size`, by default the engine's): `Preprocessor.
        content_image` (planned size checked first; one-line ImageError naming the file; a bad `size`: FieldError
        naming it)."""
        pre = self.preprocessor if size is _ENGINE_SIZE else self.preprocessor.with_size(size)
        return pre.content_image(content)

    def grid(self, width: int, height: int) -> tuple[int, int]:
        """Padded (H, W) in px of a content of width x height px."""
        return self.preprocessor.grid(width, height)

    def prepare_style(self, style: ImageLike, padded_hw: tuple[int, int], controls: Controls,
                      content: Tensor | None = None) -> Tensor:
        """The style as a (1, 3, H, W) tensor on the padded grid (colour-matched to `content` for "match"):
        `Preprocessor.style` on the engine's device."""
        return self.preprocessor.style(style, padded_hw, controls, content)[None].to(self.device, self.dtype)

    # ----- encodings (batch primitives) -------------------------------------------------------------------
    @torch.inference_mode()
    def encode_contents(self, images: Sequence[Tensor]) -> list[EncodedContent]:
        """Contents (3, h_i, w_i) in [0, 1] of one padded grid (any exact sizes) -> one encoding each, in one
        model call (each padded by the model's rule, as `encode_content`)."""
        xs = [x.to(self.device, self.dtype)[None] for x in images]
        padded = cat([pad_to_patches(x, self.patch) for x in xs])  # (n, 3, H, W)
        with self.autocast():
            tokens = self.stages.encode_content(padded)
        return [EncodedContent(x, padded[i:i + 1], tokens[i:i + 1]) for i, x in enumerate(xs)]

    @torch.inference_mode()
    def encode_styles(self, images: Sequence[Tensor]) -> list[Tensor]:
        """Styles (3, H, W) on one padded grid (`Preprocessor.style`) -> tokens (1, H/p, W/p, C) each, in one
        model call."""
        x = cat([s[None] for s in images]).to(self.device, self.dtype)
        with self.autocast():
            tokens = self.stages.encode_style(x)
        return [tokens[i:i + 1] for i in range(len(images))]

    @torch.inference_mode()
    def encode_image(self, content: ImageLike, size: int | None | object = _ENGINE_SIZE) -> EncodedContent:
        """One content (a path or an in-memory image) at its working size, encoded once: reuse it for any
        number of styles (`style_tokens(style, encoded.grid, ...)`, `render`)."""
        return self.encode_content(to_tensor(self.prepare_content(content, size))[None])

    @torch.inference_mode()
    def style_tokens(self, style: ImageLike, padded_hw: tuple[int, int], controls: Controls | None = None,
                     content: Tensor | None = None) -> Tensor:
        """Encoded style (1, H/p, W/p, C), cached (`self.styles`) by what it is made of (`StyleKey`): the
        style's content (a file's bytes, an in-memory image's RGB pixels), the grid, style_size, the
        precision and the model's weights (their in-place version), so a file rewritten at the same path, an
        image or array edited in place or weights loaded into the model are encoded again. Colour-matched
        styles depend on the content (3, h, w): not cached."""
        controls = controls or Controls()
        if controls.preserve_color == "match":
            return self.encode_styles([self.preprocessor.style(style, padded_hw, controls, content)])[0]
        if not is_path(style):
            style = open_image(style, "style image")  # an RGB copy: later edits of the caller's image cannot reach it
        source = Fingerprint.of(style)
        key = StyleKey(source, tuple(padded_hw), controls.style_size, self.precision, _weights_version(self.model))
        hit = self.styles.get(key) if source is not None else None
        if hit is not None:
            return hit
        tokens = self.encode_styles([self.preprocessor.style(style, padded_hw, controls)])[0]
        if source is not None and (not is_path(style) or Fingerprint.of(style) == source):  # unchanged while read
            self.styles.put(key, tokens)
        return tokens

    def _generators(self, seeds: list[int] | None):
        if seeds is None:
            return None
        seeds = [check_seed(s) for s in seeds]  # numpy integers too
        if len(set(seeds)) == 1:  # one permutation for the whole batch
            return torch.Generator().manual_seed(seeds[0])
        return [torch.Generator().manual_seed(s) for s in seeds]

    # ----- the core: tensors in, tensors out ----------------------------------------------------------------
    @torch.inference_mode()
    def encode_content(self, content: Tensor) -> EncodedContent:
        """Content (B, 3, h, w) in [0, 1] -> its encoding, reusable for any number of styles."""
        content = content.to(self.device, self.dtype)
        padded = pad_to_patches(content, self.patch)
        with self.autocast():
            return EncodedContent(content, padded, self.stages.encode_content(padded))

    @torch.inference_mode()
    def render(self, content: EncodedContent, styles: Sequence[Tensor], controls: Controls | None = None,
               seeds: Sequence[int] | None = None, mask: ImageLike | None = None, consume: bool = False) -> Tensor:
        """Fuse an encoded content with encoded styles (B or 1, H/p, W/p, C each, on its padded grid; one per
        style) under `controls`, decode once -> raw output (B, 3, h, w), not clamped.

        seeds: one shuffle seed per sample (default: controls.seed for all, else drawn), so a batch gives the
        same images as B single calls with those seeds. mask: overrides controls.mask (regions at (h, w)).
        consume: the content's tokens may be overwritten by their last use (one token map less memory; the
        encoding cannot be rendered again).
        """
        return self._render(content, styles, controls, seeds, mask, consume)

    @torch.inference_mode()
    def _render(self, content: EncodedContent, styles: Sequence[Tensor], controls: Controls | None,
                seeds: Sequence[int] | None, mask: ImageLike | None, consume: bool) -> Tensor:
        """`render` (what every render goes through)."""
        controls = controls or Controls()
        batch = content.image.shape[0]
        if not controls.shuffle:
            seeds = None
        elif seeds is None:
            seeds = [controls.seed if controls.seed is not None else draw_seed()] * batch
        with self.autocast():
            out = self._fuse_decode(content, styles, controls, seeds, mask, consume)
        if controls.preserve_color == "luminance":
            out = keep_content_chroma(out, content.image)
        return out.to(self.dtype)  # float32 (the model's dtype) whatever the precision

    def _fuse_decode(self, content: EncodedContent, styles: Sequence[Tensor], controls: Controls,
                     seeds: Sequence[int] | None, mask: ImageLike | None, consume: bool = False) -> Tensor:
        h, w = content.image.shape[-2:]
        used = []  # (style tokens, weight) of the styles that contribute
        if controls.alpha > 0:
            weights = self._weights(controls, len(styles), mask, (h, w), content.padded.shape[-2:])
            used = [(s, wt) for s, wt in zip(styles, weights, strict=True)
                    if not (isinstance(wt, float) and wt == 0.0)]
        uses = len(used) + (controls.alpha < 1)  # fuse calls reading content.tokens

        def fuse(style_tokens: Tensor) -> Tensor:  # the last use may overwrite the tokens (memory.md)
            nonlocal uses
            uses -= 1
            return self.stages.fuse(content.tokens, style_tokens, self._generators(seeds),
                                    overwrite=consume and not uses)

        fused = None
        for style_tokens, weight in used:
            part = fuse(style_tokens)
            part = part if isinstance(weight, float) and weight == 1.0 else part * weight
            fused = part if fused is None else fused + part
        if controls.alpha < 1:
            identity = fuse(self.stages.encode_style(content.padded))
            fused = identity if fused is None else controls.alpha * fused + (1 - controls.alpha) * identity
        return self.stages.decode(fused)[..., :h, :w]

    def stylize_tensor(self, content: Tensor, styles: Sequence[Tensor], controls: Controls | None = None,
                       seeds: Sequence[int] | None = None, mask: ImageLike | None = None) -> Tensor:
        """`render(encode_content(content), styles, ...)`: content (B, 3, h, w) -> raw (B, 3, h, w)."""
        return self._render(self.encode_content(content), styles, controls, seeds, mask, consume=True)

    def _weights(self, controls: Controls, n_styles: int, mask, hw, padded_hw) -> list[float | Tensor]:
        if controls.mask is None and mask is None:
            return controls.normalised_weights(n_styles)
        maps = self.preprocessor.region_weights(mask if mask is not None else controls.mask, n_styles, hw, padded_hw)
        maps = maps.to(self.device, self.dtype)
        return [m[None, :, :, None] for m in maps]  # (1, H, W, 1) each, broadcast over batch and channels

    # ----- PIL in, PIL out ----------------------------------------------------------------------------------
    def stylize(self, content: ImageLike, style: ImageLike | Sequence[ImageLike], controls: Controls | None = None,
                seed: int | None = None, size: int | None | object = _ENGINE_SIZE) -> Image.Image:
        """One content with one style (or several: mixed by controls.style_weights, or by controls.mask) ->
        an RGB PIL image of the content's working size (short side `size` for this call, by default the
        engine's `size`; 0/None: the content's own size)."""
        controls = controls or Controls()
        styles = [style] if isinstance(style, (Image.Image, np.ndarray)) or is_path(style) else list(style)
        what = str(content) if is_path(content) else "content"
        with memory_guard(what, "ask for a smaller size or a lower max_pixels"):  # one line, never a bare error
            content_img = self.prepare_content(content, size)
            c = to_tensor(content_img)[None]
            padded_hw = self.grid(*content_img.size)
            tokens = [self.style_tokens(s, padded_hw, controls, c[0]) for s in styles]
            seeds = None if seed is None else [seed]
            return to_pil(self.stylize_tensor(c, tokens, controls, seeds)[0])
