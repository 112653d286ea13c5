"""Users' own crops: unlabelled folders, camera / time metadata, filters inside the search."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from reid_search.cli import app
from reid_search.data.layouts import (
    KIND_UNLABELLED,
    LayoutError,
    detect_layout,
    parse_mars_name,
    scan_dataset,
)
from reid_search.gallery import EntryFilter, build_gallery
from reid_search.search.query import search_gallery

runner = CliRunner()
NAME_PATTERN = r"^cam(?P<cam>\d+)_(?P<time>\d{8}T\d{6})_"


def detector_crops(synth_root: Path, out: Path, cameras_as_folders: bool = False) -> dict[str, str]:
    """Copy the synthetic MARS crops under detector-style names (no person in them);
    returns new name -> person. Person N was seen at 10:N:frame on 2026-11-25."""
    people = {}
    for path in sorted((synth_root / "bbox_test").rglob("*.jpg")):
        r = parse_mars_name(path)
        stamp = f"20261125T10{int(r.person):02d}{r.frame:02d}"
        name = f"cam{r.camera}_{stamp}_{len(people):05d}.jpg"
        target = out / f"cam{r.camera}" / name if cameras_as_folders else out / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        people[name] = r.person
    return people


def test_a_flat_folder_of_crops_is_unlabelled_and_camera_folders_give_cameras(synth_root, tmp_path):
    flat = tmp_path / "flat"
    detector_crops(synth_root, flat)
    assert detect_layout(flat) == "unlabelled"
    scan = scan_dataset(flat)
    assert len(scan.records) == 108
    assert all(r.person is None and r.kind == KIND_UNLABELLED and r.camera is None for r in scan.records)
    nested = tmp_path / "nested"
    detector_crops(synth_root, nested, cameras_as_folders=True)
    scan = scan_dataset(nested)
    assert scan.layout == "unlabelled"
    assert {r.camera for r in scan.records} == {1, 2, 3}
    assert all(f"cam{r.camera}" in r.path for r in scan.records)


def test_identity_folders_stay_labelled_and_a_tree_of_other_files_is_refused(tmp_path):
    for person in ("alice", "bob"):
        (tmp_path / "people" / person).mkdir(parents=True)
        (tmp_path / "people" / person / "1.jpg").write_bytes(b"x")
    assert detect_layout(tmp_path / "people") == "generic"
    home = tmp_path / "home"
    home.mkdir()
    (home / "photo.jpg").write_bytes(b"x")
    for i in range(5):
        (home / f"notes{i}.txt").write_text("text")
    with pytest.raises(LayoutError, match="--layout unlabelled"):
        detect_layout(home)


def test_name_pattern_and_csv_give_camera_time_and_extra_metadata(synth_root, tmp_path):
    crops = tmp_path / "crops"
    names = sorted(detector_crops(synth_root, crops))
    sidecar = tmp_path / "meta.csv"
    sidecar.write_text(f"path,camera,site\n{names[0]},9,north gate\n")
    scan = scan_dataset(crops, name_pattern=NAME_PATTERN, metadata=sidecar)
    by_name = {Path(r.path).name: r for r in scan.records}
    first, second = by_name[names[0]], by_name[names[1]]
    assert first.camera == 9 and json.loads(first.extra) == {"site": "north gate"}  # the CSV wins
    assert second.camera == int(names[1][3]) and second.time.startswith("2026-11-25T10:")
    assert second.extra is None


@pytest.mark.parametrize(
    "content, message",
    [
        ("file_name,camera\na.jpg,1\n", "no 'path' column"),
        ("path,camera\na.jpg,east\n", "line 2: camera 'east' is not a whole number"),
        ("path,time\na.jpg,yesterday\n", "line 2: cannot read a time from 'yesterday'"),
    ],
)
def test_a_bad_metadata_csv_is_one_clear_error(synth_root, tmp_path, content, message):
    crops = tmp_path / "crops"
    detector_crops(synth_root, crops)
    sidecar = tmp_path / "meta.csv"
    sidecar.write_text(content)
    with pytest.raises(LayoutError, match=message):
        scan_dataset(crops, metadata=sidecar)


def test_metadata_given_later_reaches_entries_without_embedding_them_again(
    synth_root, embedder, indexes_dir, tmp_path
):
    crops = tmp_path / "crops"
    detector_crops(synth_root, crops)
    gallery, first = build_gallery(crops, "own", embedder, progress=False)
    assert first.added == 108 and gallery.manifest["counts"]["persons"] == 0
    gallery.close()
    gallery, again = build_gallery(crops, "own", embedder, progress=False, name_pattern=NAME_PATTERN)
    assert again.images_embedded == 0 and again.metadata_updated == 108
    rows = gallery.rows().values()
    assert {r["camera"] for r in rows} == {1, 2, 3} and all(r["time"] for r in rows)
    gallery.close()
    gallery, plain = build_gallery(crops, "own", embedder, progress=False)  # no pattern: nothing erased
    assert plain.metadata_updated == 0 and all(r["time"] for r in gallery.rows().values())
    gallery.close()


@pytest.fixture()
def own_gallery(synth_root, embedder, indexes_dir, tmp_path):
    crops = tmp_path / "crops"
    people = detector_crops(synth_root, crops)
    gallery, _ = build_gallery(crops, "own", embedder, progress=False, name_pattern=NAME_PATTERN)
    yield gallery, crops, people
    gallery.close()


def test_filters_return_k_answers_from_the_allowed_entries_only(own_gallery, embedder):
    gallery, crops, _ = own_gallery
    probe = sorted(crops.glob("cam1_*.jpg"))[0]
    for where, rule in [
        (EntryFilter(cameras=(2,)), lambda m: m.camera == 2),
        (EntryFilter(exclude_cameras=(1, 2)), lambda m: m.camera == 3),
        (
            EntryFilter(after="2026-11-25T10:03:00", before="2026-11-25T10:05:59"),
            lambda m: "2026-11-25T10:03:00" <= m.time <= "2026-11-25T10:05:59",
        ),
    ]:
        result = search_gallery(gallery, embedder, [probe], top_k=20, matches_per_identity=1, where=where)
        assert len(result.identities) == 20, where  # 36 entries per camera, 27 in the time window
        assert all(rule(h.matches[0]) for h in result.identities)
        assert all(h.person is None and h.key.startswith("entry:") for h in result.identities)


@pytest.mark.parametrize("index_type", ["Flat", "HNSW32"])
def test_a_large_filter_searches_the_index_with_a_selector_and_agrees_with_exact(
    own_gallery, embedder, monkeypatch, index_type
):
    import reid_search.gallery.faiss_cache as store

    gallery, _, _ = own_gallery
    gallery.reindex(index_type)
    query = gallery.vectors_for([5])
    where = EntryFilter(cameras=(1, 3))
    exact_sims, exact_ids = gallery.search(query, 10, where)
    monkeypatch.setattr(store, "EXACT_FILTER_LIMIT", 0)  # force the FAISS selector path
    sims, ids = gallery.search(query, 10, where)
    assert set(ids[0].tolist()) == set(exact_ids[0].tolist())
    np.testing.assert_allclose(sims, exact_sims, atol=1e-5)
    cameras = {r["camera"] for r in gallery.rows(ids[0]).values()}
    assert cameras <= {1, 3}


def test_query_command_shows_times_and_filters_by_time(own_gallery, indexes_dir):
    _, crops, _ = own_gallery
    probe = sorted(crops.glob("cam1_*.jpg"))[0]
    args = ["query", str(probe), "--index", "own", "-k", "3", "--after", "2026-11-25 10:07", "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert payload["schema"] == "reid-search/query/v2"
    assert payload["query"]["filter"] == {"after": "2026-11-25T10:07:00"}
    times = [r["matches"][0]["time"] for r in payload["results"]]
    assert len(times) == 3 and all(t >= "2026-11-25T10:07:00" for t in times)
    table = runner.invoke(app, ["query", str(probe), "--index", "own", "-k", "2", "--camera", "3"])
    assert table.exit_code == 0 and "entry " in table.output and "2026-11-25T10:" in table.output
    bad = runner.invoke(app, ["query", str(probe), "--index", "own", "--before", "soon"])
    assert bad.exit_code == 2 and "cannot read a time from 'soon'" in bad.output


def test_crops_nested_by_date_are_unlabelled_and_identity_folders_are_not(tmp_path):
    for path in ("deep/2026/11/25/cam3/a.jpg", "deep/2026/11/26/cam1/b.jpg", "people/0001/a.jpg"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_bytes(b"x")
    deep = scan_dataset(tmp_path / "deep")
    assert deep.layout == "unlabelled" and sorted(r.camera for r in deep.records) == [1, 3]
    assert detect_layout(tmp_path / "people") == "generic"
