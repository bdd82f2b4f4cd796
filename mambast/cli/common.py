"""Small helpers shared by subcommands."""

from __future__ import annotations

import argparse
import re

from ..errors import FieldError


def field_flags(parser: argparse.ArgumentParser, overrides: dict[str, str] | None = None) -> dict[str, str]:
    """Library field name -> this command's spelling of it: each option's destination -> its flag (`--max-iter`
    for `max_iter` where it exists, else its longest), each positional -> its metavar; `overrides` (a command's
    FIELD_FLAGS) win."""
    names: dict[str, str] = {}
    for action in parser._actions:
        if action.option_strings:
            plain = "--" + action.dest.replace("_", "-")
            names.setdefault(action.dest, plain if plain in action.option_strings
                             else max(action.option_strings, key=len))
        elif action.dest != argparse.SUPPRESS and not isinstance(action, argparse._SubParsersAction):
            names.setdefault(action.dest, action.metavar or action.dest.upper())
    return names | (overrides or {})


def flag_message(error: FieldError, names: dict[str, str]) -> str:
    """The library's one-line message with every field it names spelled as the command's flag: the one place
    where library field names become command-line spellings (`mambast.cli.main` calls it for every command).
    A name inside a path or a file name (`runs/content/x.png`, `content.png`, `vgg19-dcbb9e9d.pth`) or inside
    `backticks` (a command or code quoted in the message) is left as it is."""
    parts = str(error).split("`")
    for i in range(0, len(parts), 2):  # even parts lie outside backticks
        for name in error.fields:
            if name in names:
                parts[i] = re.sub(rf"(?<![\w./\\-]){re.escape(name)}(?![\w/\\-]|\.\w)", names[name], parts[i])
    return "`".join(parts)
