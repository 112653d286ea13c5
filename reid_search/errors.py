"""The project's error base: every error raised on purpose (bad input, a missing or wrong
file, a refused request) is a :class:`ReidSearchError`.

Front ends turn these, and only these, into a one-line message (the CLI's ``error:``, the
server's 4xx); anything else is a bug and keeps its traceback.

    >>> issubclass(InputError, ReidSearchError) and issubclass(InputError, ValueError)
    True
    >>> issubclass(UnavailableError, ReidSearchError)
    True
"""

from __future__ import annotations


class ReidSearchError(Exception):
    """Base of every error the project raises on purpose; ``str()`` is the one-line message."""


class InputError(ReidSearchError, ValueError):
    """An argument, option or file content the project cannot use (also a ``ValueError``)."""


class TrainingError(InputError):
    """A training setting, dataset or teacher file that cannot be used."""


class UnavailableError(ReidSearchError):
    """Something outside the project that a command needs cannot be reached or started (a
    Ray cluster, a busy machine's time-out): not the user's input and not a bug."""
