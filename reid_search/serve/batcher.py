"""Embed the images of concurrent requests together, on one thread that owns the model.

While the model embeds one batch, the requests that arrive wait in a queue; the next
batch takes all of them (up to ``max_images``), so under load each call of the model
serves many requests and no request thread ever runs the model itself (runtimes such as
LiteRT are not safe to call from several threads at once). ``max_wait`` bounds how long a
lone request waits for company (default: not at all).

Usage::

    >>> import numpy as np
    >>> class Doubler:
    ...     def embed_pixels(self, pixels):
    ...         return pixels.reshape(len(pixels), -1) * 2
    >>> batcher = EmbedBatcher(Doubler())
    >>> batcher.embed(np.ones((2, 1, 1, 1), np.float32)).tolist()
    [[2.0], [2.0]]
    >>> batcher.close()
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from concurrent.futures import Future

import numpy as np


class EmbedBatcher:
    """A worker thread that embeds queued pixel stacks in shared batches."""

    def __init__(self, embedder, max_images: int = 64, max_wait: float = 0.0):
        self.embedder, self.max_images, self.max_wait = embedder, max_images, max_wait
        self._queue: queue.Queue = queue.Queue()
        self.batches = 0  # model calls so far (tests and the load benchmark read these)
        self.requests = 0
        self._thread = threading.Thread(target=self._run, name="reid-embed", daemon=True)
        self._thread.start()

    def submit(self, pixels: np.ndarray) -> Future:
        """Queue one request's (N, H, W, 3) pixels; the future gives its (N, D) vectors."""
        future: Future = Future()
        self._queue.put((np.asarray(pixels, np.float32), future))
        return future

    def embed(self, pixels: np.ndarray) -> np.ndarray:
        """Blocking form of :meth:`submit` (from a worker thread, never the event loop)."""
        return self.submit(pixels).result()

    async def embed_async(self, pixels: np.ndarray) -> np.ndarray:
        return await asyncio.wrap_future(self.submit(pixels))

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)

    def _gather(self, first) -> list:
        items, count = [first], len(first[0])
        deadline = time.monotonic() + self.max_wait
        while count < self.max_images:
            try:
                left = deadline - time.monotonic()
                item = self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:  # closing: finish this batch, then stop
                self._queue.put(None)
                break
            items.append(item)
            count += len(item[0])
        return items

    def _run(self) -> None:
        while (first := self._queue.get()) is not None:
            items = self._gather(first)
            live = [(p, f) for p, f in items if f.set_running_or_notify_cancel()]
            if not live:
                continue
            try:
                vectors = self.embedder.embed_pixels(np.concatenate([p for p, _ in live]))
            except Exception as exc:  # every waiting request learns of it
                for _, future in live:
                    future.set_exception(exc)
                continue
            self.batches += 1
            self.requests += len(live)
            start = 0
            for pixels, future in live:
                future.set_result(vectors[start : start + len(pixels)])
                start += len(pixels)
