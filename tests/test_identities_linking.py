"""``identities`` links sightings by their k-reciprocal neighbourhoods, not by cosine alone.

The gallery is built from precomputed vectors (the ``--vectors`` path), so the scene is exact:
a site where everyone looks alike to the model (a shared component in every vector, as hi-vis
vests and helmets on a construction site), each person seen once on each of four cameras.
"""

from __future__ import annotations

import csv
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from reid_search.embedding.vectors import VectorsFile
from reid_search.gallery import build_gallery
from reid_search.journeys.identities import LinkSettings, link_identities, stored_identities

PEOPLE, CAMERAS, CROPS = 12, 4, 3
T0 = datetime(2026, 11, 25, 8, 0, 0)


@pytest.fixture(scope="module")
def alike_site(tmp_path_factory) -> tuple[object, dict[str, int]]:
    """(gallery, person of each file): every pair of people at cosine ~0.8, the same person's
    sightings at ~0.9; a person an hour apart from the next, ten minutes between cameras."""
    rng = np.random.default_rng(3)
    folder = tmp_path_factory.mktemp("alike")
    (folder / "crops").mkdir()
    shared = rng.normal(size=64)
    shared /= np.linalg.norm(shared)
    names, vectors, rows, person_of = [], [], [], {}
    for person in range(PEOPLE):
        own = rng.normal(size=64)
        own /= np.linalg.norm(own)
        for camera in range(1, CAMERAS + 1):
            for k in range(CROPS):
                name = f"p{person:02d}-c{camera}-{k}.jpg"
                (folder / "crops" / name).write_bytes(b"\xff\xd8")  # never decoded: the vectors stand in
                noise = rng.normal(size=64)
                vectors.append(2.0 * shared + 1.0 * own + 0.25 * noise / np.linalg.norm(noise))
                moment = T0 + timedelta(hours=person, minutes=10 * camera, seconds=k)
                rows.append((name, camera, moment.isoformat(), 100 * person + camera))
                names.append(name)
                person_of[name] = person
    with open(folder / "world.csv", "w", newline="") as handle:
        csv.writer(handle).writerows([("path", "camera", "time", "tracklet"), *rows])
    table = np.array(vectors, np.float32)
    table /= np.linalg.norm(table, axis=1, keepdims=True)
    vectors_file = VectorsFile(names, table, "synthetic", "0" * 64)
    gallery, _ = build_gallery(
        folder / "crops", "alike", None, layout="unlabelled", metadata=folder / "world.csv",
        indexes_dir=folder / "indexes", progress=False, vectors=vectors_file,
    )  # fmt: skip
    yield gallery, person_of
    gallery.close()


def people_per_identity(gallery, person_of: dict[str, int]) -> list[set[int]]:
    identity_of = stored_identities(gallery)
    groups: dict[int, set[int]] = {}
    for faiss_id, row in gallery.rows(identity_of).items():
        groups.setdefault(identity_of[faiss_id], set()).add(person_of[Path(row["path"]).name])
    return list(groups.values())


def test_people_who_all_look_alike_are_kept_apart_by_their_neighbourhoods(alike_site):
    gallery, person_of = alike_site
    with gallery.writing():
        report = link_identities(gallery, threshold=0.6, rebuild=True)
    groups = people_per_identity(gallery, person_of)
    assert report.identities == PEOPLE and all(len(g) == 1 for g in groups)  # one person each, all found
    assert report.units == PEOPLE * CAMERAS
    with gallery.writing():  # cosine alone: every pair of people clears the threshold
        cosine = link_identities(gallery, threshold=0.6, settings=LinkSettings(neighbours=0), rebuild=True)
    assert cosine.identities < PEOPLE / 2
    assert max(len(g) for g in people_per_identity(gallery, person_of)) > 1


def test_a_run_with_other_link_settings_links_everything_again(alike_site):
    gallery, _ = alike_site
    with gallery.writing():
        link_identities(gallery, threshold=0.6, rebuild=True)
        again = link_identities(gallery, threshold=0.6)  # same settings: incremental, nothing new
        other = link_identities(gallery, threshold=0.6, settings=LinkSettings(agreement=0.6))
    assert again.linked == 0 and other.linked == PEOPLE * CAMERAS


@pytest.mark.parametrize(
    ("settings", "said"),
    [(LinkSettings(neighbours=1), "neighbours must be"), (LinkSettings(cosine_weight=2.0), "cosine_weight")],
)
def test_impossible_link_settings_are_one_clear_error(alike_site, settings, said):
    from reid_search.gallery import GalleryError

    with pytest.raises(GalleryError, match=said):
        link_identities(alike_site[0], threshold=0.6, settings=settings, rebuild=True)


def test_the_default_link_settings_are_the_ones_the_calibration_chose():
    """LinkSettings' defaults are what ``benchmarks/journeys.py --calibrate`` measured best (on
    worlds of the model's held-out training people); change one without the other and this fails."""
    import json
    from dataclasses import asdict

    from .conftest import REPO

    calibration = json.loads((REPO / "benchmarks" / "results" / "journeys.json").read_text())["calibration"]
    assert calibration["best"]["settings"] == asdict(LinkSettings())
