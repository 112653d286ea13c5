"""Frames out of a video file (PyAV) or a folder of frame images, with their times.

A corrupt or truncated video yields every frame it can and then stops; the iterator's
``stopped`` says where and why, so indexing can record it instead of failing.

Usage::

    source = open_frames("cam3.mp4")
    for frame in source.frames(): frame.index, frame.time
    # (0, 0.0)
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from ..data.layouts import IMAGE_SUFFIXES
from ..errors import InputError, require_extra

VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".wmv"})


class VideoError(InputError):
    """A file that is not a video PyAV can open."""


@dataclass(frozen=True)
class Frame:
    index: int  # 0-based position in the video (or the folder's sorted frames)
    time: float  # seconds from the start, from the video's own timestamps
    pixels: np.ndarray  # RGB uint8 (H, W, 3)


def is_video(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def require_av():
    """PyAV, or a :class:`~reid_search.errors.MissingExtra` naming ``[video]``."""
    return require_extra("av", "video", "indexing video")


class VideoFrames:
    """The frames of one video file, decoded in order."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.stopped: str | None = None  # why decoding ended before the stream's end
        self.last_index = -1
        av = require_av()
        try:
            self._container = av.open(str(self.path))
            self._stream = self._container.streams.video[0]
        except (av.error.FFmpegError, IndexError, OSError) as exc:
            raise VideoError(f"{self.path}: not a video PyAV can open ({type(exc).__name__})") from None
        self.fps = float(self._stream.average_rate or 0) or None
        self.frame_count = int(self._stream.frames or 0)
        created = self._container.metadata.get("creation_time")
        self.created: datetime | None = None
        if created:
            try:
                self.created = datetime.fromisoformat(created.replace("Z", "+00:00"))
            except ValueError:
                self.created = None

    def frames(self) -> Iterator[Frame]:
        av = require_av()
        index = 0
        try:
            for decoded in self._container.decode(self._stream):
                time = decoded.time if decoded.time is not None else index / (self.fps or 1.0)
                yield Frame(index, float(time), decoded.to_ndarray(format="rgb24"))
                self.last_index = index
                index += 1
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            self.stopped = f"decoding stopped after frame {index - 1}: {type(exc).__name__}: {str(exc)[:120]}"
        finally:
            self._container.close()
        if self.frame_count and index < self.frame_count and self.stopped is None:
            self.stopped = f"the stream ended after {index} of {self.frame_count} frames (truncated?)"


class FolderFrames:
    """A folder of frame images (sorted by name) played at ``fps``."""

    def __init__(self, path: str | Path, fps: float = 10.0):
        self.path = Path(path)
        self.fps = fps
        self.created = None
        self.stopped: str | None = None
        self.last_index = -1
        self.files = sorted(p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise VideoError(f"{self.path}: no frame images")
        self.frame_count = len(self.files)

    def frames(self) -> Iterator[Frame]:
        from PIL import Image

        for index, file in enumerate(self.files):
            try:
                with Image.open(file) as img:
                    pixels = np.asarray(img.convert("RGB"))
            except Exception as exc:  # PIL raises many types for a bad file
                self.stopped = f"frame {index} unreadable: {type(exc).__name__}"
                return
            yield Frame(index, index / self.fps, pixels)
            self.last_index = index


def open_frames(path: str | Path, fps: float = 10.0) -> VideoFrames | FolderFrames:
    """A video file's frames, or a folder of frame images' (``fps`` for the folder's times)."""
    path = Path(path)
    return FolderFrames(path, fps) if path.is_dir() else VideoFrames(path)
