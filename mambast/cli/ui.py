"""`mambast ui`: the web UI on this machine (a Gradio page; needs the `ui` extra)."""

from __future__ import annotations

from ..images import DEFAULT_MAX_PIXELS


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "yes", "1", "on"):
        return True
    if value in ("false", "no", "0", "off"):
        return False
    raise ValueError(text)


_bool.__name__ = "true/false"  # argparse names the type in its error line


def register(sub) -> None:
    p = sub.add_parser("ui", help="a web page to stylize images (local; needs mambast[ui])",
                       description="Serve a web page to stylize images with one model, on this machine. "
                                   "Nothing is sent anywhere (Gradio analytics off; --share is opt-in).")
    p.add_argument("--checkpoint", metavar="PATH", default=None,
                   help="published-weights folder, .safetensors file or training run folder "
                        "(default: the model bundled with the package)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0: the network)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument("--share", type=_bool, default=False, metavar="true|false",
                   help="also open a public link through Gradio's share servers (default false)")
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, metavar="N",
                   help=f"refuse a content or style size planned above N pixels (default {DEFAULT_MAX_PIXELS}; "
                        "0: no limit)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    p.set_defaults(func=run)


def run(args) -> int:
    """Serve until Ctrl-C or SIGTERM (systemd, docker stop, kill); both remove this server's workspace (its
    results and Gradio's copies of uploads and results). A workspace left by a server that had no chance to
    clean up (SIGKILL, SIGHUP, power loss) is removed when the next server of this host starts."""
    import os
    import shutil

    from ..signals import sigterm_as_interrupt
    from ..ui.session import make_workspace

    with sigterm_as_interrupt():
        workspace = make_workspace()
        own_uploads = "GRADIO_TEMP_DIR" not in os.environ  # a folder the user chose is theirs to keep
        if own_uploads:
            os.environ["GRADIO_TEMP_DIR"] = str(workspace / "uploads")  # read when the page is built
        try:
            return _serve(args, workspace)
        finally:
            shutil.rmtree(workspace, ignore_errors=True)
            if own_uploads:
                os.environ.pop("GRADIO_TEMP_DIR", None)


def _serve(args, workspace) -> int:
    """Load the model, build the page with its results in `workspace`, serve until interrupted."""
    from ..device import resolve_device
    from ..errors import UserError
    from ..io import load

    try:
        from ..ui.app import build_app, launch, wait
    except ModuleNotFoundError as e:
        if e.name and e.name.split(".")[0] == "gradio":
            raise UserError("the web UI needs Gradio: pip install 'mambast[ui]'") from None
        raise
    model = load(args.checkpoint, device=resolve_device(args.device))
    name = "the bundled default model" if args.checkpoint is None else f"the model {args.checkpoint}"
    app = build_app(model, model_name=name, max_pixels=args.max_pixels or None, folder=workspace / "results")
    try:
        url, public = launch(app, host=args.host, port=args.port, share=args.share)
        print(f"mambast ui: serving on {url}" + (f" and {public}" if public else "") + " (Ctrl-C stops)", flush=True)
        wait(app)
    finally:
        app.mambast_session.close()  # the results folder, also when launching failed or was interrupted
    return 0
