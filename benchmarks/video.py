"""Benchmark: person detection, tracking and video indexing speed, for each detector card.

* Detection on the 28 ``video/mot17-mini`` frames (7 MOT17 sequences x 4 frames): recall and
  precision against pedestrians with visibility >= 0.5 at IoU >= 0.5, detector confidence
  >= 0.5; boxes matching an ignored ground truth (other classes, low visibility) are not
  counted as false positives. Also frame 1 only, as ``../shared/peers/detectors/README.md``
  measured it.
* Tracking on the same frames: ByteTrack over each sequence's 4 frames, scored with
  ``motmetrics`` (IDF1, identity switches, MOTA) against the visible pedestrians.
* End to end on the Intel sample video (139 s at 10 fps): ``reid-search index`` work in
  process (decode, detect, track, crop, embed, index), detector on every frame and on every
  2nd frame: video seconds per wall second, frames/s, crops/s.

    python benchmarks/video.py [--detector CARD ...] [--runs 1]

Writes ``benchmarks/results/video.json``. Time it on an idle machine.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import DATA, REPO, write_result

from reid_search.embedding.embedder import Embedder
from reid_search.gallery.from_video import build_video_gallery
from reid_search.video.detectors import open_detector
from reid_search.video.ingest import VideoOptions

VIDEO = DATA.parent / "video"
CARDS = sorted((REPO / "benchmarks" / "detectors").glob("*.card.json"))  # person-detection-0202 first
FIGURE = REPO / "docs" / "images" / "video-tracklets.png"


def load_gt(sequence: Path) -> np.ndarray:
    """gt.txt rows: frame, id, left, top, width, height, conf, class, visibility."""
    return np.loadtxt(sequence / "gt" / "gt.txt", delimiter=",", ndmin=2)


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix of xyxy boxes."""
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = lambda r: (r[:, 2] - r[:, 0]) * (r[:, 3] - r[:, 1])  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None, :] - inter, 1e-9)


def frame_truth(gt: np.ndarray, frame: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(xyxy of counted pedestrians, their ids, xyxy of ignored boxes) in one frame."""
    rows = gt[gt[:, 0] == frame]
    counted = (rows[:, 7] == 1) & (rows[:, 6] > 0) & (rows[:, 8] >= 0.5)
    xyxy = np.c_[rows[:, 2:4], rows[:, 2:4] + rows[:, 4:6]]
    return xyxy[counted], rows[counted, 1].astype(int), xyxy[~counted]


def detection_scores(detector, frames_per_sequence: int) -> dict:
    from scipy.optimize import linear_sum_assignment

    from reid_search.video.decode import FolderFrames

    found = truth = false = 0
    seconds = []
    for sequence in sorted(VIDEO.glob("mot17-mini/*/")):
        gt = load_gt(sequence)
        for frame in FolderFrames(sequence / "img1").frames():
            if frame.index >= frames_per_sequence:
                break
            index, pixels = frame.index + 1, frame.pixels  # gt.txt counts frames from 1
            started = time.perf_counter()
            boxes = detector.detect([pixels], min_score=0.5)[0]
            seconds.append(time.perf_counter() - started)
            counted, _, ignored = frame_truth(gt, index)
            truth += len(counted)
            matched = np.zeros(len(boxes), bool)
            if len(counted) and len(boxes):
                overlap = iou(counted, boxes.xyxy)
                rows, cols = linear_sum_assignment(-overlap)
                good = overlap[rows, cols] >= 0.5
                found += int(good.sum())
                matched[cols[good]] = True
            if len(ignored) and (~matched).any():
                matched[~matched] = iou(boxes.xyxy[~matched], ignored).max(axis=1) >= 0.5
            false += int((~matched).sum())
    return {
        "ground_truth": truth,
        "found": found,
        "recall": round(found / max(truth, 1), 4),
        "precision": round(found / max(found + false, 1), 4),
        "false_positives": false,
        "ms_per_frame": round(1000 * float(np.median(seconds)), 1),
    }


def tracking_scores(card: Path) -> dict:
    import motmetrics as mm

    from reid_search.video.decode import FolderFrames
    from reid_search.video.ingest import _Tracks

    detector = open_detector(card)
    accumulators, names = [], []
    for sequence in sorted(VIDEO.glob("mot17-mini/*/")):
        gt = load_gt(sequence)
        source = FolderFrames(sequence / "img1", fps=30.0)
        options = VideoOptions(str(card), min_box_height=0, min_track_length=1)
        tracks = _Tracks(30.0, options)
        acc = mm.MOTAccumulator(auto_id=True)
        for frame in source.frames():
            boxes = detector.detect([frame.pixels], min_score=0.1)[0]
            tracked = tracks.tracker.update(_as_detections(boxes), timestamp=frame.time)
            keep = (tracked.tracker_id >= 0) & (tracked.confidence >= options.min_confidence)
            counted, ids, _ = frame_truth(gt, frame.index + 1)
            hyp = tracked.xyxy[keep]
            dist = 1 - iou(counted, hyp) if len(counted) and len(hyp) else np.zeros((len(counted), len(hyp)))
            dist[dist > 0.5] = np.nan
            acc.update(ids.tolist(), tracked.tracker_id[keep].tolist(), dist)
        accumulators.append(acc)
        names.append(sequence.name)
    metrics = mm.metrics.create().compute_many(
        accumulators,
        metrics=["idf1", "num_switches", "mota", "num_frames"],
        names=names,
        generate_overall=True,
    )
    overall = metrics.loc["OVERALL"]
    return {
        "idf1": round(float(overall["idf1"]), 4),
        "id_switches": int(overall["num_switches"]),
        "mota": round(float(overall["mota"]), 4),
        "frames": int(overall["num_frames"]),
    }


def _as_detections(boxes):
    import supervision as sv

    return sv.Detections(xyxy=boxes.xyxy.astype(np.float32), confidence=boxes.scores)


def end_to_end(card: Path, detect_every: int, embedder: Embedder, figure: Path | None = None) -> dict:
    video = VIDEO / "intel-sample" / "one-by-one-person-detection.mp4"
    work = Path(tempfile.mkdtemp(prefix="reid-video-bench-"))
    try:
        started = time.perf_counter()
        gallery, report, cuts = build_video_gallery(
            [video], "intel", embedder, VideoOptions(str(card), detect_every=detect_every),
            indexes_dir=work, progress=False,
        )  # fmt: skip
        seconds = time.perf_counter() - started
        if figure is not None:
            draw_figure(gallery, embedder, figure)
        gallery.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    (cut,) = cuts
    return {
        "detect_every": detect_every,
        "video_seconds": round(cut.video_seconds, 2),
        "wall_seconds": round(seconds, 2),
        "realtime_factor": round(cut.video_seconds / seconds, 2),
        "frames_per_s": round(cut.frames / seconds, 1),
        "crops": len(cut.records),
        "crops_per_s": round(len(cut.records) / seconds, 1),
        "tracklets": cut.tracklets,
    }


def draw_figure(gallery, embedder: Embedder, out: Path) -> None:
    """docs/indexing.md picture: one frame of each tracklet with its box and id; a query crop cut from a
    frame the detector skipped (not in the gallery) and the tracklets it is answered by."""
    import json

    from PIL import Image, ImageDraw

    from reid_search.search.service import QueryOptions, answer_query
    from reid_search.video.clips import draw_box
    from reid_search.video.decode import open_frames

    rows = sorted(gallery.rows().values(), key=lambda r: r["frame"])
    by_track: dict[int, list[dict]] = {}
    for row in rows:
        by_track.setdefault(row["tracklet"], []).append(row)
    probe_row = by_track[sorted(by_track)[2]][5]
    probe_frame = probe_row["frame"] + 1  # detected every 2nd frame: this one is not in the gallery
    wanted = {}
    for track, members in by_track.items():
        middle = members[len(members) // 2]
        wanted[middle["frame"]] = (track, json.loads(middle["extra"])["box"])
    pictures, probe = {}, out.with_name("video-probe.jpg")
    for frame in open_frames(json.loads(rows[0]["extra"])["video"]).frames():
        if frame.index == probe_frame:
            Image.fromarray(frame.pixels).crop(json.loads(probe_row["extra"])["box"]).save(probe)
        if frame.index in wanted:
            track, box = wanted[frame.index]
            pictures[track] = draw_box(Image.fromarray(frame.pixels), box, f"tracklet {track % 100000}")
    tiles = [pictures[t].resize((384, 216)) for t in sorted(pictures)]
    result = answer_query(gallery, embedder, [probe], QueryOptions(top_k=3, matches=1))
    sheet = Image.new("RGB", (3 * 384, 2 * 216 + 190), "white")
    for i, tile in enumerate(tiles[:6]):
        sheet.paste(tile, ((i % 3) * 384, (i // 3) * 216))
    draw = ImageDraw.Draw(sheet)
    y = 2 * 216 + 8
    draw.text((8, y), "query crop", fill="black")
    sheet.paste(Image.open(probe).convert("RGB").resize((70, 160)), (8, y + 16))
    for k, hit in enumerate(result.identities):
        m = hit.matches[0]
        x = 140 + k * 330
        label = f"#{hit.rank} tracklet {m.tracklet % 100000}  cos {m.similarity:.2f}  frame {m.frame}"
        draw.text((x, y), label, fill="black")
        sheet.paste(Image.open(m.path).convert("RGB").resize((70, 160)), (x, y + 16))
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    probe.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detector", action="append", type=Path, help="detector card(s) [default: all]")
    args = parser.parse_args()
    embedder = Embedder()
    embedder.embed_files(sorted((DATA / "mars-samples").glob("*.jpg")))  # warm-up
    rows = []
    for card in args.detector or CARDS:
        detector = open_detector(card)
        row = {
            "detector": detector.card.name,
            "card": str(card.relative_to(REPO)) if card.is_relative_to(REPO) else str(card),
            "detection_all_frames": detection_scores(detector, 4),
            "detection_frame_1": detection_scores(detector, 1),
            "tracking": tracking_scores(card),
            "end_to_end": [
                end_to_end(card, every, embedder, FIGURE if (every == 2 and card == CARDS[0]) else None)
                for every in (1, 2)
            ],
        }
        rows.append(row)
        d, t = row["detection_all_frames"], row["tracking"]
        print(
            f"{row['detector']:<24} recall {d['recall']:.3f} precision {d['precision']:.3f} "
            f"({d['found']}/{d['ground_truth']}, {d['ms_per_frame']} ms/frame) | IDF1 {t['idf1']:.3f} "
            f"ID switches {t['id_switches']}"
        )
        for e in row["end_to_end"]:
            print(
                f"   every {e['detect_every']} frame(s): {e['realtime_factor']:.2f}x real time, "
                f"{e['frames_per_s']:.0f} frames/s, {e['crops_per_s']:.0f} crops/s, "
                f"{e['tracklets']} tracklets"
            )
    write_result("video", {"rows": rows})


if __name__ == "__main__":
    main()
