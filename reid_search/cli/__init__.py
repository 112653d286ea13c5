"""The ``reid-search`` command line: a thin typer shell over the Python API.

Every command turns a known failure (bad folder, bad image, wrong model, unknown layout)
into one line on stderr and exit code 2.
"""

from __future__ import annotations

from . import gallery_commands, model_commands, search_commands, serve_command, zoo_command  # noqa: F401
from ._common import app, friendly_errors, main

__all__ = ["app", "friendly_errors", "main"]
