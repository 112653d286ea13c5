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
