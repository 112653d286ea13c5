"""Galleries: build, skip bad files, grow, resume, reconcile, refuse the wrong model, search."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import faiss
import numpy as np
import pytest

from reid_search.data.layouts import scan_dataset
from reid_search.data.synthetic import generate_dataset
from reid_search.gallery import EntryFilter, Gallery, GalleryError, build_gallery
from reid_search.search.query import search_gallery


@pytest.fixture()
def data(tmp_path, synth_root):
    """A private copy of the synthetic set, with a zero-byte, a truncated and a non-image file."""
    root = tmp_path / "data"
    shutil.copytree(synth_root, root)
    person = root / "bbox_test" / "0001"
    (person / "0001C1T0009F001.jpg").write_bytes(b"")
    good = (person / "0001C1T0001F001.jpg").read_bytes()
    (person / "0001C2T0009F001.jpg").write_bytes(good[: len(good) // 3])
    (person / "0001C3T0009F001.jpg").write_text("not an image at all")
    return root


def test_build_records_rows_and_skips_bad_files(data, embedder, indexes_dir):
    gallery, report = build_gallery(data, "g", embedder, progress=False)
    assert report.added == 108 and gallery.size == 108
    assert sorted(s.reason.split(" ")[0] for s in report.skipped) == ["corrupt", "empty", "not"]
    assert len(gallery.skipped()) == 3
    rows = gallery.rows()
    assert set(rows) == set(gallery.ids().tolist())
    row = next(r for r in rows.values() if r["path"].endswith("0003C2T0001F002.jpg"))
    assert (row["person"], row["camera"], row["tracklet"], row["frame"]) == ("0003", 2, 1, 2)
    assert (row["width"], row["height"]) == (64, 128) and len(row["sha256"]) == 64
    manifest = json.loads((gallery.path / "manifest.json").read_text())
    assert manifest["model"]["sha256"] == embedder.model_sha256
    assert manifest["counts"] == {"vectors": 108, "images": 108, "persons": 12, "cameras": 3, "skipped": 3}
    assert manifest["index_type"] == "auto" and manifest["index"]["factory"] == "Flat"
    assert manifest["embedding_dim"] == embedder.dim
    # the stored vectors are the embeddings of the files
    ids, vectors = gallery.vectors()
    expect, _, _ = embedder.embed_files([rows[int(ids[0])]["path"]])
    np.testing.assert_allclose(vectors[0], expect[0], atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_rerun_adds_only_new_files_and_rebuild_starts_over(data, embedder, indexes_dir):
    build_gallery(data, "g", embedder, progress=False)
    generate_dataset(data, n_people=2, n_cameras=3, frames_per_tracklet=3, seed=99, first_person=500)
    gallery, report = build_gallery(data, "g", embedder, progress=False)
    assert (report.added, report.already_present) == (18, 108)
    assert gallery.size == 126
    paths = [r["path"] for r in gallery.rows().values()]
    assert len(paths) == len(set(paths))
    gallery, report = build_gallery(data, "g", embedder, rebuild=True, progress=False)
    assert (report.added, report.already_present, gallery.size) == (126, 0, 126)


def test_sqlite_is_the_truth_and_the_index_file_a_cache(data, embedder, indexes_dir):
    gallery, _ = build_gallery(data, "g", embedder, progress=False)
    probe = gallery.vectors_for([7])
    expected = gallery.search(probe, 3)
    gallery.close()
    (indexes_dir / "g" / "index.faiss").unlink()  # lost or deleted: rebuilt from SQLite
    with Gallery.open("g") as reopened:
        assert reopened.size == 108
        np.testing.assert_array_equal(reopened.search(probe, 3)[1], expected[1])
    (indexes_dir / "g" / "index.faiss").write_bytes(b"garbage")  # damaged: rebuilt too
    with Gallery.open("g") as reopened:
        assert reopened.search(probe, 1)[1][0, 0] == 7


def test_index_catches_up_from_its_watermark(data, embedder, indexes_dir):
    gallery, _ = build_gallery(data, "g", embedder, progress=False)
    state = json.loads((indexes_dir / "g" / "index.json").read_text())
    assert state["watermark"] == 107 and state["count"] == 108
    # rows committed after the index file was written (a build killed before its end)
    row = gallery.rows([5])[5]
    vector = gallery.vectors_for([5])
    row.update(faiss_id=500, unit_key="extra", path="extra.jpg")
    gallery.add_units([row], vector, [], [])
    gallery.close()
    with Gallery.open("g") as reopened:
        sims, ids = reopened.search(vector, 2)
        assert set(ids[0].tolist()) == {5, 500}
        assert reopened.ready_index().ntotal == 109


def test_remove_is_one_transaction_and_the_index_follows(data, embedder, indexes_dir):
    gallery, _ = build_gallery(data, "g", embedder, progress=False)
    vector = gallery.vectors_for([3])
    gallery.remove([3, 4])
    assert gallery.size == 106 and not gallery.rows([3, 4])
    assert 3 not in gallery.search(vector, 5)[1][0].tolist()


def test_second_writer_is_refused_while_readers_work(data, embedder, indexes_dir):
    gallery, _ = build_gallery(data, "g", embedder, progress=False)
    with Gallery.open("g") as writer, writer.writing():
        with pytest.raises(GalleryError, match="another writer"):
            build_gallery(data, "g", embedder, progress=False)
        with Gallery.open("g") as reader:
            assert reader.search(gallery.vectors_for([0]), 1)[1][0, 0] == 0


def test_wrong_model_is_a_clear_error(data, embedder, indexes_dir):
    gallery, _ = build_gallery(data, "g", embedder, progress=False)
    with pytest.raises(GalleryError, match="built with model"):
        gallery.check_model("0" * 64, "other.keras")


def test_level_mismatch_is_an_error(data, embedder, indexes_dir):
    build_gallery(data, "g", embedder, progress=False)
    with pytest.raises(GalleryError, match="image-level gallery"):
        build_gallery(data, "g", embedder, level="tracklet", progress=False)


def test_tracklet_level_pools_frames(synth_root, embedder, indexes_dir):
    gallery, report = build_gallery(
        synth_root, "t", embedder, level="tracklet", frames_per_tracklet=2, progress=False
    )
    assert gallery.size == 36  # 12 people x 3 cameras
    assert report.images_embedded == 72  # 2 of 3 frames sampled per tracklet
    rows = gallery.rows()
    assert {r["n_frames"] for r in rows.values()} == {2}
    frames = gallery.con.execute("select count(*) from frames").fetchone()[0]
    assert frames == 72
    # the stored vector is the re-normalised mean of its frames
    some_id = int(gallery.ids()[0])
    members = gallery.frames_of(some_id)
    vectors, _, _ = embedder.embed_files(members)
    mean = vectors.mean(0) / np.linalg.norm(vectors.mean(0))
    np.testing.assert_allclose(gallery.vectors_for([some_id])[0], mean, atol=1e-5)


def test_search_ranks_identities_and_applies_exclusions(synth_root, embedder, indexes_dir):
    gallery, _ = build_gallery(synth_root, "g", embedder, progress=False)
    probe = next(r for r in scan_dataset(synth_root).records if r.person == "0004" and r.camera == 1)
    result = search_gallery(gallery, embedder, [probe.path], top_k=5)
    top = result.identities[0]
    assert top.person == "0004" and top.matches[0].path == probe.path
    assert top.score == pytest.approx(1.0, abs=1e-4)
    assert [h.rank for h in result.identities] == [1, 2, 3, 4, 5]
    scores = [h.score for h in result.identities]
    assert scores == sorted(scores, reverse=True)
    assert len({h.person for h in result.identities}) == 5
    excluded = search_gallery(
        gallery, embedder, [probe.path], top_k=12, where=EntryFilter(exclude_cameras=(1,))
    )
    assert all(m.camera != 1 for h in excluded.identities for m in h.matches)
    assert len(excluded.identities) == 12
    rule = search_gallery(gallery, embedder, [probe.path], top_k=12, same_camera_rule=True)
    assert all((m.person, m.camera) != ("0004", 1) for h in rule.identities for m in h.matches)
    assert rule.to_dict()["query"]["excluded"] == {"person_camera": {"person": "0004", "camera": 1}}


def test_sqlite_is_plain_and_readable_without_the_tool(synth_root, embedder, indexes_dir):
    gallery, _ = build_gallery(synth_root, "g", embedder, progress=False)
    con = sqlite3.connect(gallery.path / "meta.sqlite")
    cols = {r[1] for r in con.execute("pragma table_info(vectors)")}
    assert {
        "faiss_id",
        "path",
        "sha256",
        "person",
        "camera",
        "tracklet",
        "frame",
        "width",
        "height",
        "added_at",
    } <= cols
    assert con.execute("select count(*) from vectors").fetchone()[0] == 108


def test_open_missing_gallery_is_a_clear_error(indexes_dir):
    with pytest.raises(GalleryError, match="no gallery yet"):
        Gallery.open()
    with pytest.raises(GalleryError, match="not a gallery"):
        Gallery.open("nothing-here")


def test_failed_rebuild_keeps_the_old_gallery(data, embedder, indexes_dir, monkeypatch):
    from reid_search.gallery import build as build_module

    gallery, _ = build_gallery(data, "g", embedder, progress=False)
    before = gallery.rows()
    gallery.close()

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    with monkeypatch.context() as patch:
        patch.setattr(build_module, "_embed_units", broken)
        with pytest.raises(RuntimeError):
            build_gallery(data, "g", embedder, rebuild=True, progress=False)
    with Gallery.open("g") as kept:
        assert kept.rows() == before
    rebuilt, report = build_gallery(data, "g", embedder, rebuild=True, progress=False)
    assert report.added == 108 and rebuilt.size == 108 and rebuilt.path == indexes_dir / "g"
    assert not any(p.name.startswith(".g.") for p in indexes_dir.iterdir())


def test_precomputed_vectors_build_the_same_gallery(synth_root, embedder, indexes_dir, tmp_path):
    from reid_search.embedding.vectors import embed_folder, read_vectors

    embedded, _ = build_gallery(synth_root, "embedded", embedder, progress=False)
    embed_folder(synth_root / "bbox_test", embedder, tmp_path / "v.npz")
    vectors = read_vectors(tmp_path / "v.npz")
    vectors.paths = [f"bbox_test/{p}" for p in vectors.paths]  # relative to the dataset root
    given, report = build_gallery(synth_root, "given", vectors=vectors, progress=False)
    assert report.added == 108 and report.images_embedded == 0
    assert given.model_sha256 == embedded.model_sha256
    by_path = lambda g: {r["path"]: i for i, r in g.rows().items()}  # noqa: E731
    a, b = by_path(embedded), by_path(given)
    assert set(a) == set(b)
    some = sorted(a)[:10]
    np.testing.assert_allclose(
        embedded.vectors_for([a[p] for p in some]), given.vectors_for([b[p] for p in some]), atol=1e-5
    )


def test_a_v1_gallery_is_migrated_into_sqlite_on_open(synth_root, embedder, indexes_dir):
    """v1 kept vectors only in index.faiss (IDMap2 over FlatIP): opening copies them into SQLite."""
    gallery, _ = build_gallery(synth_root, "old", embedder, progress=False)
    ids, vectors = gallery.vectors()
    gallery.close()
    folder = indexes_dir / "old"
    old = faiss.IndexIDMap2(faiss.IndexFlatIP(vectors.shape[1]))
    old.add_with_ids(vectors, ids)
    faiss.write_index(old, str(folder / "index.faiss"))
    (folder / "index.json").unlink()
    with sqlite3.connect(folder / "meta.sqlite") as con:
        con.execute("update vectors set vector = null")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["format"] = "reid-search/gallery/v1"
    manifest["faiss_index_type"] = "IDMap2,Flat"
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with Gallery.open("old") as migrated:
        again_ids, again = migrated.vectors()
        np.testing.assert_array_equal(again_ids, ids)
        np.testing.assert_allclose(again, vectors)
        assert migrated.manifest["format"] == "reid-search/gallery/v2"
        assert migrated.manifest["index_type"] == "auto"
        assert migrated.search(vectors[:1], 1)[1][0, 0] == ids[0]


def test_a_gallery_file_never_holds_half_a_schema(tmp_path, monkeypatch):
    """A reader of a gallery being created (the server, a second command, a resumed build) sees all
    of the tables or none: a schema step that fails leaves the file as it was."""
    from reid_search.gallery import folder

    database = tmp_path / "meta.sqlite"
    monkeypatch.setitem(folder.ADDED_COLUMNS, "broken", "text references nowhere (")  # fails late
    with pytest.raises(sqlite3.OperationalError):
        folder._ensure_schema(folder._connect(database))
    with sqlite3.connect(database) as con:
        assert con.execute("select name from sqlite_master").fetchall() == []
    monkeypatch.undo()
    folder._ensure_schema(folder._connect(database))
    with sqlite3.connect(database) as con:
        names = {r[0] for r in con.execute("select name from sqlite_master")}
    assert {"vectors", "frames", "skipped", "state", "idx_vectors_cluster"} <= names


def test_a_gallery_written_before_this_change_still_opens_and_scores(tmp_path):
    """tests/data/gallery-063782c: 24 synthetic entries indexed by the code of commit 063782c."""
    import shutil

    from typer.testing import CliRunner

    from reid_search.cli import app
    from reid_search.gallery import Gallery, list_galleries

    indexes = tmp_path / "indexes"
    shutil.copytree(Path(__file__).parent / "data" / "gallery-063782c", indexes / "old")
    assert [p.name for p in list_galleries(indexes)] == ["old"]
    with Gallery.open(indexes / "old") as gallery:
        assert gallery.size == 24 and len(gallery.rows()) == 24 and gallery.cameras() == [1, 2]
        sims, ids = gallery.search(gallery.vectors_for([0]), 3)
        assert ids[0][0] == 0 and sims[0][0] == pytest.approx(1.0, abs=1e-5)
    result = CliRunner().invoke(
        app, ["evaluate", "old", "--indexes-dir", str(indexes), "--out", str(tmp_path / "e")]
    )
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "e" / "metrics.json").read_text())["n_gallery"] > 0


def test_the_open_set_background_counts_each_tracklet_once(tmp_path):
    """A gallery cut from video holds many frames of each visit. The query's background (the
    people it merely resembles) must count each tracklet once, under the card's rule for
    tracklet galleries: counted frame by frame, the right person's own 30 frames filled it and
    every answer looked unsure."""
    from types import SimpleNamespace

    from reid_search.calibration.open_set import OpenSetRule
    from reid_search.search.query import answer_vector

    rng = np.random.default_rng(0)
    dim, people, frames = 32, 80, 30
    centres = rng.normal(size=(people, dim))
    vectors = np.repeat(centres, frames, axis=0) + 0.1 * rng.normal(size=(people * frames, dim))
    rows = [
        dict(faiss_id=i, unit_key=f"u{i}", signature="", path=f"t{i // frames}_{i % frames}.jpg",
             person=None, kind="identity", camera=1, tracklet=i // frames + 1, frame=i % frames, n_frames=1)
        for i in range(people * frames)
    ]  # fmt: skip
    gallery = Gallery.create(
        tmp_path / "g", {"sha256": "0" * 64, "name": "sim", "embedding_dim": dim}, "image", None
    )
    gallery.add_units(
        rows, (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype("float32"), [], []
    )
    query = centres[0] + 0.6 * rng.normal(size=dim)
    query = (query / np.linalg.norm(query)).astype("float32")
    rule = OpenSetRule(w_score=10.0, w_margin=15.0, bias=-12.0, accept=0.5)  # needs a clear margin
    card = SimpleNamespace(threshold=None, open_set={**rule.to_dict(), "tracklets": rule.to_dict()})
    result = answer_vector(gallery, query, ["q.jpg"], card=card)
    best = result.identities[0]
    assert best.matches[0].tracklet == 1 and best.similarity > 0.6
    assert result.open_set["counted"] == "tracklets"
    assert result.open_set["background"] < 0.4  # other people's tracklets, not the right one's frames
    assert best.match and result.in_gallery
    # a card calibrated before tracklet rules existed keeps counting entries, as it was fitted
    older = answer_vector(
        gallery, query, ["q.jpg"], card=SimpleNamespace(threshold=None, open_set=rule.to_dict())
    )
    assert older.open_set["counted"] == "entries" and older.open_set["background"] > 0.5
    gallery.close()
