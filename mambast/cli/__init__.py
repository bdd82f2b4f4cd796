"""`mambast` command line: a thin shell over the Python API. Each subcommand lives in mambast/cli/<name>.py
and exposes `register(subparsers)`, which adds its parser with `func=run`, `run(args) -> exit code`."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from ..errors import FieldError, UserError
from ..signals import sigterm_as_interrupt

SUBCOMMANDS = ("stylize", "stylize_dataset", "export", "train", "eval", "weights", "video", "ui")


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors, like every other user error: `mambast: error: COMMAND: message`."""

    def error(self, message: str):
        command = self.prog.removeprefix("mambast").strip()
        where = f"{command}: " if command else ""
        hint = f" (see `{self.prog} --help`)"
        self.exit(2, f"mambast: error: {where}{message}{hint}\n")


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = Parser(prog="mambast", description="Mamba-ST arbitrary style transfer")
    parser.add_argument("--version", action="version", version=f"mambast {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:  # every listed subcommand is part of the package: no import guard
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        with sigterm_as_interrupt():  # kill, docker stop, systemd, torchrun stopping a rank: like Ctrl-C
            code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows up here, inside the handler below
        return code
    except FieldError as e:  # the library names fields; the user sees this command's flags
        print(f"mambast: error: {args.command}: {_flag_message(parser, args.command, e)}", file=sys.stderr)
        return 2
    except UserError as e:  # `mambast: error: COMMAND: message`, like argparse's errors
        print(f"mambast: error: {args.command}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: every command's clean-up has run
        print("mambast: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `mambast ... | head`: the reader left; stop quietly, as other Unix tools do
        _silence_stdout()
        return 141  # 128 + SIGPIPE


def _flag_message(parser: argparse.ArgumentParser, command: str, error: FieldError) -> str:
    """`error`'s message in `command`'s flags: read off its parser, plus the module's FIELD_FLAGS (fields whose
    flag is not `--field-name`, e.g. `{"content_dir": "--content"}`)."""
    from .common import field_flags, flag_message

    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    module = importlib.import_module(f"{__name__}.{command.replace('-', '_')}")
    return flag_message(error, field_flags(sub.choices[command], getattr(module, "FIELD_FLAGS", None)))


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not fail again on the closed pipe."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
