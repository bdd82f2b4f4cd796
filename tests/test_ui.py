"""The web UI without a browser: what a click does (mambast.ui.session), the page's privacy settings and the
`mambast ui` command's refusals. The page in a real browser: test_ui_browser.py."""

from __future__ import annotations

import os
import socket
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

import mambast
from mambast.cli import build_parser, main
from mambast.errors import UserError
from mambast.inference import Controls, Stylizer
from mambast.ui.session import Session, parse_weights, user_message

pytestmark = pytest.mark.filterwarnings("ignore::Warning:gradio.queueing")

EXAMPLES = os.path.join(os.path.dirname(mambast.__file__), "assets", "examples")
CONTENT, STYLE = os.path.join(EXAMPLES, "astronaut.jpg"), os.path.join(EXAMPLES, "renoir_gondola.jpg")
FORM = dict(size=64, alpha=1.0, preserve_color=None, style_weights="", style_size=0, mask=None, shuffle=True,
            seed=3)


def _png_claiming(width: int, height: int) -> bytes:
    """A valid PNG signature and header claiming width x height px, with one tiny data chunk."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + \
        chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def model():
    return mambast.load()


@pytest.fixture
def session(model):
    s = Session(Stylizer(model, max_pixels=2_000_000))
    yield s
    s.close()


def _message(session, uploads, **form) -> str:
    with pytest.raises(Exception) as e:
        session.run(uploads[0], uploads[1:], **{**FORM, **form})
    return user_message(e.value, uploads)


def test_run_is_the_engine_output_and_named_png(session, model):
    result = session.run(CONTENT, [STYLE], **FORM)
    assert result.path.name == "astronaut_stylized_renoir_gondola.png"
    with Image.open(result.path) as img:
        assert img.format == "PNG" and img.size == (64, 64) == result.size
        out = np.asarray(img.convert("RGB"))
    engine = Stylizer(model, size=64).stylize(CONTENT, STYLE, Controls(seed=3))
    assert np.array_equal(out, np.asarray(engine))
    assert result.seed == 3 and result.seconds > 0
    assert result.status().startswith("Done in ") and result.status().endswith("64 x 64 px, seed 3.")


def test_controls_reach_the_engine(session, model):
    form = dict(FORM, alpha=0.5, preserve_color="luminance", style_weights="3, 1", style_size=32, seed=5)
    out = np.asarray(Image.open(session.run(CONTENT, [STYLE, CONTENT], **form).path).convert("RGB"))
    controls = Controls(alpha=0.5, preserve_color="luminance", style_weights=(3, 1), style_size=32, seed=5)
    engine = Stylizer(model, size=64).stylize(CONTENT, [STYLE, CONTENT], controls)
    assert np.array_equal(out, np.asarray(engine))
    plain = np.asarray(Image.open(session.run(CONTENT, [STYLE], **FORM).path).convert("RGB"))
    assert np.abs(out.astype(int) - plain).mean() > 1  # the controls changed the result


def test_shuffle_off_and_drawn_seed(session):
    assert session.run(CONTENT, [STYLE], **dict(FORM, shuffle=False)).status().endswith("shuffle off.")
    drawn = session.run(CONTENT, [STYLE], **dict(FORM, seed=None))
    assert 0 <= drawn.seed < 2**31
    drawn_pixels = np.asarray(Image.open(drawn.path))  # read before the next run replaces the file
    again = session.run(CONTENT, [STYLE], **dict(FORM, seed=drawn.seed))
    assert np.array_equal(drawn_pixels, np.asarray(Image.open(again.path)))


def test_only_latest_result_kept(session):
    first = session.run(CONTENT, [STYLE], **FORM).path
    second = session.run(CONTENT, [STYLE], **FORM).path
    assert second.exists() and not first.exists()
    folder = second.parent.parent
    session.close()
    assert not folder.exists()


@pytest.mark.parametrize("case, form, expected", [
    ("text", {}, "notes.jpg: not an image file Pillow can read"),
    ("empty", {}, "empty.png: empty file"),
    ("bomb", {}, "bomb.png: refused: its header claims a huge image (possible decompression bomb)"),
    ("tiny", {"size": 0}, "tiny.png: 4 x 4 px is smaller than one 8 x 8 patch"),
    ("large", {"size": 2048}, "astronaut.jpg: planned size 2048 x 2048 px (4.2 MP) is over the limit of 2.0 MP"),
])
def test_bad_content_is_one_line_then_next_request_works(session, tmp_path, case, form, expected):
    files = {"text": ("notes.jpg", b"this is text\n"), "empty": ("empty.png", b""),
             "bomb": ("bomb.png", _png_claiming(100_000, 100_000))}
    if case == "tiny":
        Image.new("RGB", (4, 4), (9, 9, 9)).save(tmp_path / "tiny.png")
        bad = str(tmp_path / "tiny.png")
    elif case == "large":
        bad = CONTENT
    else:
        name, data = files[case]
        (tmp_path / name).write_bytes(data)
        bad = str(tmp_path / name)
    message = _message(session, [bad, STYLE], **form)
    assert message.startswith(expected)
    assert "\n" not in message and str(tmp_path) not in message  # one line, the upload's name only
    if case in files:  # the preview of an unreadable upload says the same
        with pytest.raises(UserError) as e:
            session.preview(bad)
        assert user_message(e.value, [bad]).startswith(expected)
    assert session.run(CONTENT, [STYLE], **FORM).size == (64, 64)  # the session keeps serving


@pytest.mark.parametrize("form, uploads, expected", [
    ({}, [None, STYLE], "no content image"),
    ({}, [CONTENT], "no style image"),
    ({"style_weights": "a, b"}, [CONTENT, STYLE, STYLE], "style weights: 'a, b' is not a list of numbers"),
    ({"style_weights": "1"}, [CONTENT, STYLE, STYLE], "style weights: 1 given for 2 style image(s)"),
    ({"style_weights": "-1"}, [CONTENT, STYLE], "style_weights must be a sequence of numbers >= 0, got -1.0"),
    ({"size": 12.5}, [CONTENT, STYLE], "size must be a whole number >= 0, got 12.5"),
    ({"seed": -1}, [CONTENT, STYLE], "seed must be a whole number >= 0, got -1"),
    ({"mask": STYLE}, [CONTENT, STYLE], "a mask needs at least two styles"),
])
def test_bad_form_values(session, form, uploads, expected):
    assert _message(session, uploads, **form).startswith(expected)


def test_mask_regions(session, tmp_path):
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (32, 0, 64, 64))
    mask.save(tmp_path / "mask.png")
    out = session.run(CONTENT, [STYLE, CONTENT], **dict(FORM, mask=str(tmp_path / "mask.png"), style_weights="1, 1"))
    assert out.size == (64, 64)  # weights are ignored when a mask gives the regions


def test_parse_weights():
    assert parse_weights("", 1) is None
    assert parse_weights(" ", 3) == (1.0, 1.0, 1.0)
    assert parse_weights("0.7; 0.3", 2) == (0.7, 0.3)
    assert parse_weights("1 2 3", 3) == (1.0, 2.0, 3.0)


def test_unexpected_failure_is_one_line_without_traceback(caplog):
    message = user_message(RuntimeError("boom\nsecond line"))
    assert message == "unexpected failure (RuntimeError: boom); the details are in the server's log"
    assert "boom" in caplog.text  # the traceback goes to the log
    assert user_message(MemoryError()) == "not enough memory for this image: choose a smaller size"


def test_app_is_private_by_default(model):
    from mambast.ui.app import build_app

    app = build_app(model)
    try:
        assert os.environ["GRADIO_ANALYTICS_ENABLED"] == "False" and app.analytics_enabled is False
        assert app._queue.default_concurrency_limit == 1  # one request at a time
    finally:
        app.mambast_session.close()
    args = build_parser().parse_args(["ui"])
    assert (args.host, args.port, args.share, args.checkpoint) == ("127.0.0.1", 7860, False, None)


def test_cli_refusals(capsys):
    assert main(["ui", "--port", "0"]) == 2
    assert "mambast: error: ui: --port must be in 1..65535, got 0" in capsys.readouterr().err
    assert main(["ui", "--max-pixels", "-1"]) == 2
    assert "--max-pixels must be >= 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["ui", "--share", "maybe"])
    assert "invalid true/false value: 'maybe'" in capsys.readouterr().err


def test_cli_busy_port_is_one_line(capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["ui", "--port", str(port), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"mambast: error: ui: cannot serve on 127.0.0.1:{port}") and err.count("\n") == 1
