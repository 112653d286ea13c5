"""``reid-search serve``: the web page and HTTP API."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from ..serve.config import ServeConfig
from ._common import (
    IndexesOpt,
    app,
    friendly_errors,
)

_DEFAULTS = ServeConfig()  # the one place the limits are set


@app.command()
@friendly_errors
def serve(
    index_name: Annotated[
        str | None, typer.Option("--index", "-i", help="Default gallery [default: the only one].")
    ] = None,
    host: Annotated[str, typer.Option(help="Address to bind (127.0.0.1: this machine only).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port.")] = 8000,
    token: Annotated[
        str | None,
        typer.Option(envvar="REID_SEARCH_TOKEN", help="Require this token on every API call."),
    ] = None,
    max_upload_mb: Annotated[
        float | None,
        typer.Option(
            min=0.01,
            help="Largest image accepted, in MB.",
            show_default=f"{_DEFAULTS.max_upload_bytes / 2**20:g}",
        ),
    ] = None,
    max_request_mp: Annotated[
        float | None,
        typer.Option(
            min=0.01,
            help="Most pixels of all images of one request, in megapixels.",
            show_default=f"{_DEFAULTS.max_request_pixels / 1e6:g}",
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Server processes, each with its own copy of the model [default: one per core, at most 4].",
        ),
    ] = None,
    allowed_host: Annotated[
        list[str] | None,
        typer.Option(
            help="Host header names answered (repeatable) [default: localhost names when bound to loopback, "
            "else any]."
        ),
    ] = None,
    indexes_dir: IndexesOpt = None,
) -> None:
    """Serve the galleries: a web page at /, a JSON API under /api, its docs at /docs."""
    from ..serve.config import require_serve_extra

    require_serve_extra()
    import uvicorn

    from ..serve import ServeConfig, create_app

    if index_name is not None:
        from ..gallery import Gallery

        Gallery.open(index_name, indexes_dir).close()  # a wrong name fails now, not per request
    loopback = ("127.0.0.1", "localhost", "::1")
    hosts = tuple(h.lower() for h in allowed_host or ()) or (loopback if host in loopback else ())
    limits = {}  # only what was given: every other limit is ServeConfig's
    if max_upload_mb is not None:
        limits["max_upload_bytes"] = int(max_upload_mb * 2**20)
    if max_request_mp is not None:
        limits["max_request_pixels"] = int(max_request_mp * 1e6)
    config = ServeConfig(
        indexes_dir=indexes_dir, default_gallery=index_name, token=token, allowed_hosts=hosts, **limits
    )
    if host not in loopback and not token:
        typer.echo(
            f"warning: serving on {host} without --token: anyone who can reach it may search", err=True
        )
    from ..serve.protocol import GuardedH11Protocol, quiet_dropped_clients

    workers = workers or default_workers()
    quiet_dropped_clients()
    limits = {"http": GuardedH11Protocol, "timeout_keep_alive": 5, "log_level": "warning"}
    typer.echo(f"reid-search on http://{host}:{port}/  ({workers} processes; API docs: /docs)")
    if workers > 1:  # uvicorn starts each worker from an import string: the settings go by environment
        from ..serve.config import CONFIG_ENV

        os.environ[CONFIG_ENV] = config.to_json()
        uvicorn.run(
            "reid_search.serve.app:app_from_environment", factory=True, workers=workers, host=host,
            port=port, **limits,
        )  # fmt: skip
        return
    uvicorn.run(create_app(config), host=host, port=port, **limits)


def default_workers() -> int:
    """One server process per core the process may use, at most 4 (each holds a model copy)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(4, cores))
