"""The web UI without a browser: what a click does (mambast.ui.session), the page's privacy settings and the
`mambast ui` command's refusals. The page in a real browser: test_ui_browser.py."""

from __future__ import annotations

import os
import resource
import signal
import socket
import struct
import subprocess
import sys
import time
import zlib

import numpy as np
import pytest
import torch
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


def test_new_seed_is_the_models_draw():
    """The page's New seed draws as the model does (mambast.model.shuffle.draw_seed, torch's global RNG, so
    torch.manual_seed makes it reproducible; it drew from Python's `random` before), in the page's range."""
    from mambast.model.shuffle import draw_seed
    from mambast.ui.session import MAX_SEED, new_seed

    torch.manual_seed(5)
    seeds = [new_seed() for _ in range(50)]
    torch.manual_seed(5)
    assert seeds == [draw_seed(MAX_SEED + 1) for _ in range(50)]
    assert all(0 <= s <= MAX_SEED for s in seeds) and len(set(seeds)) == 50


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
    assert "mambast: error: ui: --port must be a whole number in [1, 65535], got 0" in capsys.readouterr().err
    assert main(["ui", "--max-pixels", "-1", "--device", "cpu"]) == 2
    assert "mambast: error: ui: --max-pixels must be a whole number >= 0, got -1" in capsys.readouterr().err
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
    assert err == (f"mambast: error: ui: cannot serve on 127.0.0.1:{port} (the address is in use); choose another "
                   "--port or --host\n")  # the library names its fields (ui/app.py), the CLI spells its flags


# ----- issue 25: sizes a user types are checked before anything is allocated, a failed allocation is one line
# and the server lives on (kind 5); SIGTERM cleans up like Ctrl-C, a killed server's folders go at the next
# start (kind 10)


def test_style_size_over_the_limit_is_one_line_before_reading(session, tmp_path):
    message = _message(session, [CONTENT, STYLE], style_size=60000)
    assert message == ("style size 60000 px: planned size 60000 x 60000 px (3600.0 MP) is over the limit of "
                       "2.0 MP (max_pixels); ask for a smaller size or raise the limit")
    Image.new("RGB", (200, 100)).save(tmp_path / "wide.png")
    message = _message(session, [CONTENT, str(tmp_path / "wide.png")], style_size=1200)  # a square would fit
    assert message.startswith("wide.png: planned size 2400 x 1200 px (2.9 MP) is over the limit of 2.0 MP")
    assert _message(session, [CONTENT, STYLE], alpha=None).startswith("alpha must be a number in [0, 1], got None")
    assert session.run(CONTENT, [STYLE], **dict(FORM, size=np.int64(64), seed=np.float64(3))).size == (64, 64)


def test_style_size_field_has_the_limit_as_maximum(model):
    from mambast.ui.app import build_app

    for max_pixels, maximum in ((2_000_000, 1414), (None, None)):
        app = build_app(model, max_pixels=max_pixels)
        try:
            field = next(b for b in app.blocks.values() if getattr(b, "elem_id", None) == "style-size")
            assert field.maximum == maximum
        finally:
            app.mambast_session.close()


def _start_ui(tmp_path, *args, cap_bytes: int | None = None) -> tuple[subprocess.Popen, str]:
    """`mambast ui` in a subprocess with its temporary folder in tmp_path -> (process, URL)."""
    env = dict(os.environ, TMPDIR=str(tmp_path), MALLOC_ARENA_MAX="2", OMP_NUM_THREADS="1")
    env.pop("GRADIO_TEMP_DIR", None)

    def cap():
        if cap_bytes:
            resource.setrlimit(resource.RLIMIT_AS, (cap_bytes, cap_bytes))

    proc = subprocess.Popen([sys.executable, "-m", "mambast", "ui", "--port", str(_free_port()), *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, preexec_fn=cap)
    lines: list[str] = []
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        lines.append(line)
        if "serving on " in line:
            return proc, line.split("serving on ")[1].split()[0]
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError("mambast ui did not start:\n" + "".join(lines))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _workspaces(tmp_path) -> list[str]:
    return sorted(p.name for p in tmp_path.glob("mambast-ui-*"))


def _request(client, style_size: int = 0) -> tuple:
    from gradio_client import handle_file

    return client.predict(handle_file(CONTENT), [handle_file(STYLE)], 64, 1.0, "off", style_size, "", None, True, 3,
                          api_name="/run")


def test_server_survives_a_huge_request_under_a_memory_cap_and_sigterm_cleans_up(tmp_path, ckpt):
    """`mambast ui` with no pixel limit (--max-pixels 0), capped at 4 GiB of address space: a 60000 px style size
    fails with one line in the status box and the next request works; SIGTERM (docker stop, systemd) removes
    the server's results and Gradio's copies of the uploads, like Ctrl-C; a folder left by a killed server
    (SIGKILL) of this host is removed when the next server starts."""
    from gradio_client import Client

    from mambast.ui.session import _owner_tag, remove_stale_workspaces

    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout)
    stale = tmp_path / f"mambast-ui-{_owner_tag(dead)}-abc123"  # what a SIGKILLed server left
    (stale / "uploads").mkdir(parents=True)
    other_host = tmp_path / f"mambast-ui-{dead}.otherhost-abc123"  # another container's: not ours to judge
    alive = tmp_path / f"mambast-ui-{_owner_tag(os.getpid())}-abc123"  # a server still running
    other_host.mkdir(), alive.mkdir()
    proc, url = _start_ui(tmp_path, "--max-pixels", "0", "--checkpoint", str(ckpt), cap_bytes=4 << 30)
    try:
        assert not stale.exists() and other_host.exists() and alive.exists()
        client = Client(url, verbose=False, download_files=str(tmp_path / "client"), analytics_enabled=False)
        _, _, status = _request(client, style_size=60000)
        assert status == ("Error: renoir_gondola.jpg at style_size 60000: not enough memory (MemoryError); ask "
                          "for a smaller size")  # the upload named by its file name (engine of 3a041c0)
        result, _, status = _request(client)
        assert status.startswith("Done in ") and status.endswith("64 x 64 px, seed 3.")
        assert Image.open(result).size == (64, 64)
        (workspace,) = [n for n in _workspaces(tmp_path) if n.startswith(f"mambast-ui-{proc.pid}.")]
        assert {p.name for p in (tmp_path / workspace).iterdir()} == {"results", "uploads"}
        assert any((tmp_path / workspace / "uploads").rglob("*.jpg"))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
        proc.wait()
    assert not (tmp_path / workspace).exists()  # results and uploads gone
    assert not (tmp_path / "gradio").exists()  # nothing went to Gradio's shared default folder either
    (tmp_path / workspace / "results").mkdir(parents=True)  # as a SIGKILL would leave it
    assert remove_stale_workspaces(tmp_path) == [tmp_path / workspace]
