"""Read an image file into the tower's input: RGB, resized, float32 in 0-255.

Every failure (missing, zero-byte, truncated, not an image) is one :class:`ImageError`
with the file and a short reason, so a gallery build can record it and go on.

Usage::

    from reid_search.data.images import load_image
    image = load_image("person.jpg", size=(256, 128))
    image.pixels.shape, image.width, image.height
    # ((256, 128, 3), 99, 287)
"""

from __future__ import annotations

import hashlib
import io
import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .._files import file_sha256  # noqa: F401  (here too: images are hashed as they are read)
from ..errors import ReidSearchError

Image.MAX_IMAGE_PIXELS = 64_000_000  # refuse decompression bombs, allow real photos


class ImageError(ReidSearchError):
    """An image file that cannot be used; ``str()`` is ``'<path>: <reason>'``."""

    def __init__(self, path: str | Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


@dataclass(frozen=True)
class LoadedImage:
    """Pixels ready for the tower and facts about the file they came from."""

    pixels: np.ndarray  # (H, W, 3) float32 RGB 0-255
    width: int  # original size
    height: int
    sha256: str  # of the file's bytes


def load_image(path: str | Path, size: tuple[int, int]) -> LoadedImage:
    """Read ``path`` once, hash its bytes, decode and resize bilinearly to ``size`` (H, W).

    Raises :class:`ImageError` for anything that is not a complete, readable image.
    """
    path = Path(path)
    try:
        if not stat.S_ISREG(path.stat().st_mode):  # a FIFO or device would block or never end
            raise ImageError(path, "not a regular file")
        data = path.read_bytes()
    except FileNotFoundError:
        raise ImageError(path, "no such file") from None
    except OSError as exc:
        raise ImageError(path, f"cannot read ({exc.strerror or exc})") from None
    pixels, width, height = decode_image(data, size, path)
    return LoadedImage(pixels=pixels, width=width, height=height, sha256=hashlib.sha256(data).hexdigest())


def decode_image(
    data: bytes, size: tuple[int, int], path: str | Path = "<bytes>"
) -> tuple[np.ndarray, int, int]:
    """Encoded bytes -> (float32 RGB pixels at ``size`` (H, W), original width, height).

    The one decoder of the project: training, galleries and queries all resize this way.
    JPEGs larger than twice the target decode at a reduced DCT scale (PIL ``draft``), then
    every image is resized bilinearly to ``size`` without keeping its aspect.
    """
    if not data:
        raise ImageError(path, "empty file (0 bytes)")
    try:
        with Image.open(io.BytesIO(data)) as img:
            width, height = int(img.width), int(img.height)
            img.draft("RGB", (size[1], size[0]))  # JPEG: decode at a reduced scale when it can
            rgb = img.convert("RGB")
    except UnidentifiedImageError:
        raise ImageError(path, "not an image PIL can read") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageError(path, f"corrupt or truncated image ({exc})") from None
    resized = rgb.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.float32), width, height


def list_images(paths: list[str | Path], skipped: list | None = None) -> list[Path]:
    """Expand files and folders (recursively, sorted) into image files for a query; folders
    that cannot be read (and link loops) are recorded in ``skipped`` (layouts' ``Skipped``)."""
    from .layouts.walk import _files_below

    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(_files_below(p, skipped))
        else:
            out.append(p)
    return out
