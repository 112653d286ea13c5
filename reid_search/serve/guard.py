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
    max_parts: int = 48  # parts of one multipart body (images + form fields)
    body_slots: int = 16  # request bodies read at once (bounds temp disk, open files); others wait
    slot_wait: float = 10.0  # seconds a body may wait for a slot before a 503
    body_seconds: float = 120.0  # a whole body must arrive within this (one byte a second never ends)


class PartCounter:
    """Counts multipart parts as the body streams in (boundaries split across chunks included).

    >>> counter = PartCounter(b"XyZ")
    >>> counter.feed(b"--XyZ a --X") + counter.feed(b"yZ b --XyZ--")
    3
    """

    def __init__(self, boundary: bytes):
        self.marker = b"--" + boundary
        self.tail = b""

    def feed(self, chunk: bytes) -> int:
        data = self.tail + chunk
        found = data.count(self.marker)
        self.tail = data[-(len(self.marker) - 1) :] if len(self.marker) > 1 else b""
        return found


def multipart_boundary(content_type: str) -> bytes | None:
    """The boundary of a ``multipart/form-data`` content type, else None.

    >>> multipart_boundary('multipart/form-data; boundary="abc"')
    b'abc'
    """
    if not content_type.lower().startswith("multipart/"):
        return None
    for part in content_type.split(";")[1:]:
        key, _, value = part.strip().partition("=")
        if key.lower() == "boundary" and value:
            return value.strip('"').encode("latin-1")
    return None


def host_name(header: str) -> str:
    """The name of a ``Host`` header (port taken off), or "" when it is not a plain host[:port].

    >>> host_name("LocalHost:8000"), host_name("[::1]:80"), host_name("127.0.0.1:80@evil.com")
    ('localhost', '::1', '')
    """
    header = header.strip().lower()
    if header.startswith("["):  # [IPv6]:port
        name, _, rest = header[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else rest
    else:
        name, _, port = header.partition(":") if header.count(":") == 1 else (header, "", "")
    if port and not port.isdigit():
        return ""
    if not name or any(not (ch.isalnum() or ch in "-._:") for ch in name):
        return ""
    return name


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
        self.slots: asyncio.Semaphore | None = None  # bodies being read; at most body_slots at once

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        send = _with_headers(send, scope.get("path", ""))
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        refusal = self._refusal(scope, headers)
        if refusal is not None:
            return await _reply(send, *refusal)
        has_body = headers.get("content-length", "0") not in ("", "0") or "transfer-encoding" in headers
        if not has_body:
            return await self.app(scope, self._guarded_receive(receive), send)
        if self.slots is None:  # made on first use, inside the server's event loop
            self.slots = asyncio.Semaphore(self.config.body_slots)
        try:
            await asyncio.wait_for(self.slots.acquire(), self.config.slot_wait)
        except asyncio.TimeoutError:
            return await _reply(
                send, 503, "busy: too many uploads at once; try again", [(b"retry-after", b"1")]
            )
        try:
            boundary = multipart_boundary(headers.get("content-type", ""))
            await self.app(scope, self._guarded_receive(receive, boundary), send)
        finally:
            self.slots.release()

    def _refusal(self, scope, headers: dict[str, str]) -> tuple | None:
        c = self.config
        if c.allowed_hosts and host_name(headers.get("host", "")) not in c.allowed_hosts:
            return 400, "unknown Host header", []
        if c.token and scope["path"].startswith("/api"):
            given = token_of(headers, scope.get("query_string", b"").decode("latin-1"))
            if not hmac.compare_digest(given.encode(), c.token.encode()):
                return 401, "missing or wrong token", [(b"www-authenticate", b"Bearer")]
        length = headers.get("content-length", "")
        if length and (not length.isdigit() or len(length) > 18 or int(length) > c.max_body_bytes):
            return 413, f"request larger than {c.max_body_bytes} bytes", []
        return None

    def _guarded_receive(self, receive, boundary: bytes | None = None):
        c = self.config
        limit, timeout = c.max_body_bytes, c.body_timeout
        seen, parts = 0, 0
        counter = PartCounter(boundary) if boundary else None
        deadline = asyncio.get_running_loop().time() + c.body_seconds

        async def guarded():
            nonlocal seen, parts
            left = deadline - asyncio.get_running_loop().time()
            try:
                message = await asyncio.wait_for(receive(), max(0.0, min(timeout, left)))
            except asyncio.TimeoutError:
                raise HTTPException(408, f"no request data for {timeout:g} s (or the body took over "
                                    f"{c.body_seconds:g} s in all)") from None  # fmt: skip
            if message["type"] == "http.request":
                body = message.get("body", b"")
                seen += len(body)
                if seen > limit:
                    raise HTTPException(413, f"request larger than {limit} bytes")
                if counter is not None:
                    parts += counter.feed(body)
                    if parts > c.max_parts + 1:  # n parts have n + 1 boundary lines
                        raise HTTPException(413, f"more than {c.max_parts} parts in one request")
            return message

        return guarded
