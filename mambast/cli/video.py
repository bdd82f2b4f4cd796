"""`mambast video`: stylize a video (or a folder of frames) without flicker."""

from __future__ import annotations

FIELD_FLAGS = {"rate": "--fps"}  # the library's fields whose flag is not --field-name (mambast.cli.main)


def register(sub) -> None:
    from ..inference.precision import DEFAULT_PRECISION, PRECISION_HELP, PRECISIONS
    from ..video.stylize import DEFAULT_SEED, DEFAULT_STABILITY
    from .controls import add_control_arguments

    p = sub.add_parser(
        "video", help="stylize a video or a folder of frames",
        description="Stylize every frame of INPUT (a video file, or a folder of frames) into OUTPUT (.mp4, .m4v, "
                    ".mov, .mkv: H.264 with every frame at its source time (an exact rate stays exact; variable rates, "
                    "GIF delays and the audio offset are kept), upright as the source displays, its audio copied; "
                    "or a folder: PNG frames). Stable by construction: the style is encoded once and the style "
                    f"shuffle uses one seed (default {DEFAULT_SEED}) for the whole video; --stability adds a "
                    "flow-guided blend. "
                    "Needs pip install 'mambast[video]'.")
    p.add_argument("input", metavar="INPUT",
                   help="video file or folder of frames (in natural name order: f2 before f10)")
    p.add_argument("--style", required=True, metavar="FILE", help="style image")
    p.add_argument("--output", required=True, metavar="OUT", help="output video (.mp4/.m4v/.mov/.mkv) or folder")
    p.add_argument("--size", type=int, default=512, metavar="N",
                   help="resize the frames' short side to N px (default 512); 0 keeps their size")
    p.add_argument("--stability", type=float, default=DEFAULT_STABILITY, metavar="S",
                   help="blend each output with the previous output warped by optical flow, 0..1 "
                        f"(default {DEFAULT_STABILITY}; 0: off)")
    p.add_argument("--batch-size", type=int, default=4, metavar="B", help="frames per model call (default 4)")
    p.add_argument("--fps", default=None, metavar="RATE",
                   help="frame rate of a folder of frames, e.g. 25 or 30000/1001 (default 25; a video keeps its own)")
    p.add_argument("--checkpoint", metavar="PATH", default=None,
                   help="published-weights folder, .safetensors file or training run folder "
                        "(default: the model bundled with the package)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--precision", default=DEFAULT_PRECISION, choices=PRECISIONS, help=PRECISION_HELP)
    p.add_argument("--compile", action="store_true",
                   help="run the model through torch.compile, compiled once for the clip's frame size (minutes "
                        "the first time per size, cached in ~/.cache/mambast after; pays on long clips only: "
                        "README, Speed)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing output video, or write frames into a folder that is not empty (its "
                        "old frame_*.png are removed first); without it both are refused")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_control_arguments(p, mixing=False)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..device import resolve_device
    from ..flow import require_cv2
    from ..images import load_image
    from ..inference import Stylizer
    from ..io import load
    from ..video import stylize_video
    from ..video.io import check_paths, is_video_path, require_av, source_rate
    from .controls import controls_from_args

    rate = source_rate(args.input, args.fps)  # the library's checks, before the model loads
    check_paths(args.input, args.output, args.overwrite)
    require_av()
    require_cv2()
    controls = controls_from_args(args)
    style = load_image(args.style)  # checked (one line naming the file) before the model loads
    model = load(args.checkpoint, device=resolve_device(args.device))
    engine = Stylizer(model, size=args.size or None, precision=args.precision, compile=args.compile)
    report = stylize_video(engine, args.input, style, args.output, controls,
                           batch_size=args.batch_size, stability=args.stability, rate=rate,
                           progress=not args.quiet, overwrite=args.overwrite)
    fps = report.frames / report.seconds if report.seconds > 0 else float("nan")
    rate_text = ""
    if report.rate is not None and is_video_path(args.output):
        rate_text = (f" at {report.rate} fps" if report.declared_rate else
                     f" at a variable rate, {float(report.rate):.3g} fps on average")
    audio = ", audio copied" if report.audio else ""
    print(f"wrote {report.frames} frames ({report.width} x {report.height}{rate_text}{audio}) to {args.output} "
          f"in {report.seconds:.1f} s ({fps:.2f} frames/s)")
    return 0
