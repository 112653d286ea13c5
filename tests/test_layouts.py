"""Dataset layouts: detection, parsing, junk/distractor labels, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from reid_search.data.layouts import (
    KIND_DISTRACTOR,
    KIND_JUNK,
    LayoutError,
    detect_layout,
    parse_any_name,
    scan_dataset,
)


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_mars_root_with_junk_and_distractors(tmp_path):
    touch(tmp_path / "bbox_test" / "0001" / "0001C1T0002F003.jpg")
    touch(tmp_path / "bbox_test" / "0000" / "0000C6T0001F001.jpg")
    touch(tmp_path / "bbox_test" / "00-1" / "00-1C2T0001F001.jpg")
    touch(tmp_path / "bbox_train" / "0002" / "0002C3T0001F001.jpg")
    touch(tmp_path / "bbox_test" / "0001" / "readme.txt")
    scan = scan_dataset(tmp_path)
    assert scan.layout == "mars"
    assert scan.splits == ["bbox_test", "bbox_train"]
    by_person = {r.person: r for r in scan.records}
    r = by_person["0001"]
    assert (r.camera, r.tracklet, r.frame, r.split) == (1, 2, 3, "bbox_test")
    assert by_person["0000"].kind == KIND_DISTRACTOR
    assert by_person["00-1"].kind == KIND_JUNK
    assert [Path(s.path).name for s in scan.skipped] == ["readme.txt"]


def test_mars_split_folder_is_detected(cuhk_test):
    scan = scan_dataset(cuhk_test)
    assert scan.layout == "mars"
    assert len(scan.records) == 938
    assert len({r.person for r in scan.records}) == 100
    assert {r.camera for r in scan.records} == {1, 2}


def test_market1501(tmp_path):
    touch(tmp_path / "query" / "0002_c1s1_000451_03.jpg")
    touch(tmp_path / "bounding_box_test" / "-1_c3s1_000001_00.jpg")
    touch(tmp_path / "bounding_box_test" / "0000_c2s1_000001_00.jpg")
    touch(tmp_path / "bounding_box_test" / "Thumbs.db")
    scan = scan_dataset(tmp_path)
    assert scan.layout == "market1501"
    kinds = {r.person: r.kind for r in scan.records}
    assert kinds == {"0002": "identity", "-1": KIND_JUNK, "0000": KIND_DISTRACTOR}
    assert {r.split for r in scan.records} == {"query", "bounding_box_test"}


def test_kaggle_mars_without_cameras(tmp_path):
    touch(tmp_path / "categories" / "0001" / "frame_a.jpg")
    touch(tmp_path / "categories" / "0001" / "0001C3T0001F001.jpg")
    scan = scan_dataset(tmp_path)
    assert scan.layout == "kaggle-mars"
    cams = {Path(r.path).name: r.camera for r in scan.records}
    assert cams == {"frame_a.jpg": None, "0001C3T0001F001.jpg": 3}


def test_generic_with_camera_pattern(tmp_path):
    touch(tmp_path / "alice" / "cam1_001.png")
    touch(tmp_path / "bob" / "cam2_007.png")
    touch(tmp_path / "stray.jpg")
    scan = scan_dataset(tmp_path, name_pattern=r"cam(?P<cam>\d+)_")
    assert scan.layout == "generic"
    assert {(r.person, r.camera) for r in scan.records} == {("alice", 1), ("bob", 2)}
    assert [Path(s.path).name for s in scan.skipped] == ["stray.jpg"]


def test_layout_override_and_unknown_layout(tmp_path):
    touch(tmp_path / "bbox_test" / "0001" / "0001C1T0001F001.jpg")
    assert scan_dataset(tmp_path, layout="generic").layout == "generic"
    with pytest.raises(LayoutError, match="; known: mars, kaggle-mars, market1501, unlabelled, generic"):
        scan_dataset(tmp_path, layout="duke")


def test_empty_folder_names_known_layouts(tmp_path):
    with pytest.raises(LayoutError, match="no known layout fits"):
        detect_layout(tmp_path)


def test_unknown_split_is_an_error(tmp_path):
    touch(tmp_path / "bbox_test" / "0001" / "0001C1T0001F001.jpg")
    with pytest.raises(LayoutError, match="no split query"):
        scan_dataset(tmp_path, splits=["query"])


def test_query_names_parse():
    assert parse_any_name("x/0744C2T0001F003.jpg").camera == 2
    assert parse_any_name("0002_c4s1_000451_03.jpg").camera == 4
    assert parse_any_name("holiday.jpg") is None


def test_a_folder_of_other_files_is_not_taken_for_a_dataset(tmp_path):
    for i in range(30):
        touch(tmp_path / f"project{i % 3}" / f"notes{i}.txt")
    touch(tmp_path / "photos" / "a.jpg")
    message = r"not look like a dataset .1 of 31 files are images.*--layout unlabelled"
    with pytest.raises(LayoutError, match=message):
        detect_layout(tmp_path)
    assert scan_dataset(tmp_path, layout="generic").layout == "generic"  # forced: accepted
