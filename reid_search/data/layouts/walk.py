"""Walking a folder tree safely: sorted, hidden entries left out, link loops and unreadable
folders reported instead of followed or raised, FIFOs and devices never opened."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from .scan import Skipped


def _skip(skipped: list | None, path: str, reason: str) -> None:
    if skipped is not None:
        skipped.append(Skipped(path, reason))


def _is_dir(entry: os.DirEntry) -> bool:
    """``entry.is_dir()``, False for a link loop or anything unreadable (never raises)."""
    try:
        return entry.is_dir(follow_symlinks=True)
    except OSError:
        return False


def _is_file(entry: os.DirEntry) -> bool:
    """``entry.is_file()``, False for a link loop or anything unreadable (never raises)."""
    try:
        return entry.is_file(follow_symlinks=True)
    except OSError:
        return False


def _sorted_entries(folder: Path, skipped: list[Skipped] | None = None) -> list[os.DirEntry]:
    """Non-hidden entries of ``folder`` by name; an unreadable folder is recorded in ``skipped``."""
    try:
        with os.scandir(folder) as it:
            return sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)
    except OSError as exc:
        _skip(skipped, str(folder), f"unreadable folder ({exc.strerror or exc})")
        return []


def _files_below(
    folder: Path, skipped: list[Skipped] | None = None, _seen: set[tuple[int, int]] | None = None
) -> Iterator[Path]:
    """Every non-hidden regular file below ``folder``, in sorted (deterministic) order.

    Folder links are followed once: a link back to a folder already walked (a loop) is
    recorded in ``skipped`` and not entered again, as are unreadable folders and entries
    that are neither files nor folders (FIFOs, sockets, devices, broken links).
    """
    seen = set() if _seen is None else _seen
    try:
        info = folder.stat()
    except OSError as exc:
        _skip(skipped, str(folder), f"unreadable folder ({exc.strerror or exc})")
        return
    if (info.st_dev, info.st_ino) in seen:
        _skip(skipped, str(folder), "link to a folder already walked (a loop)")
        return
    seen.add((info.st_dev, info.st_ino))
    for entry in _sorted_entries(folder, skipped):
        try:
            is_dir = entry.is_dir(follow_symlinks=True)
            is_file = not is_dir and entry.is_file(follow_symlinks=True)
        except OSError:
            is_dir = is_file = False
        if is_dir:
            yield from _files_below(Path(entry.path), skipped, seen)
        elif is_file:
            yield Path(entry.path)
        else:
            _skip(skipped, entry.path, "not a regular file (FIFO, socket, device or broken link)")
