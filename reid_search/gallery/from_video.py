"""Build (or grow) a gallery from camera video: cut person tracklets, then index their crops.

The crops live under the gallery (``NAME/crops/``, see :mod:`reid_search.video.ingest`);
the gallery then indexes them like any folder of unlabelled crops, at image or tracklet
level, resumably. A file that is not a video is skipped and recorded; a video that stops
decoding early keeps what was cut and records where it stopped.

Usage::

    options = VideoOptions(detector="person-detection-0202.card.json")
    gallery, report, cuts = build_video_gallery(["cam3.mp4"], "lobby", options=options)
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from ..data.layouts import DatasetScan, Skipped
from ..video.decode import VideoError, is_video
from ..video.ingest import VideoCut, VideoOptions, cut_video, video_key, video_numbers
from .build import BuildReport, build_gallery
from .store import MANIFEST_FILE, Gallery, GalleryError, check_gallery_name, default_indexes_dir

CROPS_FOLDER = "crops"


def build_video_gallery(
    videos: Sequence[str | Path],
    name: str,
    embedder=None,
    options: VideoOptions | None = None,
    *,
    level: str = "image",
    indexes_dir: str | Path | None = None,
    frames_per_tracklet: int | None = 32,
    progress: bool = True,
    index_type: str | None = None,
    rebuild: bool = False,
    frame_folders: bool = False,
    log=lambda line: None,
    attributes: bool | None = None,
) -> tuple[Gallery, BuildReport, list[VideoCut]]:
    """Cut every video (or frame folder with ``frame_folders``) and index the crops into ``name``."""
    if options is None:
        raise GalleryError("no person detector given (--detector CARD.json)")
    from ..video.decode import require_av

    require_av()  # a missing [video] extra is named before anything is written
    base = Path(indexes_dir) if indexes_dir else default_indexes_dir()
    path = base / check_gallery_name(name)
    if rebuild and (path / MANIFEST_FILE).is_file():
        raise GalleryError(
            f"{path}: --rebuild is not offered for video galleries (their crops live inside); "
            "index into a new --name instead"
        )
    crops_root = path / CROPS_FOLDER
    skipped: list[Skipped] = []
    usable: list[Path] = []
    for video in map(Path, videos):
        if frame_folders and video.is_dir() or not frame_folders and video.is_file() and is_video(video):
            usable.append(video)
        else:
            skipped.append(Skipped(str(video), "not a video file" if not frame_folders else "not a folder"))
    if not usable:
        raise GalleryError("no video to index: " + "; ".join(f"{s.path}: {s.reason}" for s in skipped))
    from ..video.detectors import open_detector

    detector = open_detector(options.detector)  # a missing runtime is named before anything is written
    numbers = video_numbers(crops_root, usable)
    cuts: list[VideoCut] = []
    for video in usable:
        try:
            cut = cut_video(video, crops_root, options, numbers[video_key(video)], detector)
        except VideoError as exc:
            skipped.append(Skipped(str(video), str(exc).split(": ", 1)[-1]))
            continue
        cuts.append(cut)
        if cut.stopped:
            skipped.append(Skipped(str(video), cut.stopped))
        log(_cut_line(cut))
    records = [r for c in cuts for r in c.records]
    if not records and not (path / MANIFEST_FILE).is_file():  # nothing to index: leave no empty gallery
        shutil.rmtree(path, ignore_errors=True)
        reasons = "; ".join(f"{s.path}: {s.reason}" for s in skipped) or "no person found in any video"
        raise GalleryError(f"no gallery written: {reasons}")
    scan = DatasetScan(str(crops_root), "video", records, skipped)
    gallery, report = build_gallery(
        scan, path.name, embedder, level=level, indexes_dir=base, frames_per_tracklet=frames_per_tracklet,
        progress=progress, index_type=index_type, attributes=attributes,
    )  # fmt: skip
    return gallery, report, cuts


def _cut_line(cut: VideoCut) -> str:
    how = (
        "already cut"
        if cut.reused
        else f"{cut.seconds:.1f} s, {cut.video_seconds / max(cut.seconds, 1e-9):.1f}x real time"
    )
    return (
        f"video {Path(cut.video).name}: {cut.frames} frames ({cut.frames_detected} detected), "
        f"{cut.tracklets} tracklets, {len(cut.records)} crops ({how})"
    )
