"""End to end on 938 real CUHK03 crops in MARS naming: index, evaluate, recompute independently."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import faiss
import numpy as np
import pytest
from typer.testing import CliRunner

from reid_search.cli import app
from tests.conftest import index_with_cli


@pytest.fixture(scope="module")
def real_gallery(cuhk_test, tmp_path_factory):
    return index_with_cli(cuhk_test, tmp_path_factory.mktemp("indexes"), "cuhk")


def independent_metrics(gallery_dir):
    """rank-1 and mAP from the SQLite file alone (rows and vector blobs), with plain loops."""
    with sqlite3.connect(gallery_dir / "meta.sqlite") as con:
        sql = "select faiss_id, person, camera, vector from vectors order by faiss_id"
        rows = con.execute(sql).fetchall()
    ids = [r[0] for r in rows]
    vectors = np.vstack([np.frombuffer(r[3], np.float32) for r in rows])
    people = [(r[1], r[2]) for r in rows]
    sims = vectors @ vectors.T
    hits1, aps = [], []
    for q, (person, cam) in enumerate(people):
        order = sorted(range(len(ids)), key=lambda g: (-sims[q, g], g))
        flags = [
            people[g][0] == person for g in order if not (people[g][0] == person and people[g][1] == cam)
        ]
        if not any(flags):
            continue
        hits1.append(flags[0])
        found, precisions = 0, []
        for rank, flag in enumerate(flags, start=1):
            if flag:
                found += 1
                precisions.append(found / rank)
        aps.append(np.mean(precisions))
    return float(np.mean(hits1)), float(np.mean(aps)), len(aps)


def test_index_holds_all_real_images(real_gallery):
    manifest = json.loads((real_gallery / "manifest.json").read_text())
    assert manifest["counts"] == {"vectors": 938, "images": 938, "persons": 100, "cameras": 2, "skipped": 0}
    build = manifest["last_build"]
    assert build["images_embedded"] == 938
    assert build["images_per_second"] == pytest.approx(938 / build["seconds"], rel=0.05)


def test_reported_metrics_match_recomputation_from_faiss_and_sqlite(real_gallery, tmp_path):
    out = tmp_path / "eval"
    result = CliRunner().invoke(app, ["evaluate", str(real_gallery), "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    reported = json.loads((out / "metrics.json").read_text())
    rank1, mean_ap, n = independent_metrics(real_gallery)
    assert reported["protocol"] == "cross-camera"
    assert reported["n_queries_scored"] == n == 938
    assert reported["rank1"] == pytest.approx(rank1, abs=1e-6)
    assert reported["mAP"] == pytest.approx(mean_ap, abs=1e-6)


def test_index_file_agrees_with_sqlite(real_gallery):
    index = faiss.read_index(str(real_gallery / "index.faiss"))
    with sqlite3.connect(real_gallery / "meta.sqlite") as con:
        ids = sorted(r[0] for r in con.execute("select faiss_id from vectors"))
    assert sorted(faiss.vector_to_array(index.id_map).tolist()) == ids


def test_query_real_sample(real_gallery, mars_samples):
    result = CliRunner().invoke(
        app, ["query", str(mars_samples / "1.jpg"), "--index", str(real_gallery), "--json", "--top-k", "5"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert len(data["results"]) == 5
    assert all(r["person"] for r in data["results"])


def test_own_unlabelled_crops_answer_who_is_there_and_who_is_not(cuhk_test, tmp_path):
    """Index camera-2 crops of half the test people as an unlabelled folder (detector-style
    names), then ask with camera-1 crops of people in it and of people left out."""
    import shutil

    from reid_search.data.layouts import parse_mars_name

    records = [parse_mars_name(p) for p in sorted(cuhk_test.rglob("*.jpg"))]
    people = sorted({r.person for r in records})
    present = set(people[::2])  # the other half is left out
    crops, owner = tmp_path / "crops", {}
    crops.mkdir()
    for i, r in enumerate(x for x in records if x.camera == 2 and x.person in present):
        name = f"det_{i:05d}.jpg"
        shutil.copyfile(r.path, crops / name)
        owner[name] = r.person
    indexes = tmp_path / "indexes"
    built = CliRunner().invoke(app, ["index", str(crops), "--indexes-dir", str(indexes), "--quiet", "--json"])
    assert built.exit_code == 0, built.output
    assert json.loads(built.output)["counts"]["persons"] == 0  # no labels, no layout flag
    probes = {}
    for r in records:
        if r.camera == 1:
            probes.setdefault(r.person, r.path)
    said_present, said_absent, top1 = [], [], []
    for person, path in probes.items():
        args = ["query", path, "--index", "crops", "--indexes-dir", str(indexes), "-k", "1", "--json"]
        answer = json.loads(CliRunner().invoke(app, args).output)
        (said_present if person in present else said_absent).append(answer["in_gallery"])
        if person in present:
            top1.append(owner[Path(answer["results"][0]["matches"][0]["path"]).name] == person)
    print(
        f"present found {np.mean(said_present):.2f}, absent flagged {1 - np.mean(said_absent):.2f}, "
        f"top-1 {np.mean(top1):.2f}"
    )
    # the default model with its card's open-set rule (accept level at 10% false alarms on
    # held-out training identities, galleries of 30-90% of their people): top-1 0.80,
    # present found 0.52, absent flagged 0.98 measured; across cuhk03's two cameras present
    # people are missed more often than absent ones are called present
    assert np.mean(top1) >= 0.7
    assert np.mean(said_present) >= 0.4
    assert 1 - np.mean(said_absent) >= 0.85
