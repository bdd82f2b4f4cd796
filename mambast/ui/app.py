"""The web UI: a Gradio Blocks page over one loaded model (`build_app`), served locally (`launch`).

Uploads arrive as file paths (gr.File) and are read only by `mambast.images` through the engine: Gradio's own
image input would open them with Pillow first, outside the one reader, and fail on a bad file with Gradio's
generic message. Every failure a user can cause ends as one line in the status box; the page keeps working.
Nothing is sent anywhere: Gradio's analytics are off (set before gradio is imported) and sharing is opt-in.
"""

from __future__ import annotations

import math
import os

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before gradio is imported: no version check, no telemetry

from pathlib import Path  # noqa: E402

import gradio as gr  # noqa: E402

from ..errors import FieldError, UserError  # noqa: E402
from ..inference import DEFAULT_MAX_PIXELS, Stylizer  # noqa: E402
from ..inference.controls import COLOR_METHODS  # noqa: E402
from ..inference.values import check_number  # noqa: E402
from ..model import MambaST  # noqa: E402
from .session import MAX_SEED, Session, new_seed, user_message  # noqa: E402

EXAMPLES = Path(__file__).resolve().parent.parent / "assets" / "examples"
EXAMPLE_PAIR = (EXAMPLES / "astronaut.jpg", EXAMPLES / "renoir_gondola.jpg")
MAX_UPLOAD = "64mb"  # per file; a decompression bomb is small on disk and is refused by the reader instead
NO_COLOUR = "off"

INTRO = """# Mamba-ST style transfer
Upload a content image and one or more style images (or use the example pair), then **Run**.
Everything runs on this machine with {model}; nothing is uploaded anywhere else."""


def build_app(model: MambaST, *, model_name: str = "the bundled default model", size: int = 512,
              max_pixels: int | None = DEFAULT_MAX_PIXELS, folder: Path | None = None) -> gr.Blocks:
    """The Blocks page for `model` (loaded once, shared by all requests, queued one at a time).

    size: the initial content short side in px; max_pixels: refuse content or a style size planned above this
    many pixels (also the style size field's maximum); folder: where results go (default: a new workspace).
    The returned app has `app.mambast_session` (its Session) for tests and clean-up.
    """
    session = Session(Stylizer(model, size=size, max_pixels=max_pixels), folder)
    with gr.Blocks(title="Mamba-ST style transfer", analytics_enabled=False, delete_cache=(3600, 3600)) as app:
        gr.Markdown(INTRO.format(model=model_name))
        with gr.Row():
            with gr.Column(scale=1):
                inputs = _input_column(size, session.stylizer.max_pixels)
            with gr.Column(scale=1):
                result = gr.Image(label="Result (PNG)", type="filepath", format="png", interactive=False,
                                  buttons=["download", "fullscreen"], elem_id="result", height=420)
                download = gr.File(label="Download", interactive=False, elem_id="download")
                status = gr.Textbox(label="Status", interactive=False, lines=2, elem_id="status")
        _wire(session, inputs, result, download, status)
    app.mambast_session = session
    app.queue(default_concurrency_limit=1)  # one request at a time: the CPU and the model are shared
    return app


def _input_column(size: int, max_pixels: int | None) -> dict:
    """The inputs and controls (initial content size `size` px; style size at most a square of `max_pixels`),
    by name. Gradio refuses values outside a field's bounds; the session checks them again."""
    c: dict = {}
    with gr.Row():
        c["content"] = gr.File(label="Content image", file_types=["image"], elem_id="content-file")
        c["content_preview"] = gr.Image(label="Content", interactive=False, height=160, show_label=True,
                                        buttons=[], elem_id="content-preview")
    with gr.Row():
        c["styles"] = gr.File(label="Style image(s)", file_types=["image"], file_count="multiple",
                              elem_id="style-files")
        c["style_preview"] = gr.Gallery(label="Style(s)", interactive=False, height=160, columns=3,
                                        buttons=[], elem_id="style-preview")
    c["example"] = gr.Button("Use the example pair (astronaut x Renoir)", size="sm", elem_id="example")
    with gr.Accordion("Controls", open=True):
        with gr.Row():
            c["size"] = gr.Slider(0, 2048, value=size, step=32, label="Size (px)", elem_id="size",
                                  info="content's short side; 0 keeps its own size")
            c["alpha"] = gr.Slider(0, 1, value=1.0, step=0.05, label="Alpha", elem_id="alpha",
                                   info="1 full style, 0 the content")
        with gr.Row():
            c["colour"] = gr.Radio([NO_COLOUR, *COLOR_METHODS], value=NO_COLOUR, label="Keep content colours",
                                   info="luminance: the content's chroma; match: recolour the style first")
            c["style_size"] = gr.Number(0, label="Style size (px)", precision=0, minimum=0,
                                        maximum=math.isqrt(max_pixels) if max_pixels else None,
                                        elem_id="style-size",
                                        info="0 stretches the style to the content; N keeps its aspect")
        with gr.Row():
            c["weights"] = gr.Textbox(label="Style weights", placeholder="e.g. 0.7, 0.3 (blank: equal)",
                                      info="one per style image, to mix several styles")
            c["mask"] = gr.File(label="Mask (optional): one region per style", file_types=["image"],
                                elem_id="mask-file", height=140)
        with gr.Row():
            c["shuffle"] = gr.Checkbox(True, label="Style shuffle (as published)")
            c["seed"] = gr.Number(0, label="Seed", precision=0, minimum=0, maximum=MAX_SEED, elem_id="seed",
                                  info="same seed, same result")
            c["new_seed"] = gr.Button("New seed", size="sm", scale=0, min_width=100, elem_id="new-seed")
    c["run"] = gr.Button("Run", variant="primary", elem_id="run")
    return c


def _paths(files) -> list[str]:
    """gr.File values (None, a path, or a list of paths) -> a list of paths."""
    if not files:
        return []
    return [str(f) for f in (files if isinstance(files, (list, tuple)) else [files])]


def _wire(session: Session, c: dict, result, download, status) -> None:
    """Events: previews on upload, the example button, Run."""

    def preview_content(path):
        try:
            return session.preview(path), ""
        except UserError as e:
            return None, f"Error: {user_message(e, [path])}"

    def preview_styles(files):
        paths, images, problems = _paths(files), [], []
        for p in paths:
            try:
                images.append(session.preview(p))
            except UserError as e:
                problems.append(user_message(e, paths))
        return images, ("Error: " + "; ".join(problems)) if problems else ""

    def run(content, styles, size, alpha, colour, style_size, weights, mask, shuffle, seed):
        style_paths = _paths(styles)
        try:
            done = session.run(content, style_paths, size=size, alpha=alpha,
                               preserve_color=None if colour == NO_COLOUR else colour, style_weights=weights,
                               style_size=style_size, mask=mask, shuffle=shuffle, seed=seed)
        except Exception as e:  # every failure becomes one line in the page; the app keeps serving
            return None, None, f"Error: {user_message(e, [content, mask, *style_paths])}"
        return str(done.path), str(done.path), done.status()

    c["content"].change(preview_content, c["content"], [c["content_preview"], status])
    c["styles"].change(preview_styles, c["styles"], [c["style_preview"], status])
    c["new_seed"].click(new_seed, None, c["seed"])
    c["example"].click(lambda: (str(EXAMPLE_PAIR[0]), [str(EXAMPLE_PAIR[1])]), None, [c["content"], c["styles"]])
    c["run"].click(run, [c[k] for k in ("content", "styles", "size", "alpha", "colour", "style_size", "weights",
                                        "mask", "shuffle", "seed")],
                   [result, download, status])


def launch(app: gr.Blocks, host: str = "127.0.0.1", port: int = 7860, share: bool = False) -> tuple[str, str | None]:
    """Start serving `app` on host:port in the background -> (local URL, public URL or None).

    share: also Gradio's public tunnel (off by default). `wait(app)` then serves until Ctrl-C; `app.close()`
    stops it. Raises FieldError naming `port` (not a port number), or `port` and `host` (the address cannot be
    used).
    """
    port = check_number(port, "port", 1, 65535, whole=True)
    try:
        _, url, public = app.launch(server_name=host, server_port=port, share=share, prevent_thread_lock=True,
                                    quiet=True, allowed_paths=[str(EXAMPLES)], max_file_size=MAX_UPLOAD,
                                    ssr_mode=False, mcp_server=False, enable_monitoring=False, footer_links=[])
    except OSError as e:
        raise FieldError(f"cannot serve on {host}:{port} ({_address_problem(e)}); choose another port or host",
                         "port", "host") from None
    return url, public


def _address_problem(error: OSError) -> str:
    """Why an address cannot be served, in a few words (Gradio's busy-port message names its own settings)."""
    text = (str(error).splitlines() or [""])[0]
    return "the address is in use" if text.startswith("Cannot find empty port") else text


def wait(app: gr.Blocks) -> None:
    """Serve a launched `app` until Ctrl-C, then stop it and remove its results."""
    try:
        app.block_thread()
    finally:
        app.close()
        app.mambast_session.close()
