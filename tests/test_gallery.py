"""Galleries: build, skip bad files, grow, resume, reconcile, refuse the wrong model, search."""

from __future__ import annotations

import json
import shutil
import sqlite3

import faiss
import numpy as np
import pytest

from reid_search.gallery import Gallery, GalleryError, build_gallery
from reid_search.layouts import scan_dataset
from reid_search.search import search_gallery
from reid_search.synthetic import generate_dataset


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
    assert manifest["faiss_index_type"] == "IDMap2,Flat" and manifest["embedding_dim"] == embedder.dim
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


def test_reconcile_after_crash_between_commit_and_checkpoint(data, embedder, indexes_dir):
    gallery, _ = build_gallery(data, "g", embedder, progress=False)
    ids = gallery.ids()
    # a crash after SQLite committed but before the FAISS file was rewritten: rows without vectors
    gallery.index.remove_ids(ids[:5])
    faiss.write_index(gallery.index, str(gallery.path / "index.faiss"))
    gallery.close()
    gallery, report = build_gallery(data, "g", embedder, progress=False)
    assert report.reconciled == (5, 0)
    assert report.added == 5 and gallery.size == 108
    assert len(gallery.rows()) == 108


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
    frames = gallery.db.execute("select count(*) from frames").fetchone()[0]
    assert frames == 72
    # the stored vector is the re-normalised mean of its frames
    some_id = int(gallery.ids()[0])
    members = [p for (p,) in gallery.db.execute("select path from frames where faiss_id = ?", [some_id])]
    vectors, _, _ = embedder.embed_files(members)
    mean = vectors.mean(0) / np.linalg.norm(vectors.mean(0))
    np.testing.assert_allclose(gallery.index.reconstruct(some_id), mean, atol=1e-5)


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
    excluded = search_gallery(gallery, embedder, [probe.path], top_k=12, exclude_cameras=[1])
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
