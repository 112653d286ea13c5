"""From video to a searchable gallery, on the real Intel sample video and MOT17 frames.

The Intel sample (139 s, 10 fps) shows six visits, one person each, never two at once; we
counted them on a contact sheet of every 20th frame (frame ranges below, with the person
walking in from the bottom edge and out again): a grey cardigan, a dark hoodie, long
blonde hair, a black T-shirt, a grey patterned top, a grey shirt.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest
from typer.testing import CliRunner

from reid_search.cli import app
from reid_search.gallery import Gallery

from .conftest import REPO, shared_data

VISITS = [(50, 210), (220, 455), (500, 705), (740, 880), (915, 1205), (1230, 1370)]  # frames
DETECTOR = REPO / "benchmarks" / "detectors" / "person-detection-0202.card.json"
runner = CliRunner()


def intel_video() -> Path:
    return shared_data().parent / "video" / "intel-sample" / "one-by-one-person-detection.mp4"


def index_video(indexes: Path, name: str, *paths: str, extra: tuple[str, ...] = ()):
    args = ["index", *paths, "--name", name, "--indexes-dir", str(indexes), "--detector", str(DETECTOR)]
    return runner.invoke(app, [*args, "--detect-every", "2", "--camera", "3", "--quiet", "--json", *extra])


@pytest.fixture(scope="module")
def intel(tmp_path_factory) -> tuple[Path, dict]:
    indexes = tmp_path_factory.mktemp("video") / "indexes"
    result = index_video(indexes, "intel", str(intel_video()), extra=("--start-time", "2026-11-25T14:00:00"))
    assert result.exit_code == 0, result.output
    return indexes, json.loads(result.output[result.output.index("{") :])


def tracklets_of(indexes: Path, name: str) -> dict[int, list[int]]:
    with Gallery.open(indexes / name) as gallery:
        rows = gallery.rows().values()
    frames: dict[int, list[int]] = defaultdict(list)
    for row in rows:
        frames[row["tracklet"]].append(row["frame"])
    return frames


def visit_of(frames: list[int]) -> int | None:
    """The one visit holding every frame of a tracklet, else None (it would span two people)."""
    found = [i for i, (a, b) in enumerate(VISITS) if a <= min(frames) and max(frames) <= b]
    return found[0] if found else None


def test_each_visit_is_one_tracklet_and_no_tracklet_holds_two_people(intel):
    indexes, report = intel
    tracklets = tracklets_of(indexes, "intel")
    visits = [visit_of(frames) for frames in tracklets.values()]
    assert None not in visits  # never two people (visits) in one tracklet
    assert sorted(set(visits)) == list(range(6))  # every visit found
    assert len(tracklets) <= 8  # each visit in one or a few tracklets (6 counted here)
    (video,) = report["videos"]
    assert video["frames"] == 1394 and video["frames_detected"] == 697 and video["stopped"] is None


def test_a_crop_of_a_visit_finds_that_visit_first_with_camera_time_and_frame(intel, tmp_path):
    from PIL import Image

    from reid_search.video.decode import open_frames

    indexes, _ = intel
    tracklets = tracklets_of(indexes, "intel")
    target = next(t for t, frames in tracklets.items() if visit_of(frames) == 2)
    with Gallery.open(indexes / "intel") as gallery:
        row = next(r for r in gallery.rows().values() if r["tracklet"] == target)
    box = json.loads(row["extra"])["box"]
    odd = row["frame"] + 1  # never detected (every 2nd frame): this crop is not in the gallery
    frame = next(f for f in open_frames(intel_video()).frames() if f.index == odd)
    probe = tmp_path / "probe.jpg"
    Image.fromarray(frame.pixels).crop(box).save(probe)
    result = runner.invoke(
        app, ["query", str(probe), "--index", "intel", "--indexes-dir", str(indexes), "--json"]
    )
    assert result.exit_code == 0, result.output
    best = json.loads(result.output)["results"][0]
    assert best["key"] == f"tracklet:{target}"
    match = best["matches"][0]
    assert match["camera"] == 3 and match["time"].startswith("2026-11-25T14:0")
    assert (
        match["extra"]["video"].endswith("one-by-one-person-detection.mp4")
        and len(match["extra"]["box"]) == 4
    )


def test_a_journey_in_video_is_one_visit_per_passage_and_its_bundle_holds_the_frames(intel, tmp_path):
    """Tracing a crop of the sample video (one camera, six people one after another) finds its
    own passage; the bundle holds that passage's frame with the box drawn, at full size."""
    import zipfile

    from PIL import Image

    indexes, _ = intel
    tracklets = tracklets_of(indexes, "intel")
    target = next(t for t, frames in tracklets.items() if visit_of(frames) == 3)
    with Gallery.open(indexes / "intel") as gallery:
        row = next(r for r in gallery.rows().values() if r["tracklet"] == target)
    bundle = tmp_path / "case.zip"
    args = ["trace", row["path"], "--index", "intel", "--indexes-dir", str(indexes), "--bundle", str(bundle)]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    journey = json.loads(result.stdout[result.stdout.index("{") :])
    mine = [v for v in journey["visits"] if target in v["tracklets"]]
    assert len(mine) == 1 and mine[0]["video"].endswith("one-by-one-person-detection.mp4")
    assert all(visit_of([e["frame"] for e in v["entries"]]) is not None for v in journey["visits"])
    with zipfile.ZipFile(bundle) as z:
        frames = [n for n in z.namelist() if n.endswith("/frame.jpg")]
        assert len(frames) == len(journey["visits"])
        with Image.open(z.open(frames[0])) as picture:
            assert picture.size == (768, 432)
    verified = runner.invoke(app, ["verify-bundle", str(bundle)])
    assert verified.exit_code == 0 and "unchanged" in verified.stdout


def test_export_clip_draws_the_match_in_its_frame(intel, tmp_path):
    from PIL import Image

    indexes, _ = intel
    picture = tmp_path / "match.jpg"
    result = runner.invoke(
        app, ["export-clip", "0", "--index", "intel", "--indexes-dir", str(indexes), "--out", str(picture)]
    )
    assert result.exit_code == 0, result.output
    with Image.open(picture) as img:
        assert img.size == (768, 432)  # the whole frame, not the crop


def test_a_truncated_video_indexes_what_it_can_and_a_non_video_is_skipped(tmp_path):
    data = intel_video().read_bytes()
    broken = tmp_path / "cam3_broken.mp4"
    broken.write_bytes(data[: len(data) // 3])
    notes = tmp_path / "notes.mp4"
    notes.write_text("this is not a video")
    indexes = tmp_path / "indexes"
    result = index_video(indexes, "broken", str(broken), str(notes))
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{") :])
    (video,) = report["videos"]
    assert 0 < video["frames"] < 1394 and video["stopped"]
    reasons = {Path(s["path"]).name: s["reason"] for s in report["skipped"]}
    assert "notes.mp4" in reasons and "cam3_broken.mp4" in reasons
    assert tracklets_of(indexes, "broken")  # the visits before the cut are there


def test_a_killed_cut_resumes_without_duplicate_tracklets(tmp_path, monkeypatch):
    from reid_search.video import detectors

    short = tmp_path / "short.mp4"
    data = intel_video().read_bytes()
    short.write_bytes(data[: len(data) // 4])
    indexes = tmp_path / "indexes"
    real = detectors.SsdDetector._detect_one
    calls = []

    def dying(self, frame, min_score):
        calls.append(1)
        if len(calls) == 60:
            raise KeyboardInterrupt
        return real(self, frame, min_score)

    monkeypatch.setattr(detectors.SsdDetector, "_detect_one", dying)
    assert index_video(indexes, "k", str(short)).exit_code == 130
    monkeypatch.setattr(detectors.SsdDetector, "_detect_one", real)
    assert index_video(indexes, "k", str(short)).exit_code == 0
    again = index_video(indexes, "k", str(short))
    assert again.exit_code == 0 and json.loads(again.output[again.output.index("{") :])["added"] == 0
    clean = tmp_path / "clean"
    assert index_video(clean, "k", str(short)).exit_code == 0
    assert sorted(map(sorted, tracklets_of(indexes, "k").values())) == sorted(
        map(sorted, tracklets_of(clean, "k").values())
    )


def test_mot17_frames_index_as_a_frame_folder(tmp_path):
    sequence = shared_data().parent / "video" / "mot17-mini" / "MOT17-09-FRCNN" / "img1"
    indexes = tmp_path / "indexes"
    result = index_video(
        indexes, "mot", str(sequence), extra=("--layout", "frames", "--min-track-length", "1")
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{") :])
    assert report["videos"][0]["frames"] == 4 and report["counts"]["vectors"] > 0
