"""An evidence bundle of a journey, and its verification.

``write_bundle`` puts into one zip: the query image(s), every visit's crops, the frame of each
visit's best crop with its box drawn (entries cut from video, when the video is still the one
indexed), ``journey.json`` (the trace), ``report.html`` (self-contained: the images inline)
and ``manifest.json``: the SHA-256 of every file in the bundle, of every source image and video
as it is now, the model card's hash and the exact settings. ``manifest.sha256`` holds the
manifest's own hash. ``verify_bundle`` re-checks every hash (and the sources where they still
are) and says what changed.

Usage::

    from reid_search.journeys.bundle import verify_bundle, write_bundle
    write_bundle(journey, "case-17.zip")
    verify_bundle("case-17.zip").problems      # [] when nothing changed
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from ..errors import InputError
from .trace import Journey

BUNDLE_SCHEMA = "reid-search/bundle/v1"


class BundleError(InputError):
    """A bundle that cannot be written (its path exists) or read (not a bundle)."""


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read(path: str | Path) -> bytes | None:
    try:
        return Path(path).read_bytes()
    except OSError:
        return None


def write_bundle(journey: Journey, out: str | Path) -> Path:
    """Write ``journey``'s evidence to the zip ``out`` (refused if it exists; written to a
    temporary file renamed at the end, so a half bundle never has the name)."""
    out = Path(out)
    if out.exists():
        raise BundleError(f"{out}: already exists; a bundle is never overwritten (choose another path)")
    files: dict[str, str] = {}
    sources: dict[str, str] = {}
    notes: list[str] = []
    tmp = out.with_name(f".{out.name}.part")
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as bundle:

        def add(name: str, data: bytes) -> None:
            bundle.writestr(name, data)
            files[name] = _sha(data)

        for n, image in enumerate(journey.images, start=1):
            data = _read(image)
            if data is None:
                notes.append(f"query image {image} is no longer readable")
                continue
            add(f"query/{n:02d}-{Path(image).name}", data)
            sources[str(image)] = _sha(data)
        pictures: list[tuple[str, bytes | None]] = []
        for v, visit in enumerate(journey.visits, start=1):
            for e, entry in enumerate(sorted(visit.entries, key=lambda x: (x.time, x.faiss_id)), start=1):
                data = _read(entry.path)
                if data is None:
                    notes.append(f"visit {v}: crop {entry.path} is missing")
                    continue
                add(f"visits/{v:02d}/crop-{e:03d}{Path(entry.path).suffix or '.jpg'}", data)
                sources[entry.path] = _sha(data)
            frame = _frame_picture(visit, v, notes, sources)
            if frame is not None:
                add(f"visits/{v:02d}/frame.jpg", frame)
            caption = f"visit {v}: camera {visit.camera}, {visit.first.isoformat()}"
            pictures.append((caption, _read(visit.best.path)))
        trace = journey.to_dict()
        add("journey.json", json.dumps(trace, indent=2).encode())
        add("report.html", _report(journey, pictures, notes).encode())
        manifest = {
            "schema": BUNDLE_SCHEMA,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "gallery": journey.gallery,
            "model_sha256": journey.settings.get("model_sha256"),
            "settings": journey.settings,
            "files": files,
            "sources": sources,
            "notes": notes,
        }
        text = json.dumps(manifest, indent=2).encode()
        bundle.writestr("manifest.json", text)
        bundle.writestr("manifest.sha256", f"{_sha(text)}  manifest.json\n")
    tmp.replace(out)
    return out


def _frame_picture(visit, v: int, notes: list[str], sources: dict[str, str]) -> bytes | None:
    """The best crop's video frame with its box, when it was cut from a video still here."""
    best = visit.best
    video, box = best.extra.get("video"), best.extra.get("box")
    if not video or best.frame is None or not box:
        return None
    data = _read(video)
    if data is None:
        notes.append(f"visit {v}: video {video} is missing: its frame and clip are not in the bundle")
        return None
    sources[video] = _sha(data)
    try:
        from ..video.clips import frame_with_box

        picture = frame_with_box(video, int(best.extra.get("frame", best.frame)), box, f"visit {v}")
    except Exception as exc:  # noqa: BLE001 - a video that no longer decodes is noted, the rest written
        notes.append(f"visit {v}: frame of {video} unreadable ({type(exc).__name__})")
        return None
    buffer = io.BytesIO()
    picture.convert("RGB").save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def _report(journey: Journey, pictures: list[tuple[str, bytes | None]], notes: list[str]) -> str:
    """A self-contained page: the visits in order, each with its best crop inline."""
    rows = []
    for caption, data in pictures:
        inline = base64.b64encode(data).decode() if data else ""
        image = (
            f'<img alt="{html.escape(caption)}" src="data:image/jpeg;base64,{inline}">'
            if data
            else "(crop missing)"
        )
        rows.append(f"<tr><td>{html.escape(caption)}</td><td>{image}</td></tr>")
    moves = "".join(
        f"<li>camera {t['from_camera']} &rarr; {t['to_camera']}: {t['travel_seconds']:.0f} s</li>"
        for t in journey.transitions
    )
    note_items = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
    return (
        "<!doctype html><html lang=en><meta charset=utf-8><title>Journey</title>"
        "<style>body{font-family:sans-serif}img{height:128px}td{padding:4px 12px}</style>"
        f"<h1>Journey in gallery {html.escape(journey.gallery)}</h1>"
        f"<p>{len(journey.visits)} visit(s); query: {html.escape(', '.join(journey.images))}</p>"
        f"<table>{''.join(rows)}</table><h2>Camera changes</h2><ul>{moves}</ul>"
        + (f"<h2>Notes</h2><ul>{note_items}</ul>" if notes else "")
        + "</html>"
    )


@dataclass
class BundleCheck:
    """What ``verify_bundle`` found: ``problems`` lists every changed, missing or extra file
    and every source that changed or is gone (empty: the bundle is as written)."""

    files: int = 0
    sources_checked: int = 0
    problems: list[str] = field(default_factory=list)
    sources_gone: list[str] = field(default_factory=list)  # not a change of the bundle: said apart


def verify_bundle(path: str | Path) -> BundleCheck:
    """Re-check every hash of the bundle at ``path``, and its sources where they still are."""
    path = Path(path)
    try:
        bundle = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise BundleError(f"{path}: not a readable bundle ({exc})") from None
    check = BundleCheck()
    with bundle:
        names = set(bundle.namelist())
        if not {"manifest.json", "manifest.sha256"} <= names:
            raise BundleError(f"{path}: not a reid-search bundle (no manifest)")
        text = bundle.read("manifest.json")
        if bundle.read("manifest.sha256").decode(errors="replace").split()[:1] != [_sha(text)]:
            check.problems.append("manifest.json: changed (its hash is not the one recorded)")
        try:
            manifest = json.loads(text)
        except ValueError:
            check.problems.append("manifest.json: no longer readable JSON")
            return check
        for name, digest in manifest.get("files", {}).items():
            check.files += 1
            if name not in names:
                check.problems.append(f"{name}: missing from the bundle")
            elif _sha(bundle.read(name)) != digest:
                check.problems.append(f"{name}: changed")
        extra = names - set(manifest.get("files", {})) - {"manifest.json", "manifest.sha256"}
        check.problems += [f"{name}: not in the manifest (added)" for name in sorted(extra)]
    for source, digest in manifest.get("sources", {}).items():
        data = _read(source)
        if data is None:
            check.sources_gone.append(source)
            continue
        check.sources_checked += 1
        if _sha(data) != digest:
            check.problems.append(f"source {source}: changed since the bundle was made")
    return check
