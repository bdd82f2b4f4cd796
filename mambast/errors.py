"""Errors meant for users: the CLI prints their one-line message without a traceback."""


class UserError(Exception):
    """A problem the user can fix (bad path, wrong checkpoint, unreadable image...): one clear line."""


class FieldError(UserError):
    """A bad value of named fields (of a config, a function's parameters, a form): the message names the fields
    as the library spells them (`max_iter must be >= 1`), never a front-end's spelling. The CLI maps them to its
    flags in one place (`mambast.cli.common.flag_message`: `max_iter` -> `--max-iter`)."""

    def __init__(self, message: str, *fields: str):
        super().__init__(message)
        self.fields = fields
