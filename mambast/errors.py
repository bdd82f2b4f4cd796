"""Errors meant for users: the CLI prints their one-line message without a traceback."""


class UserError(Exception):
    """A problem the user can fix (bad path, wrong checkpoint, unreadable image...): one clear line."""
