"""Where and when an image was taken, and anything else known about it.

Two sources, applied to a dataset scan's records (:func:`apply_metadata`):

* a file-name pattern (``--name-pattern``): a regular expression searched in each file
  name; a ``(?P<cam>...)`` group gives the camera, ``(?P<time>...)`` the time, any other
  named group is kept as extra metadata (``(?P<site>...)``);
* a CSV sidecar (``--metadata FILE.csv``): a ``path`` column (relative to the dataset
  folder, or absolute) plus any columns; ``camera``, ``time`` (or ``timestamp``) and
  ``tracklet`` (the crops a tracker linked, one passage; an opaque id) are read as such,
  the rest is kept as extra metadata. The CSV wins over the file name.

Times are stored as ISO 8601 text (``2026-11-25T10:15:02``), so SQLite compares them in
order; :func:`parse_time` reads the usual spellings.

Usage::

    >>> parse_time("20261125_101502"), parse_time("2026-11-25 10:15")
    ('2026-11-25T10:15:02', '2026-11-25T10:15:00')
    >>> pattern = compile_name_pattern(r"cam(?P<cam>\\d+)_(?P<time>\\d{8}T\\d{6})")
    >>> name_metadata("cam3_20261125T101502_0007.jpg", pattern)
    Metadata(camera=3, time='2026-11-25T10:15:02', extra={}, tracklet=None)
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

from ..errors import InputError

TIME_COLUMNS = ("time", "timestamp", "datetime")
CAMERA_COLUMNS = ("camera", "cam")
TRACKLET_COLUMNS = ("tracklet", "track")
PATH_COLUMNS = ("path", "file")
_LOOSE_TIME = re.compile(  # 20261125_101502, 2026-11-25_10-15-02.5, 2026.11.25 10.15
    r"^(\d{4})[-_.]?(\d{2})[-_.]?(\d{2})"
    r"(?:[T_ -]?(\d{2})[-_:.]?(\d{2})(?:[-_:.]?(\d{2})(?:[.,](\d{1,6}))?)?)?$"
)


class MetadataError(InputError):
    """A name pattern, a CSV sidecar or a time that cannot be read."""


@dataclass(frozen=True)
class Metadata:
    camera: int | None = None
    time: str | None = None
    extra: dict[str, str] = field(default_factory=dict)
    tracklet: int | None = None


def parse_time(text: str) -> str:
    """A time as ISO 8601 text (seconds, microseconds when given); aware times become UTC.

    Reads ISO 8601, ``YYYYMMDD[_-T]HHMMSS`` and the like, and Unix seconds (10 digits) or
    milliseconds (13 digits).

    >>> parse_time("1764065702")
    '2025-11-25T10:15:02'
    """
    value = str(text).strip()
    if value.isdigit() and len(value) in (10, 13):
        seconds = int(value) / (1000 if len(value) == 13 else 1)
        moment = datetime.fromtimestamp(seconds, timezone.utc).replace(tzinfo=None)
    else:
        moment = _parse_calendar_time(value)
    if moment.tzinfo is not None:
        try:
            moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
        except (OverflowError, ValueError):
            raise MetadataError(f"time {value[:40]!r} is outside the calendar once in UTC") from None
    return moment.isoformat(timespec="microseconds" if moment.microsecond else "seconds")


def _parse_calendar_time(value: str) -> datetime:
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        pass
    m = _LOOSE_TIME.match(value)
    if not m:
        raise MetadataError(f"cannot read a time from {value[:40]!r} (use e.g. 2026-11-25T10:15:02)")
    year, month, day, hour, minute, second, fraction = m.groups()
    try:
        return datetime(
            int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0),
            int((fraction or "0").ljust(6, "0")),
        )  # fmt: skip
    except ValueError as exc:
        raise MetadataError(f"cannot read a time from {value!r} ({exc})") from None


def compile_name_pattern(pattern: str | None) -> re.Pattern[str] | None:
    """Compile ``--name-pattern``: named groups (``cam``, ``time``, others), or one plain
    group read as the camera (the older ``--camera-pattern`` form)."""
    if not pattern:
        return None
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise MetadataError(f"--name-pattern {pattern!r}: {exc}") from exc
    if not compiled.groupindex and compiled.groups != 1:
        example = r"cam(?P<cam>\d+)_(?P<time>\d{8}T\d{6})"
        raise MetadataError(f"--name-pattern {pattern!r}: needs named groups, e.g. '{example}'")
    return compiled


def _camera(value: str, where: str, what: str = "camera") -> int:
    try:
        return int(str(value).strip())
    except ValueError:
        raise MetadataError(f"{where}: {what} {value!r} is not a whole number") from None


def tracklet_id(text: str) -> int:
    """A tracker's tracklet id as a whole number: itself when it is one, else a stable 60-bit
    hash of the text (ids are opaque; the same text is always the same tracklet).

    >>> tracklet_id("17"), tracklet_id("t-8c") == tracklet_id("t-8c"), tracklet_id("a") != tracklet_id("b")
    (17, True, True)
    """
    import hashlib

    text = str(text).strip()
    if text.isdigit() and len(text) <= 18:
        return int(text)
    return int(hashlib.sha256(text.encode()).hexdigest()[:15], 16)


def name_metadata(name: str, pattern: re.Pattern[str]) -> Metadata | None:
    """What ``pattern`` reads from a file name, or None when it does not match."""
    m = pattern.search(Path(name).name)
    if not m:
        return None
    groups = m.groupdict() if pattern.groupindex else {"cam": m.group(1)}
    camera = groups.pop("cam", None)
    time = groups.pop("time", None)
    where = f"{name}: --name-pattern"
    return Metadata(
        camera=_camera(camera, where) if camera is not None else None,
        time=parse_time(time) if time is not None else None,
        extra={k: v for k, v in groups.items() if v is not None},
    )


def _pick(header: Sequence[str], choices: Sequence[str]) -> str | None:
    return next((c for c in header if c.strip().lower() in choices), None)


def read_metadata_csv(csv_file: str | Path, root: str | Path) -> dict[str, Metadata]:
    """Resolved image path -> its metadata, from a CSV with a ``path`` column."""
    csv_file, root = Path(csv_file), Path(root)
    try:
        with csv_file.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            header = reader.fieldnames or []
            path_col = _pick(header, PATH_COLUMNS)
            if path_col is None:
                raise MetadataError(f"{csv_file}: no 'path' column (columns: {', '.join(header) or 'none'})")
            camera_col, time_col = _pick(header, CAMERA_COLUMNS), _pick(header, TIME_COLUMNS)
            tracklet_col = _pick(header, TRACKLET_COLUMNS)
            read = (path_col, camera_col, time_col, tracklet_col)
            table: dict[str, Metadata] = {}
            for line, row in enumerate(reader, start=2):
                where = f"{csv_file} line {line}"
                if not (row.get(path_col) or "").strip():
                    raise MetadataError(f"{where}: empty path")
                path = Path(row[path_col].strip())
                path = (path if path.is_absolute() else root / path).resolve()
                camera, time = row.get(camera_col or "", "") or "", row.get(time_col or "", "") or ""
                try:
                    parsed_time = parse_time(time) if time.strip() else None
                except MetadataError as exc:
                    raise MetadataError(f"{where}: {exc}") from None
                tracklet = (row.get(tracklet_col or "", "") or "").strip()
                table[str(path)] = Metadata(
                    camera=_camera(camera, where) if camera.strip() else None,
                    time=parsed_time,
                    extra={k: v for k, v in row.items() if k not in read and v},
                    tracklet=tracklet_id(tracklet) if tracklet else None,
                )
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise MetadataError(f"{csv_file}: cannot read ({exc})") from None
    return table


def _merge(record, found: Metadata):
    extra = {**json.loads(record.extra or "{}"), **found.extra}
    return replace(
        record,
        camera=found.camera if found.camera is not None else record.camera,
        tracklet=found.tracklet if found.tracklet is not None else record.tracklet,
        time=found.time or record.time,
        extra=json.dumps(extra, sort_keys=True) if extra else None,
    )


def apply_metadata(records: list, pattern: re.Pattern[str] | None = None, table: dict | None = None):
    """``records`` with camera, time and extra metadata filled in; returns (records, CSV
    paths that name no record)."""
    out = []
    for record in records:
        if pattern is not None:
            found = name_metadata(record.path, pattern)
            if found is not None:
                record = _merge(record, found)
        if table:
            found = table.get(str(Path(record.path).resolve()))
            if found is not None:
                record = _merge(record, found)
        out.append(record)
    unmatched = sorted(set(table or {}) - {str(Path(r.path).resolve()) for r in records})
    return out, unmatched
