"""The ``reid-search`` command line: a thin typer shell over the Python API.

Every command turns a known failure (bad folder, bad image, wrong model, unknown layout)
into one line on stderr and exit code 2.
"""

from __future__ import annotations

from . import (  # noqa: F401  (each module registers its commands)
    adapt_command,
    attribute_commands,
    gallery_commands,
    journey_command,
    model_commands,
    search_commands,
    serve_command,
    zoo_command,
)
from ._common import app, friendly_errors, main

GUIDES = {  # command -> the docs page that explains it (shown at the end of its --help)
    "index": "docs/indexing.md", "reindex": "docs/indexing.md", "embed": "docs/indexing.md",
    "galleries": "docs/indexing.md", "query": "docs/querying.md", "compare": "docs/querying.md",
    "cluster": "docs/querying.md", "clusters": "docs/querying.md", "trace": "docs/querying.md",
    "verify-bundle": "docs/querying.md", "identities": "docs/querying.md",
    "export-clip": "docs/indexing.md",
    "serve": "docs/serving.md", "evaluate": "docs/evaluation.md", "calibrate": "docs/evaluation.md",
    "train": "docs/training.md", "records": "docs/training.md", "adapt": "docs/training.md",
    "find": "docs/querying.md", "attributes": "docs/querying.md", "train-attributes": "docs/training.md",
    "export": "docs/models.md", "models": "docs/models.md", "demo": "README.md",
}  # fmt: skip


def _link_guides() -> None:
    """Every command's --help ends with its guide page (a command without one is a bug)."""
    for info in app.registered_commands:
        name = info.name or info.callback.__name__.replace("_", "-")
        info.epilog = f"Guide: {GUIDES[name]}"
    for group in app.registered_groups:
        group.typer_instance.info.epilog = f"Guide: {GUIDES[group.name]}"
        for info in group.typer_instance.registered_commands:
            info.epilog = f"Guide: {GUIDES[group.name]}"


_link_guides()

__all__ = ["app", "friendly_errors", "main"]
