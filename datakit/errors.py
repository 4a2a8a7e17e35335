"""The one exception type for user-facing errors: the CLI prints it and exits 1."""

from __future__ import annotations

from pathlib import Path


class DatakitError(Exception):
    """A problem with the user's input, worded for the user.

    ``where`` names the file (or JSON key, or store location) the problem is in.
    """

    def __init__(self, message: str, where: str | Path | None = None):
        self.where = str(where) if where is not None else None
        self.reason = message
        super().__init__(printable(f"{self.where}: {message}" if self.where else message))


def printable(text: str) -> str:
    """``text`` as valid UTF-8: bytes of a non-UTF-8 file name (surrogate escapes) become ``\\xNN``."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
