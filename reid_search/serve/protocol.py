"""The HTTP/1.1 connection handling of ``reid-search serve``: uvicorn's h11 protocol with the
two limits it lacks against slow clients (slowloris).

* **header deadline**: a connection must finish a request's headers within
  ``HEADER_SECONDS`` of opening (or of its previous response); else it is closed;
* **connection cap**: at most ``MAX_CONNECTIONS`` open connections per process. A new
  connection beyond it closes the oldest one still sending its headers (a real client sends
  them in milliseconds, so it is never the one closed); when every open connection is a
  request in progress, the newcomer gets a fast 503 and is closed.

Dropped clients are not logged (a flood of them would fill the log). Used by
:func:`run_server`; a public deployment still belongs behind a reverse proxy (README, Serving).
"""

from __future__ import annotations

import logging
from collections import OrderedDict

from uvicorn.protocols.http.h11_impl import H11Protocol

HEADER_SECONDS = 10.0
MAX_CONNECTIONS = 512
_BUSY_BODY = b'{"detail": "too many open connections"}'
BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nconnection: close\r\n"
    b"retry-after: 1\r\ncontent-length: " + str(len(_BUSY_BODY)).encode() + b"\r\n\r\n" + _BUSY_BODY
)


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol plus a header deadline and a per-process connection cap."""

    header_seconds = HEADER_SECONDS
    max_connections = MAX_CONNECTIONS
    _waiting: OrderedDict = OrderedDict()  # connections sending headers, oldest first (one process)

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        if len(self.connections) > self.max_connections and not self._evict_oldest_waiting():
            transport.write(BUSY)
            transport.close()
            return
        self._await_headers()

    def _await_headers(self) -> None:
        self._cancel_deadline()
        self._deadline = self.loop.call_later(self.header_seconds, self._too_slow)
        GuardedH11Protocol._waiting[self] = None

    def _cancel_deadline(self) -> None:
        deadline = getattr(self, "_deadline", None)
        if deadline is not None:
            deadline.cancel()
            self._deadline = None
        GuardedH11Protocol._waiting.pop(self, None)

    def _evict_oldest_waiting(self) -> bool:
        for other in GuardedH11Protocol._waiting:
            if other is not self:
                other._too_slow()
                return True
        return False

    def _too_slow(self) -> None:
        self._cancel_deadline()
        if not self.transport.is_closing():
            self.transport.close()

    def handle_events(self) -> None:
        cycle = self.cycle
        super().handle_events()
        if self.cycle is not None and self.cycle is not cycle:  # a request's headers are complete
            self._cancel_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._await_headers()  # the next request on this connection has the same deadline

    def connection_lost(self, exc) -> None:
        self._cancel_deadline()
        super().connection_lost(exc)


class _DroppedClients(logging.Filter):
    """Drops asyncio's and uvicorn's records about clients that went away mid-request."""

    NOISE = ("socket.send() raised exception", "Connection reset", "Broken pipe", "Invalid HTTP request")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(n in message for n in self.NOISE)


def quiet_dropped_clients() -> None:
    """Keep the server log free of one line per dropped client."""
    for name in ("asyncio", "uvicorn.error"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DroppedClients) for f in logger.filters):
            logger.addFilter(_DroppedClients())
