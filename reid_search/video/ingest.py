"""From camera video to person crops with tracklets, camera and time: the records a gallery indexes.

For each video: frames are decoded ahead on a thread, a person detector looks at every
``detect_every``-th frame, ByteTrack (the ``trackers`` package) links the boxes into
tracks, and every box tall and confident enough becomes a JPEG crop under the gallery's
``crops/VIDEO/tTTTTT/fFFFFFF.jpg``. A finished track shorter than ``min_track_length`` crops
is dropped. Each crop becomes an unlabelled :class:`~reid_search.data.layouts.ImageRecord`
whose tracklet is the track, whose frame is the video frame, whose time is ``start_time``
(or the video's own creation time) plus the frame's timestamp, and whose ``extra`` points
back at the video (file, frame, box, seconds).

Resumable: a video's crops count only once its ``video.json`` is written (last); a video
interrupted midway is cut again from the start (same detector, same crops), so a killed
build never indexes duplicate tracklets. A corrupt or truncated video keeps what was
decoded and records where it stopped.

Usage::

    options = VideoOptions(detector="benchmarks/detectors/person-detection-0202.card.json")
    cut = cut_video("cam3.mp4", Path("indexes/g/crops"), options, number=0)
    len(cut.records), cut.tracklets
"""

from __future__ import annotations

import hashlib
import io
import json
import queue
import shutil
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from PIL import Image

from .._files import file_sha256, write_json_atomic
from ..data.layouts import CAMERA_FOLDER, KIND_UNLABELLED, ImageRecord
from .decode import open_frames

COUNTS = ("frames", "frames_detected", "detections", "tracklets", "dropped_tracklets")
TRACKLETS_PER_VIDEO = 100_000  # tracklet numbers: video number x this + the video's own track id


@dataclass(frozen=True)
class VideoOptions:
    detector: str  # a detector card (reid_search.video.detectors)
    detect_every: int = 1
    min_box_height: int = 64
    min_confidence: float = 0.5
    min_track_length: int = 3
    camera: int | None = None  # default: cam3 / c3 / camera_3 in the file name
    start_time: str | None = None  # ISO 8601 of the first frame; default: the video's creation time
    fps: float = 10.0  # frame folders only
    lost_seconds: float = 2.0  # a track unseen this long ends

    def recipe(self) -> dict:
        """What decides the crops (a video cut with another recipe is cut again)."""
        keep = ("detector", "detect_every", "min_box_height", "min_confidence", "min_track_length", "fps")
        return {k: v for k, v in asdict(self).items() if k in keep}


@dataclass
class VideoCut:
    """One video's crops and what happened while cutting it."""

    video: str
    key: str
    records: list[ImageRecord] = field(default_factory=list)
    frames: int = 0
    frames_detected: int = 0
    detections: int = 0
    tracklets: int = 0
    dropped_tracklets: int = 0
    stopped: str | None = None
    seconds: float = 0.0  # wall seconds cutting it
    video_seconds: float = 0.0  # how long the video plays
    reused: bool = False


def video_key(path: str | Path) -> str:
    """A folder name for a video's crops: its stem and a short hash of its full path."""
    path = Path(path).resolve()
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:8]
    stem = "".join(c if c.isalnum() or c in "-_" else "-" for c in path.stem)[:40] or "video"
    return f"{stem}-{digest}"


def camera_of(path: str | Path, given: int | None) -> int | None:
    """``given``, else a camera number written in the file or folder name (cam3, c3, camera_3)."""
    if given is not None:
        return given
    for part in (Path(path).stem, *(p.name for p in Path(path).parents[:2])):
        for token in part.replace(".", "_").split("_"):
            m = CAMERA_FOLDER.match(token)
            if m:
                return int(m.group(1))
    return None


def _source_facts(path: Path) -> dict:
    info = path.stat()
    return {"size": info.st_size, "mtime_ns": info.st_mtime_ns}


def _crop_jpeg(pixels: np.ndarray, box: np.ndarray) -> bytes:
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    out = io.BytesIO()
    Image.fromarray(pixels[y0:y1, x0:x1]).save(out, "JPEG", quality=90)
    return out.getvalue()


class _Tracks:
    """ByteTrack over the detected frames; crops buffered per track until the track ends."""

    def __init__(self, fps: float, options: VideoOptions):
        from ..errors import require_extra

        ByteTrackTracker = require_extra("trackers", "video", "tracking people in video").ByteTrackTracker

        self.options = options
        self.tracker = ByteTrackTracker(
            lost_track_buffer=max(1, int(options.lost_seconds * fps / options.detect_every)),
            frame_rate=fps / options.detect_every,
            track_activation_threshold=options.min_confidence,
        )
        self.open: dict[int, list[tuple[int, float, np.ndarray, float, bytes]]] = {}
        self.last_seen: dict[int, float] = {}

    def update(self, frame, boxes) -> list[list]:
        """Feed one detected frame; returns the tracks that ended (unseen for ``lost_seconds``)."""
        import supervision as sv

        detections = sv.Detections(xyxy=boxes.xyxy.astype(np.float32), confidence=boxes.scores)
        tracked = self.tracker.update(detections, timestamp=frame.time)
        for box, score, track in zip(tracked.xyxy, tracked.confidence, tracked.tracker_id, strict=True):
            if track < 0 or score < self.options.min_confidence:
                continue
            if box[3] - box[1] < self.options.min_box_height or box[2] - box[0] < 8:
                continue
            crop = _crop_jpeg(frame.pixels, box)
            self.open.setdefault(int(track), []).append((frame.index, frame.time, box, float(score), crop))
            self.last_seen[int(track)] = frame.time
        ended = [t for t, seen in self.last_seen.items() if frame.time - seen > self.options.lost_seconds]
        return [self._close(t) for t in ended]

    def _close(self, track: int) -> list:
        self.last_seen.pop(track, None)
        return [track, self.open.pop(track, [])]

    def close_all(self) -> list[list]:
        return [self._close(t) for t in list(self.open)]


def _frames_ahead(source, size: int = 8):
    """Decode on a thread, ``size`` frames ahead of detection."""
    buffer: queue.Queue = queue.Queue(size)
    done = object()

    def work():
        try:
            for frame in source.frames():
                buffer.put(frame)
        finally:
            buffer.put(done)

    threading.Thread(target=work, name="reid-decode", daemon=True).start()
    while (item := buffer.get()) is not done:
        yield item


def cut_video(
    path: str | Path, crops_root: Path, options: VideoOptions, number: int, detector=None
) -> VideoCut:
    """Detect, track and crop the people of one video (or frame folder) into ``crops_root``."""
    from .detectors import open_detector

    path = Path(path).resolve()
    key = video_key(path)
    folder = crops_root / key
    marker = folder / "video.json"
    facts = {"source": str(path), **_source_facts(path), "recipe": options.recipe()}
    if marker.is_file():
        saved = json.loads(marker.read_text())
        if {k: saved.get(k) for k in facts} == facts:
            cut = VideoCut(str(path), key, [ImageRecord(**r) for r in saved["records"]], reused=True)
            for name in (
                "frames",
                "frames_detected",
                "detections",
                "tracklets",
                "dropped_tracklets",
                "stopped",
            ):
                setattr(cut, name, saved[name])
            cut.video_seconds = saved.get("video_seconds", 0.0)
            return cut
    shutil.rmtree(folder, ignore_errors=True)  # a half cut (or another recipe): cut again
    started = time.perf_counter()
    detector = detector or open_detector(options.detector)
    source = open_frames(path, options.fps)
    fps = source.fps or options.fps
    tracks = _Tracks(fps, options)
    start = _start_time(options.start_time, source.created)
    cut = VideoCut(str(path), key)
    camera = camera_of(path, options.camera)
    identity = (
        {"video_size": path.stat().st_size, "video_sha256": file_sha256(path)} if path.is_file() else {}
    )
    finished: list[list] = []
    last_time = 0.0
    for frame in _frames_ahead(source):
        cut.frames += 1
        last_time = frame.time
        if frame.index % options.detect_every:
            continue
        boxes = detector.detect([frame.pixels], min_score=0.1)[0]
        cut.frames_detected += 1
        cut.detections += int((boxes.scores >= options.min_confidence).sum())
        finished += tracks.update(frame, boxes)
    finished += tracks.close_all()
    cut.stopped = source.stopped
    cut.video_seconds = last_time + 1.0 / fps
    for track, crops in sorted(finished, key=lambda t: t[1][0][0] if t[1] else 0):
        if len(crops) < options.min_track_length:
            cut.dropped_tracklets += bool(crops)
            continue
        cut.tracklets += 1
        tracklet = number * TRACKLETS_PER_VIDEO + cut.tracklets
        for index, seconds, box, score, jpeg in crops:
            target = folder / f"t{cut.tracklets:05d}" / f"f{index:06d}.jpg"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(jpeg)
            extra = {
                "video": str(path),
                "frame": index,
                "box": [int(round(v)) for v in box],
                "video_time": round(seconds, 3),
                "detector_score": round(score, 3),
                "track": track,
                **identity,
            }
            when = (start + timedelta(seconds=seconds)).isoformat(timespec="milliseconds") if start else None
            cut.records.append(
                ImageRecord(
                    str(target), None, camera, tracklet, index, key, KIND_UNLABELLED, when, json.dumps(extra)
                )
            )
    cut.seconds = time.perf_counter() - started
    summary = {
        **facts,
        **{
            k: getattr(cut, k)
            for k in ("frames", "frames_detected", "detections", "tracklets", "dropped_tracklets")
        },
        "stopped": cut.stopped,
        "video_seconds": cut.video_seconds,
        "records": [asdict(r) for r in cut.records],
    }
    folder.mkdir(parents=True, exist_ok=True)
    write_json_atomic(marker, summary)  # last: the crops count from now on
    return cut


def _start_time(given: str | None, created: datetime | None) -> datetime | None:
    from ..data.metadata import parse_time

    if given:
        return datetime.fromisoformat(parse_time(given))
    if created is not None:
        return datetime.fromisoformat(parse_time(created.isoformat()))
    return None


def video_numbers(crops_root: Path, videos: list[Path]) -> dict[str, int]:
    """A stable number per video of a gallery (``crops/videos.json``, append-only): tracklet
    numbers of different videos never collide."""
    registry_file = crops_root / "videos.json"
    registry = json.loads(registry_file.read_text()) if registry_file.is_file() else {}
    for video in videos:
        registry.setdefault(video_key(video), len(registry) + 1)
    crops_root.mkdir(parents=True, exist_ok=True)
    write_json_atomic(registry_file, registry)
    return registry
