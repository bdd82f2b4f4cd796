"""What one click of the web UI does, without Gradio: uploaded file paths and control values in, a PNG file
and a one-line status out. Every image goes through the inference engine (`Stylizer`), which reads files with
`mambast.images` (modes, ICC profiles, bombs, sizes); this module only turns form values into `Controls`,
times the run, writes the result and words the messages a user sees."""

from __future__ import annotations

import logging
import math
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from ..errors import UserError
from ..fs import atomic_write, process_alive
from ..images import load_resized
from ..inference import Controls, Stylizer, output_name
from ..inference.size import check_style_size, is_out_of_memory
from ..inference.values import check_number
from ..model.shuffle import draw_seed

log = logging.getLogger("mambast.ui")

PREVIEW_SIZE = 160  # short side of the input previews, px
MAX_SEED = 2**31 - 1  # seeds the page offers stay exact in a browser's numbers (doubles)
WORKSPACE_PREFIX = "mambast-ui-"  # TMP/mambast-ui-PID.HOST-XXXXXXXX: one server process's results (and uploads)


def new_seed() -> int:
    """A fresh shuffle seed in [0, MAX_SEED] (`mambast.model.shuffle.draw_seed`, the model's own draw)."""
    return draw_seed(MAX_SEED + 1)


@dataclass(frozen=True)
class Result:
    """A finished run: the PNG written, the seed used (None: shuffle off), the time taken in seconds."""

    path: Path
    size: tuple[int, int]
    seed: int | None
    seconds: float

    def status(self) -> str:
        seed = "shuffle off" if self.seed is None else f"seed {self.seed}"
        return f"Done in {self.seconds:.2f} s: {self.size[0]} x {self.size[1]} px, {seed}."


def parse_weights(text: str | None, n_styles: int) -> tuple[float, ...] | None:
    """'0.7, 0.3' -> (0.7, 0.3); blank -> None for one style, equal weights for several.

    Raises UserError (one line) for text that is not numbers or a count other than `n_styles`.
    """
    parts = [p for p in (text or "").replace(";", ",").replace(",", " ").split()]
    if not parts:
        return None if n_styles <= 1 else (1.0,) * n_styles
    try:
        weights = tuple(float(p) for p in parts)
    except ValueError:
        raise UserError(f"style weights: {text.strip()!r} is not a list of numbers (e.g. 0.7, 0.3)") from None
    if len(weights) != n_styles:
        raise UserError(f"style weights: {len(weights)} given for {n_styles} style image(s); give one per style")
    return weights


def _int_or_none(value: float | int | None, what: str, minimum: int) -> int | None:
    """A form number -> int (None/blank stays None); UserError naming `what` below `minimum` or not whole."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return check_number(value, what, minimum, whole=True)


def _owner_tag(pid: int) -> str:
    """PID.HOST: whose workspace a folder is (the host name tells machines or containers sharing one /tmp apart,
    whose process ids this one cannot check)."""
    return f"{pid}.{''.join(ch for ch in socket.gethostname() if ch.isalnum())}"


def make_workspace() -> Path:
    """A new private folder for this process (TMP/mambast-ui-PID.HOST-XXXXXXXX), after removing the folders
    that servers of this host no longer running left behind (`remove_stale_workspaces`)."""
    remove_stale_workspaces()
    return Path(tempfile.mkdtemp(prefix=f"{WORKSPACE_PREFIX}{_owner_tag(os.getpid())}-"))


def remove_stale_workspaces(root: str | Path | None = None) -> list[Path]:
    """Delete the workspaces in `root` (default: the temporary folder) of this host whose process is gone:
    what a server killed without a chance to clean up (SIGKILL, power loss) left. -> the folders removed."""
    removed = []
    for folder in Path(root or tempfile.gettempdir()).glob(f"{WORKSPACE_PREFIX}*-*"):
        pid = folder.name[len(WORKSPACE_PREFIX):].split(".", 1)[0]
        if not pid.isdigit() or not folder.name.startswith(f"{WORKSPACE_PREFIX}{_owner_tag(int(pid))}-"):
            continue
        if folder.is_dir() and not folder.is_symlink() and not process_alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


class Session:
    """The web UI's one model, behind one `Stylizer`; results written to a private folder (`folder`, by
    default a new `make_workspace()`), removed with everything in it by `close()`.

    Only the latest result is kept on disk (Gradio copies each result into its own cache before the next
    request can run: the app serves one request at a time).
    """

    def __init__(self, stylizer: Stylizer, folder: Path | None = None):
        self.stylizer = stylizer
        self._folder = Path(folder) if folder is not None else make_workspace()
        self._folder.mkdir(parents=True, exist_ok=True)
        self._last: Path | None = None

    @property
    def folder(self) -> Path:
        return self._folder

    def close(self) -> None:
        shutil.rmtree(self._folder, ignore_errors=True)

    # ----- previews -----------------------------------------------------------------------------------------
    def preview(self, path: str | None) -> Image.Image | None:
        """A small preview of an uploaded image, read as the engine reads it (UserError for a bad file)."""
        if not path:
            return None
        return load_resized(path, PREVIEW_SIZE, self.stylizer.max_pixels)

    # ----- a run --------------------------------------------------------------------------------------------
    def run(self, content: str | None, styles: Sequence[str], *, size: float, alpha: float,
            preserve_color: str | None, style_weights: str | None, style_size: float | None,
            mask: str | None, shuffle: bool, seed: float | None) -> Result:
        """Stylize `content` with `styles` (paths) under the form's values -> the written PNG.

        size: content short side in px (0: its own size); style_size: 0/None = stretched to the content.
        Raises UserError (one line) for anything the user can fix: missing or bad images, bad values, sizes
        over the pixel limit (checked before anything is read or allocated).
        """
        if not content:
            raise UserError("no content image: upload one (or click the example pair)")
        if not styles:
            raise UserError("no style image: upload one or more (or click the example pair)")
        size_px = _int_or_none(size, "size", 0) or 0
        style_px = _int_or_none(style_size, "style size", 0) or None
        check_style_size(style_px, self.stylizer.max_pixels, "style size")
        seed_value = _int_or_none(seed, "seed", 0)
        if shuffle and seed_value is None:
            seed_value = new_seed()  # drawn here so that the status can name it (reproducible runs)
        controls = Controls(alpha=alpha, preserve_color=preserve_color or None, style_size=style_px,
                            style_weights=None if mask else parse_weights(style_weights, len(styles)),
                            mask=mask or None, shuffle=bool(shuffle), seed=seed_value if shuffle else None)
        start = time.perf_counter()
        image = self.stylizer.stylize(content, list(styles), controls, size=size_px)
        seconds = time.perf_counter() - start
        return Result(self._write(image, content, styles[0]), image.size, controls.seed, seconds)

    def _write(self, image: Image.Image, content: str, style: str) -> Path:
        """The result as `{content}_stylized_{style}.png` in a fresh sub-folder; the previous one removed."""
        if self._last is not None:
            shutil.rmtree(self._last, ignore_errors=True)
        self._last = Path(tempfile.mkdtemp(dir=self._folder))
        return atomic_write(self._last / output_name(content, style), lambda f: image.save(f, format="PNG"))


def user_message(error: BaseException, uploads: Sequence[str | None] = ()) -> str:
    """The one line shown in the page for a failed request: a UserError's line with upload paths shortened
    to the file's name; anything else a short description (its traceback goes to the server's log only)."""
    if isinstance(error, UserError):
        text = str(error)
        for path in sorted((p for p in uploads if p), key=len, reverse=True):
            text = text.replace(str(path), Path(path).name)
        return text
    if is_out_of_memory(error):
        return "not enough memory for this image: choose a smaller size"
    log.error("request failed", exc_info=error)
    first = (str(error).splitlines() or [""])[0][:160]
    return f"unexpected failure ({type(error).__name__}: {first}); the details are in the server's log"
