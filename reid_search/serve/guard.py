"""The server's gate: who may ask, which host, how big and how slow a body may be — checked
before any of the body is read.

:class:`RequestGuard` is a plain ASGI middleware in front of the whole application:

* **token first**: with a token, an ``/api`` request without it gets its 401 before one
  byte of its body is read (a 1.5 GB upload without a token costs nothing);
* **body budget**: a declared ``Content-Length`` over the limit is a 413 at once; a chunked
  body is counted as it arrives and cut off with a 413 the moment it passes the limit;
* **slow clients**: each body chunk must arrive within ``body_timeout`` seconds (408);
* **host check** (optional): only the listed ``Host`` names are answered (DNS rebinding).

Usage::

    >>> from fastapi import FastAPI
    >>> app = RequestGuard(FastAPI(), GuardConfig(token="s3cret", max_body_bytes=2**20))
"""

from __future__ import annotations

import asyncio
import hmac
import json
from dataclasses import dataclass
from urllib.parse import parse_qs

from starlette.exceptions import HTTPException


@dataclass(frozen=True)
class GuardConfig:
    token: str | None = None
    max_body_bytes: int = 64 * 2**20
    body_timeout: float = 30.0  # seconds a client may take between two body chunks
    allowed_hosts: tuple[str, ...] = ()  # empty: any Host header


def token_of(headers: dict[str, str], query: str) -> str:
    """The token a request carries: ``Authorization: Bearer T``, ``X-Token: T`` or ``?token=T``."""
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:]
    if headers.get("x-token"):
        return headers["x-token"]
    return (parse_qs(query).get("token") or [""])[0]


PAGE_POLICY = (  # the page and its offline docs: their own inline script and style, pictures as blobs
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' blob: data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
API_POLICY = "default-src 'none'; frame-ancestors 'none'; sandbox"  # API replies never run as a page
CLOSING = {401, 408, 413}  # refusals after which the rest of the request is not read


def security_headers(path: str, status: int) -> list[tuple[bytes, bytes]]:
    """Headers every response carries: no type sniffing, a content policy, no referrer; a refusal
    of a request whose body was not read also closes the connection.

    >>> dict(security_headers("/api/image/g/1", 200))[b"content-security-policy"]
    b"default-src 'none'; frame-ancestors 'none'; sandbox"
    >>> (b"connection", b"close") in security_headers("/api/query", 413)
    True
    """
    policy = API_POLICY if path.startswith("/api") else PAGE_POLICY
    headers = [
        (b"x-content-type-options", b"nosniff"),
        (b"content-security-policy", policy.encode()),
        (b"referrer-policy", b"no-referrer"),
        (b"x-frame-options", b"DENY"),
    ]
    return headers + ([(b"connection", b"close")] if status in CLOSING else [])


def _with_headers(send, path: str):
    """``send`` that adds :func:`security_headers` to the response start (replacing any the
    application set under the same names)."""

    async def wrapped(message):
        if message["type"] == "http.response.start":
            extra = security_headers(path, message["status"])
            names = {name for name, _ in extra}
            kept = [(k, v) for k, v in message.get("headers", []) if k.lower() not in names]
            message = {**message, "headers": kept + extra}
        await send(message)

    return wrapped


async def _reply(send, status: int, detail: str, extra: list[tuple[bytes, bytes]] = ()) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += list(extra)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class RequestGuard:
    """ASGI middleware enforcing :class:`GuardConfig` before the application sees a request."""

    def __init__(self, app, config: GuardConfig):
        self.app, self.config = app, config

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        send = _with_headers(send, scope.get("path", ""))
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        refusal = self._refusal(scope, headers)
        if refusal is not None:
            return await _reply(send, *refusal)
        await self.app(scope, self._guarded_receive(receive), send)

    def _refusal(self, scope, headers: dict[str, str]) -> tuple | None:
        c = self.config
        if c.allowed_hosts:
            host = headers.get("host", "").rsplit(":", 1)[0].strip("[]").lower()
            if host not in c.allowed_hosts:
                return 400, "unknown Host header", []
        if c.token and scope["path"].startswith("/api"):
            given = token_of(headers, scope.get("query_string", b"").decode("latin-1"))
            if not hmac.compare_digest(given.encode(), c.token.encode()):
                return 401, "missing or wrong token", [(b"www-authenticate", b"Bearer")]
        length = headers.get("content-length", "")
        if length and (not length.isdigit() or len(length) > 18 or int(length) > c.max_body_bytes):
            return 413, f"request larger than {c.max_body_bytes} bytes", []
        return None

    def _guarded_receive(self, receive):
        limit, timeout = self.config.max_body_bytes, self.config.body_timeout
        seen = 0

        async def guarded():
            nonlocal seen
            try:
                message = await asyncio.wait_for(receive(), timeout)
            except asyncio.TimeoutError:
                raise HTTPException(408, f"no request data for {timeout:g} s") from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise HTTPException(413, f"request larger than {limit} bytes")
            return message

        return guarded
