"""Writing files safely: the ground floor every stage may use.

>>> import tempfile, json, pathlib
>>> target = pathlib.Path(tempfile.mkdtemp()) / "a.json"
>>> write_json_atomic(target, {"ok": True}); json.loads(target.read_text())
{'ok': True}
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any


def write_json_atomic(path: str | Path, data: Any) -> None:
    """Write JSON to a temp file in the same folder, fsync, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o644)
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=2, sort_keys=False)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def files_sha256(paths: list[str | Path]) -> str:
    """The project's one content hash: SHA-256 of one file, or of several files' bytes in order
    (an OpenVINO model's ``.xml`` + ``.bin``). FileNotFoundError names a missing file.

    >>> import tempfile, pathlib
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "a.txt"; _ = f.write_bytes(b"abc")
    >>> files_sha256([f])[:12]
    'ba7816bf8f01'
    """
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as fh:
            while block := fh.read(1 << 20):
                digest.update(block)
    return digest.hexdigest()


def file_sha256(path: str | Path) -> str:
    """SHA-256 of one file's bytes (:func:`files_sha256` of it)."""
    return files_sha256([path])


class NotRegularFile(OSError):
    """A path that is a FIFO, device, socket or folder where a regular file was expected."""


def open_regular(path: str | Path) -> tuple[int, os.stat_result]:
    """An open read-only descriptor of ``path`` and its ``fstat``, only for a regular file.

    Opened non-blocking, so a FIFO or device put in a file's place never hangs the caller;
    the descriptor is what the caller then checks and reads (no second open by name).
    Raises OSError (NotRegularFile, a kind of it, for a FIFO, device or folder)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotRegularFile(f"{Path(path).name}: not a regular file")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd, info


def descriptor_path(fd: int, fallback: Path) -> Path:
    """The real path of an open descriptor (Linux: ``/proc/self/fd``), else ``fallback`` resolved."""
    link = Path(f"/proc/self/fd/{fd}")
    try:
        return Path(os.readlink(link))
    except OSError:
        return Path(os.path.realpath(fallback))


def read_descriptor(fd: int, limit: int) -> bytes:
    """At most ``limit`` bytes of an open file, from its start."""
    chunks, total = [], 0
    os.lseek(fd, 0, os.SEEK_SET)
    while total <= limit:
        chunk = os.read(fd, min(1 << 20, limit + 1 - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)
