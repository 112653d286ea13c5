"""Grouping a gallery into people: k-reciprocal links above a threshold, incremental runs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from reid_search.cli import app
from reid_search.gallery import Gallery
from reid_search.gallery.clusters import cluster_gallery, list_clusters

runner = CliRunner()
DIM = 16


def unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype(np.float32)


def add(gallery: Gallery, vectors: np.ndarray, persons: list[str | None], cameras: list[int] | None = None):
    start = gallery.next_id()
    rows = [
        dict(faiss_id=start + i, unit_key=f"u{start + i}", signature="", path=f"e{start + i}.jpg",
             person=p, kind="identity", camera=None if cameras is None else cameras[i], n_frames=1)
        for i, p in enumerate(persons)
    ]  # fmt: skip
    gallery.add_units(rows, unit(vectors), [], [])
    return [r["faiss_id"] for r in rows]


@pytest.fixture()
def gallery(tmp_path):
    g = Gallery.create(
        tmp_path / "g", {"sha256": "0" * 64, "name": "sim", "embedding_dim": DIM}, "image", None
    )
    yield g
    g.close()


def people(rng, n_people: int, per_person: int, spread: float = 0.25):
    centres = np.linalg.qr(rng.normal(size=(DIM, n_people)))[0].T.astype(np.float32)  # orthonormal people
    vectors = (
        np.repeat(centres, per_person, axis=0) + spread * rng.normal(size=(n_people * per_person, DIM)) / 4
    )
    return unit(vectors), [f"p{i}" for i in range(n_people) for _ in range(per_person)], centres


def partition(gallery: Gallery) -> set[frozenset[str]]:
    groups: dict[int, set[str]] = {}
    for row in gallery.rows().values():
        groups.setdefault(row["cluster"], set()).add(row["path"])
    return {frozenset(g) for g in groups.values()}


def test_separate_people_become_one_cluster_each(gallery):
    vectors, persons, _ = people(np.random.default_rng(0), n_people=6, per_person=5)
    ids = add(gallery, vectors, persons)
    report = cluster_gallery(gallery, threshold=0.6, k=5)
    assert report.clusters == 6 and report.clustered == 30 and report.reclustered
    rows = gallery.rows(ids)
    by_person: dict[str, set[int]] = {}
    for i, person in zip(ids, persons, strict=True):
        by_person.setdefault(person, set()).add(rows[i]["cluster"])
    assert all(len(c) == 1 for c in by_person.values())
    assert len({next(iter(c)) for c in by_person.values()}) == 6


def test_a_bridge_entry_does_not_chain_two_people_together(gallery):
    rng = np.random.default_rng(1)
    a, b = unit(rng.normal(size=DIM)), unit(rng.normal(size=DIM))
    b = unit(b - (b @ a) * a)  # two people, orthogonal
    group_a = unit(a + 0.05 * rng.normal(size=(8, DIM)))
    group_b = unit(b + 0.05 * rng.normal(size=(8, DIM)))
    bridge = unit(a + b)[None, :]  # cosine ~0.7 to both: above the threshold, not reciprocal
    add(gallery, np.concatenate([group_a, group_b, bridge]), ["a"] * 8 + ["b"] * 8 + [None])
    cluster_gallery(gallery, threshold=0.6, k=4)
    groups = partition(gallery)
    assert frozenset(f"e{i}.jpg" for i in range(8)) in groups
    assert frozenset(f"e{i}.jpg" for i in range(8, 16)) in groups
    assert frozenset({"e16.jpg"}) in groups


def test_new_entries_join_existing_clusters_and_start_new_ones(gallery):
    rng = np.random.default_rng(2)
    vectors, persons, centres = people(rng, n_people=4, per_person=5)
    first_ids = add(gallery, vectors, persons)
    cluster_gallery(gallery, threshold=0.6, k=5)
    before = gallery.rows(first_ids)
    p0_cluster = before[first_ids[0]]["cluster"]
    newcomer = unit(rng.normal(size=DIM))
    more = unit(
        np.concatenate(
            [centres[0] + 0.05 * rng.normal(size=(2, DIM)), newcomer + 0.05 * rng.normal(size=(3, DIM))]
        )
    )
    new_ids = add(gallery, more, [None] * 5)
    report = cluster_gallery(gallery, threshold=0.6, k=5)
    assert not report.reclustered and report.clustered == 5 and report.clusters == 5
    after = gallery.rows()
    assert {after[i]["cluster"] for i in new_ids[:2]} == {p0_cluster}  # joined person 0
    newcomer_clusters = {after[i]["cluster"] for i in new_ids[2:]}
    assert len(newcomer_clusters) == 1 and newcomer_clusters.isdisjoint(
        {r["cluster"] for r in before.values()}
    )
    assert all(after[i]["cluster"] == before[i]["cluster"] for i in first_ids)  # old ids kept


def test_new_entries_between_two_clusters_merge_them_when_the_average_holds(gallery):
    rng = np.random.default_rng(3)
    a = unit(rng.normal(size=DIM))
    b = unit(rng.normal(size=DIM))
    b = unit(0.5 * a + np.sqrt(1 - 0.25) * unit(b - (b @ a) * a))  # cosine 0.5: apart at 0.6
    near = lambda v, n: unit(v + 0.01 * rng.normal(size=(n, DIM)))  # noqa: E731
    add(gallery, np.concatenate([near(a, 2), near(b, 2)]), [None] * 4)
    cluster_gallery(gallery, threshold=0.6, k=4)
    assert len({r["cluster"] for r in gallery.rows().values()}) == 2
    add(gallery, near(unit(a + b), 2), [None] * 2)  # cosine ~0.87 to all four
    report = cluster_gallery(gallery, threshold=0.6, k=4)
    # average cosine of everything: (4 x 0.5 + 8 x 0.87 + 2 x 1 + 2 x 1) / 15 pairs > 0.6
    assert report.clustered == 2 and report.merged == 1 and report.clusters == 1
    assert {r["cluster"] for r in gallery.rows().values()} == {0}  # the smaller id survives


def test_one_look_alike_pair_does_not_merge_two_people(gallery):
    rng = np.random.default_rng(6)
    a, b = np.linalg.qr(rng.normal(size=(DIM, 2)))[0].T
    group_a, group_b = unit(a + 0.1 * rng.normal(size=(6, DIM))), unit(b + 0.1 * rng.normal(size=(6, DIM)))
    group_a[0] = unit(a + b + 0.01 * rng.normal(size=DIM))  # one sighting of a looks like b
    group_b[0] = unit(a + b + 0.01 * rng.normal(size=DIM))  # ... and one of b like a
    add(gallery, np.concatenate([group_a, group_b]), ["a"] * 6 + ["b"] * 6)
    cluster_gallery(gallery, threshold=0.6, k=6)
    clusters = {r["cluster"] for r in gallery.rows().values()}
    assert len(clusters) >= 2  # single linkage (connected components) would give one


def test_other_settings_cluster_everything_again(gallery):
    vectors, persons, _ = people(np.random.default_rng(4), n_people=3, per_person=4)
    add(gallery, vectors, persons)
    cluster_gallery(gallery, threshold=0.6, k=3)
    assert not cluster_gallery(gallery, threshold=0.6, k=3).reclustered
    again = cluster_gallery(gallery, threshold=0.99, k=3)
    assert again.reclustered and again.clustered == 12 and again.clusters > 3


def test_clusters_list_sizes_cameras_and_labels(gallery):
    vectors, persons, _ = people(np.random.default_rng(5), n_people=2, per_person=3)
    add(gallery, vectors, persons, cameras=[1, 2, 2, 3, 3, 3])
    cluster_gallery(gallery, threshold=0.6, k=3)
    listed = list_clusters(gallery)
    assert [(c.size, c.cameras) for c in listed] == [(3, [1, 2]), (3, [3])]
    assert listed[0].persons == {"p0": 3}


def test_cluster_commands_and_query_answer_with_clusters(tmp_path, embedder, indexes_dir, synth_root):
    from tests.test_own_crops import NAME_PATTERN, detector_crops

    crops = tmp_path / "crops"
    detector_crops(synth_root, crops)
    built = runner.invoke(app, ["index", str(crops), "--name", "own", "--name-pattern", NAME_PATTERN, "-q"])
    assert built.exit_code == 0, built.output
    made = runner.invoke(app, ["cluster", "own", "--threshold", "0.8", "--json"])
    assert made.exit_code == 0, made.output
    report = json.loads(made.output)
    assert report["clustered"] == 108 and 1 <= report["clusters"] <= 108
    listed = runner.invoke(app, ["clusters", "own", "--json", "--limit", "0"])
    sizes = [c["size"] for c in json.loads(listed.output)["clusters"]]
    assert sum(sizes) == 108 and sizes == sorted(sizes, reverse=True)
    probe = sorted(crops.glob("cam1_*.jpg"))[0]
    answer = runner.invoke(app, ["query", str(probe), "--index", "own", "-k", "3", "--json"])
    results = json.loads(answer.output)["results"]
    top = results[0]
    assert top["key"] == f"cluster:{top['cluster']['cluster']}" and top["cluster"]["size"] >= 1
    assert set(top["cluster"]["cameras"]) >= {m["camera"] for m in top["matches"]}
    assert len({r["key"] for r in results}) == 3
    table = runner.invoke(app, ["query", str(probe), "--index", "own", "-k", "1"])
    assert "cluster of" in table.output
