"""Protocols on real embeddings of synthetic data: MARS official, Market-1501, cross-camera."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from reid_search.data.synthetic import generate_dataset, write_mars_info
from reid_search.evaluation.protocols import ProtocolError, load_mars_official
from reid_search.evaluation.run import evaluate


@pytest.fixture(scope="module")
def mars_root(tmp_path_factory):
    """8 people + a distractor (0000) + junk (00-1) frames, 2 cameras x 2 tracklets x 3 frames."""
    root = tmp_path_factory.mktemp("mars")
    generate_dataset(
        root, n_people=9, n_cameras=2, tracklets_per_camera=2, frames_per_tracklet=3, seed=3, first_person=0
    )
    junk = root / "bbox_test" / "00-1"
    junk.mkdir()
    for src in sorted((root / "bbox_test" / "0003").glob("*C1T0001*")):
        shutil.copy(src, junk / src.name.replace("0003", "00-1", 1))
    write_mars_info(root)
    return root


def test_mars_official_is_chosen_and_follows_info(mars_root, embedder):
    report = evaluate(mars_root, embedder, progress=False)
    assert report.protocol.name == "mars-official"
    assert report.level == "tracklet"
    assert len(report.protocol.gallery) == 1 + 9 * 4  # junk tracklet + 9 persons x 2 cams x 2 tracklets
    assert len(report.protocol.query) == 8  # camera-1 first tracklet of each real identity
    assert report.summary.n_scored == 8
    assert {report.items.kinds[i] for i in report.protocol.gallery} == {"identity", "distractor", "junk"}


def test_mars_official_equals_cross_camera_restricted_to_its_queries(mars_root, embedder):
    official = evaluate(mars_root, embedder, progress=False)
    # cross-camera at tracklet level over the same tracklets, every identity tracklet a query
    cross = evaluate(mars_root, embedder, protocol="cross-camera", level="tracklet", progress=False)
    assert cross.protocol.name == "cross-camera"
    assert len(cross.protocol.query) == 8 * 4 + 0  # distractor and junk never query
    by_path = {cross.items.paths[q]: s for q, s in zip(cross.protocol.query, cross.scores, strict=True)}
    for q, s in zip(official.protocol.query, official.scores, strict=True):
        other = by_path[official.items.paths[q]]
        assert (s.first_hit, s.ap) == (other.first_hit, pytest.approx(other.ap))


def test_real_mars_info_without_frames_is_a_clear_error(tmp_path):
    from tests.conftest import shared_data

    info = tmp_path / "info"
    info.mkdir()
    for name in ("tracks_test_info.mat", "query_IDX.mat"):
        shutil.copy(shared_data() / "mars-info" / name, info / name)
    (tmp_path / "bbox_test" / "0001").mkdir(parents=True)
    with pytest.raises(ProtocolError, match="refers to frame 681089"):
        load_mars_official(tmp_path)


def to_market(src: Path, dst: Path) -> Path:
    """Re-lay a synthetic MARS set as Market-1501: camera 1 frame 1 -> query/, rest -> bounding_box_test/."""
    from reid_search.data.layouts import parse_mars_name

    for path in sorted(src.glob("bbox_test/*/*.jpg")):
        r = parse_mars_name(path)
        split = "query" if (r.camera, r.frame) == (1, 1) else "bounding_box_test"
        name = f"{r.person}_c{r.camera}s{r.tracklet}_{r.frame:06d}_00.jpg"
        (dst / split).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, dst / split / name)
    return dst


def test_market1501_protocol(synth_root, tmp_path, embedder):
    root = to_market(synth_root, tmp_path / "market")
    report = evaluate(root, embedder, progress=False)
    assert report.protocol.name == "market1501"
    assert len(report.protocol.query) == 12
    assert len(report.protocol.gallery) == 108 - 12
    assert report.summary.n_scored == 12


def test_query_camera_restriction(synth_root, embedder):
    report = evaluate(synth_root, embedder, query_cameras=[1], gallery_cameras=[2], progress=False)
    items = report.items
    assert set(items.cameras[report.protocol.query]) == {1}
    assert set(items.cameras[report.protocol.gallery]) == {2}
    assert len(report.protocol.query) == 36 and len(report.protocol.gallery) == 36


def test_unknown_protocol_is_an_error(synth_root, embedder):
    with pytest.raises(ProtocolError, match="unknown protocol"):
        evaluate(synth_root, embedder, protocol="cuhk-classic", progress=False)


def test_generic_folders_without_cameras_still_score(tmp_path):
    """One folder per person, no camera or tracklet in the names: every image queries the
    others; only the query itself is junk."""
    from PIL import Image

    from reid_search.data.layouts import scan_dataset
    from reid_search.evaluation.items import items_from_scan
    from reid_search.evaluation.protocols import cross_camera, matching_masks

    for person in ("alice", "bob"):
        (tmp_path / person).mkdir()
        for i in range(3):
            Image.new("RGB", (16, 32), (40 * i, 80, 120)).save(tmp_path / person / f"{i}.jpg")
    scan = scan_dataset(tmp_path, "generic")

    class Flat:
        dim = 4

        def iter_pooled(self, groups):
            from reid_search.embedding.embedder import PooledBatch, PooledGroup

            yield PooledBatch(
                [PooledGroup(i, np.eye(4, dtype=np.float32)[i % 2], []) for i in range(len(groups))],
                len(groups),
                [],
            )

    items, _ = items_from_scan(scan, Flat(), "image", None, progress=False)
    protocol = cross_camera(items)
    positive, junk = matching_masks(items, protocol.query, protocol.gallery)
    assert junk.sum(axis=1).tolist() == [1] * 6  # the query itself, nothing else
    assert positive.sum(axis=1).tolist() == [2] * 6  # the person's other two images


def test_mars_info_that_does_not_match_the_frames_is_an_error(tmp_path):
    root = generate_dataset(tmp_path / "m", n_people=4, n_cameras=2, frames_per_tracklet=3, seed=5)
    write_mars_info(root)
    tracklets, queries = load_mars_official(root)  # consistent: fine
    assert len(tracklets) == 8 and len(queries) == 4
    # one extra frame in the middle: every later row would point at the wrong frames
    first = sorted((root / "bbox_test" / "0002").glob("*.jpg"))[0]
    shutil.copyfile(first, first.with_name("0002C1T0001F009.jpg"))
    with pytest.raises(ProtocolError, match=r"tracks_test_info row \d+ says person"):
        load_mars_official(root)
