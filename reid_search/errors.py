"""The project's error base: every error raised on purpose (bad input, a missing or wrong
file, a refused request) is a :class:`ReidSearchError`.

Front ends turn these, and only these, into a one-line message (the CLI's ``error:``, the
server's 4xx); anything else is a bug and keeps its traceback.

    >>> issubclass(InputError, ReidSearchError) and issubclass(InputError, ValueError)
    True
    >>> issubclass(UnavailableError, ReidSearchError)
    True
    >>> require_extra("no_such_module", "video", "video")
    Traceback (most recent call last):
    ...
    reid_search.errors.MissingExtra: video needs no_such_module: pip install 'reid-search[video]'
"""

from __future__ import annotations

import importlib
from types import ModuleType


class ReidSearchError(Exception):
    """Base of every error the project raises on purpose; ``str()`` is the one-line message,
    ``http_status`` the status the server answers it with (one JSON shape: ``{"detail": ...}``)."""

    http_status: int = 400


class InputError(ReidSearchError, ValueError):
    """An argument, option or file content the project cannot use (also a ``ValueError``)."""


class TrainingError(InputError):
    """A training setting, dataset or teacher file that cannot be used."""


class UnavailableError(ReidSearchError):
    """Something outside the project that a command needs cannot be reached or started (a
    Ray cluster, a busy machine's time-out): not the user's input and not a bug."""

    http_status = 503


class MissingExtra(ReidSearchError):
    """An optional capability whose packages are not installed; the message names the extra."""

    http_status = 501


def require_extra(module: str, extra: str, purpose: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingExtra` naming the pip extra that provides it.

    The one way the project reports a missing optional package::

        av = require_extra("av", "video", "indexing video")
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        top = module.split(".")[0]
        if exc.name is not None and exc.name.split(".")[0] not in (top, module):
            raise  # the package is there but broken: a real error, keep its traceback
        raise MissingExtra(f"{purpose} needs {top}: pip install 'reid-search[{extra}]'") from None
