"""Video frames for a server: the indexed video only, found fast, at a bounded cost.

A gallery entry cut from video records the video's size and SHA-256 at indexing. A request
for its frame (:class:`FrameServer`) opens the video once, as a regular file only (a FIFO or
device in its place is refused, never waited on), checks size and hash on that open
descriptor (a video replaced or re-pointed is refused), and decodes from that descriptor:

* **seek**: from the keyframe before the frame's time, not from frame 0;
* **bounded**: at most ``slots`` decodes at once and ``queue`` waiting; more is :class:`Busy`
  (a 503 with Retry-After), and a decode past ``seconds`` stops (:class:`Busy` too);
* **cached**: the last ``cached`` frames served (by video hash, frame and box);
* **clipped**: the box is drawn inside the frame whatever its recorded size.

Usage::

    server = FrameServer()
    jpeg = server.jpeg(FrameRequest("cam3.mp4", 1_000_000, "ab12...", 557, 55.7, [396, 5, 554, 395], "t3"))
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from PIL import Image

from .._files import NotRegularFile, open_regular
from .clips import draw_box
from .decode import VideoError, require_av


class Busy(VideoError):
    """Too many frame decodes at once, or one that took too long: try again later."""

    http_status = 503


@dataclass(frozen=True)
class FrameRequest:
    video: str
    size: int | None  # bytes recorded at indexing (None: an older gallery, not served)
    sha256: str | None
    frame: int
    time: float | None  # seconds into the video, as decoded at indexing
    box: list
    label: str = ""


class FrameServer:
    """Decodes requested frames under a concurrency, queue and time budget (thread-safe)."""

    def __init__(self, slots: int = 2, queue: int = 8, seconds: float = 10.0, cached: int = 64):
        self.slots, self.queue_limit, self.seconds, self.cached = slots, queue, seconds, cached
        self._running = threading.BoundedSemaphore(slots)
        self._lock = threading.Lock()
        self._waiting = 0
        self._cache: OrderedDict[tuple, bytes] = OrderedDict()
        self._hashes: dict[tuple, str] = {}

    def jpeg(self, request: FrameRequest) -> bytes:
        """The frame with its box drawn, as JPEG bytes; VideoError (or Busy) when it cannot be."""
        if not request.sha256 or request.size is None:
            raise VideoError(
                f"{request.video}: indexed without its size and hash; index it again to see frames"
            )
        key = (request.sha256, request.frame, tuple(request.box), request.label)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
            if self._waiting >= self.slots + self.queue_limit:
                raise Busy("too many frame requests at once; try again in a moment")
            self._waiting += 1
        try:
            if not self._running.acquire(timeout=self.seconds):
                raise Busy("too many frame requests at once; try again in a moment")
            try:
                data = self._render(request)
            finally:
                self._running.release()
        finally:
            with self._lock:
                self._waiting -= 1
        with self._lock:
            self._cache[key] = data
            while len(self._cache) > self.cached:
                self._cache.popitem(last=False)
        return data

    def _render(self, request: FrameRequest) -> bytes:
        try:
            fd, info = open_regular(request.video)
        except NotRegularFile:
            raise VideoError(f"{os.path.basename(request.video)}: no longer a regular file") from None
        except OSError:
            raise VideoError(f"{os.path.basename(request.video)}: the video is no longer on disk") from None
        with os.fdopen(fd, "rb") as handle:
            if info.st_size != request.size or self._sha256(handle, info) != request.sha256:
                raise VideoError(f"{os.path.basename(request.video)}: the video changed since it was indexed")
            handle.seek(0)
            picture = decode_frame(handle, request.frame, request.time, time.monotonic() + self.seconds)
        out = io.BytesIO()
        draw_box(picture, clip_box(request.box, picture.size), request.label).convert("RGB").save(
            out, "JPEG", quality=88
        )
        return out.getvalue()

    def _sha256(self, handle, info) -> str:
        """SHA-256 of the open file; kept per (device, inode, size, mtime, ctime): the change time
        moves on every write, whatever a writer does to the modification time."""
        key = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
        with self._lock:
            if key in self._hashes:
                return self._hashes[key]
        digest = hashlib.sha256()
        handle.seek(0)
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
        with self._lock:
            self._hashes[key] = digest.hexdigest()
            return self._hashes[key]


def clip_box(box, size: tuple[int, int]) -> list[int]:
    """``box`` (x0, y0, x1, y1) kept inside an image of ``size`` (width, height).

    >>> clip_box([-5, 10, 10**12, 50], (640, 480))
    [0, 10, 639, 50]
    """
    width, height = size
    x0, y0, x1, y1 = (int(v) for v in box)
    return [min(max(x0, 0), width - 1), min(max(y0, 0), height - 1),
            min(max(x1, 0), width - 1), min(max(y1, 0), height - 1)]  # fmt: skip


def decode_frame(handle, index: int, seconds: float | None, deadline: float) -> Image.Image:
    """Frame ``index`` (at ``seconds`` into the video) of an open video file: seek to the keyframe
    before it, decode forward; Busy past ``deadline`` (monotonic), VideoError if it is not there."""
    av = require_av()
    try:
        container = av.open(handle, mode="r")
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise VideoError(f"not a video PyAV can open ({type(exc).__name__})") from None
    try:
        stream = container.streams.video[0] if container.streams.video else None
        if stream is None:
            raise VideoError("the file has no video stream")
        fps = float(stream.average_rate or 0) or 10.0
        target = seconds if seconds is not None else index / fps
        position = 0
        if target > 1.0 and stream.time_base:
            container.seek(int(max(0.0, target - 0.5) / stream.time_base), stream=stream, backward=True)
            position = None  # frame numbers after a seek come from times
        for count, frame in enumerate(container.decode(stream)):
            if time.monotonic() > deadline:
                raise Busy("the frame took too long to decode")
            when = frame.time if frame.time is not None else count / fps
            here = position + count if position is not None else round(when * fps)
            if (position is not None and here >= index) or (position is None and when >= target - 0.5 / fps):
                return frame.to_image()
        raise VideoError(f"no frame {index} (the video is shorter)")
    except av.error.FFmpegError as exc:
        raise VideoError(f"the video cannot be decoded there ({type(exc).__name__})") from None
    finally:
        container.close()
