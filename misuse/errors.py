"""The package's one exception hierarchy.

Messages name the thing, the place and the value, e.g.
``conn.log line 42: expected 21 fields, got 19``.
"""

from __future__ import annotations


class MisuseError(Exception):
    """Root of every error this package raises on purpose."""


class ParseError(MisuseError):
    """A record or a file could not be read.

    Parameters
    ----------
    message:
        What is wrong, in words.
    source:
        The file (or stream) the record came from.
    line:
        1-based line or record number, when known.
    """

    def __init__(self, message: str, source: str | None = None, line: int | None = None) -> None:
        self.source = source
        self.line = line
        self.reason = message
        where = ""
        if source is not None:
            where = f"{source}"
            if line is not None:
                where += f" line {line}"
            where += ": "
        super().__init__(f"{where}{message}")


class SchemaError(MisuseError):
    """Data has the wrong shape: missing columns, wrong types, unknown fields."""


class InvalidParameterError(MisuseError, ValueError):
    """A parameter has a value outside its documented constraints."""


class NotFittedError(MisuseError, RuntimeError):
    """A model was asked to score before it learned anything."""


class StoreError(MisuseError):
    """The project store is missing, locked or of an unknown schema version."""


class NotFoundError(MisuseError, LookupError):
    """A name or id that names nothing: an unknown alert, token, dataset, entity or profile.

    Bad input, not a store problem: the command line exits 3, the API answers 404.
    """
