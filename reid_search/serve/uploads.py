"""Uploaded images: read, checked against the request's budget, decoded for the tower.

A request's budget (:class:`UploadBudget`) is checked before anything is decoded: bytes
per image, files per request, pixels per image *and* per request, read from the image's
real header. Only formats whose header states the size of what will be decoded are
accepted (JPEG, PNG, WebP, BMP, GIF, TIFF, PPM): an ICO or similar container whose header
can promise 16x16 and hold a 11000x11000 picture is refused unread.

Usage::

    budget = ServeConfig(max_upload_bytes=2**20, max_pixels=10**6, max_files=4).upload_budget
    checked = check_upload(b"not an image", "x.jpg", budget)
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..data.images import ImageError, decode_image
from ..errors import ReidSearchError

SAFE_FORMATS = frozenset({"JPEG", "MPO", "PNG", "WEBP", "BMP", "GIF", "TIFF", "PPM"})
UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
MAX_NAME = 120


class UploadRejected(ReidSearchError):
    """An upload refused with an HTTP status and a short reason."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = self.http_status = status


@dataclass(frozen=True)
class UploadBudget:
    """What one request may upload (the limits are set once, in :class:`~.config.ServeConfig`)."""

    max_image_bytes: int
    max_image_pixels: int
    max_request_pixels: int
    max_files: int


@dataclass(frozen=True)
class Upload:
    """One accepted upload: its safe name, bytes and header size."""

    name: str
    data: bytes
    width: int
    height: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


def safe_filename(name: str | None, index: int) -> str:
    """The upload's base name with only safe characters, at most 120 (the same-camera rule reads it).

    >>> safe_filename("../../etc/passwd", 0)
    'passwd'
    >>> len(safe_filename("a" * 4000 + ".jpg", 0))
    120
    """
    base = UNSAFE_NAME.sub("_", Path(name or "").name).strip("._")
    if len(base) > MAX_NAME:
        stem, dot, suffix = base.rpartition(".")
        base = (
            (stem[: MAX_NAME - len(suffix) - 1] + dot + suffix)
            if dot and len(suffix) < 8
            else base[:MAX_NAME]
        )
    return base or f"upload{index}.jpg"


def check_upload(data: bytes, name: str, budget: UploadBudget) -> Upload:
    """Size, format and header pixels of one upload, before decoding (UploadRejected if not)."""
    if not data:
        raise UploadRejected(400, f"{name}: empty file (0 bytes)")
    if len(data) > budget.max_image_bytes:
        raise UploadRejected(413, f"{name}: larger than {budget.max_image_bytes} bytes")
    try:
        with Image.open(io.BytesIO(data)) as img:
            fmt, (width, height) = img.format, img.size
    except Image.DecompressionBombError:
        raise UploadRejected(
            413, f"{name}: too many pixels (over {budget.max_image_pixels} allowed)"
        ) from None
    except Exception:  # PIL raises many types for a bad header
        raise UploadRejected(400, f"{name}: not an image PIL can read") from None
    if fmt not in SAFE_FORMATS:
        raise UploadRejected(400, f"{name}: {fmt} images are not accepted (use JPEG, PNG, WebP or BMP)")
    if width * height > budget.max_image_pixels:
        raise UploadRejected(
            400, f"{name}: {width}x{height} pixels, more than {budget.max_image_pixels} allowed"
        )
    return Upload(name, data, width, height)


def check_request(uploads: list[Upload], budget: UploadBudget) -> None:
    """The whole request's pixel budget (413 when over)."""
    total = sum(u.pixels for u in uploads)
    if total > budget.max_request_pixels:
        raise UploadRejected(
            413, f"{len(uploads)} images of {total} pixels in all; at most {budget.max_request_pixels}"
        )


def decode_uploads(uploads: list[Upload], size: tuple[int, int]) -> tuple[np.ndarray, list[str], list[str]]:
    """Decode accepted uploads for a tower of input ``size``: (pixels, used names, failures)."""
    pixels, used, failures = [], [], []
    for upload in uploads:
        try:
            array, width, height = decode_image(upload.data, size, upload.name)
        except ImageError as exc:
            failures.append(f"{upload.name}: {exc.reason}")
            continue
        if (width, height) != (upload.width, upload.height):  # the header lied
            failures.append(f"{upload.name}: decoded size differs from its header")
            continue
        pixels.append(array)
        used.append(upload.name)
    stacked = np.stack(pixels) if pixels else np.zeros((0, *size, 3), np.float32)
    return stacked, used, failures
