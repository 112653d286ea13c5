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


def vector_gallery(folder: Path, name: str, sightings: list[tuple[str, int, int, np.ndarray]]):
    """A gallery of precomputed vectors: (file name, camera, tracklet, vector) each, the
    tracklet's crops a second apart, tracklets ten minutes apart in the given order."""
    (folder / "crops").mkdir(parents=True)
    rows, names = [], []
    for n, (file, camera, tracklet, _) in enumerate(sightings):
        (folder / "crops" / file).write_bytes(b"\xff\xd8")  # never decoded: the vectors stand in
        moment = T0 + timedelta(minutes=10 * (n // CROPS), seconds=n % CROPS)
        rows.append((file, camera, moment.isoformat(), tracklet))
        names.append(file)
    with open(folder / "world.csv", "w", newline="") as handle:
        csv.writer(handle).writerows([("path", "camera", "time", "tracklet"), *rows])
    table = np.array([v for *_, v in sightings], np.float32)
    table /= np.linalg.norm(table, axis=1, keepdims=True)
    vectors_file = VectorsFile(names, table, "synthetic", "0" * 64)
    gallery, _ = build_gallery(
        folder / "crops", name, None, layout="unlabelled", metadata=folder / "world.csv",
        indexes_dir=folder / "indexes", progress=False, vectors=vectors_file,
    )  # fmt: skip
    return gallery


def unit(rng, size: int = 64) -> np.ndarray:
    v = rng.normal(size=size)
    return v / np.linalg.norm(v)


@pytest.fixture(scope="module")
def alike_site(tmp_path_factory) -> tuple[object, dict[str, int]]:
    """(gallery, person of each file): every pair of people at cosine ~0.8, the same person's
    sightings at ~0.99; each person on four cameras, one tracklet of three crops on each."""
    rng = np.random.default_rng(3)
    shared = unit(rng)
    sightings, person_of = [], {}
    for person in range(PEOPLE):
        own = unit(rng)
        for camera in range(1, CAMERAS + 1):
            for k in range(CROPS):
                name = f"p{person:02d}-c{camera}-{k}.jpg"
                sightings.append((name, camera, 100 * person + camera, 2.0 * shared + own + 0.25 * unit(rng)))
                person_of[name] = person
    gallery = vector_gallery(tmp_path_factory.mktemp("alike"), "alike", sightings)
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


def test_a_sighting_its_neighbours_missed_still_joins_its_person(tmp_path):
    """A poor crop of person 0 on a fifth camera: alike enough to person 0's sightings (mean
    cosine above the threshold) but never among their nearest, so no neighbourhood links it;
    the last step attaches it, and without that step it would count as a person of its own."""
    rng = np.random.default_rng(5)
    people = [unit(rng) for _ in range(6)]
    sightings = [(f"p{p}-c{c}-{k}.jpg", c, 10 * p + c, people[p] + 0.1 * unit(rng))
                 for p in range(6) for c in range(1, 5) for k in range(CROPS)]  # fmt: skip
    poor = people[0] + 0.9 * unit(rng)
    sightings += [(f"p0-c5-{k}.jpg", 5, 5, poor + 0.05 * unit(rng)) for k in range(CROPS)]
    gallery = vector_gallery(tmp_path, "poor", sightings)
    person_of = {name: int(name[1]) for name, *_ in sightings}
    with gallery.writing():
        report = link_identities(gallery, threshold=0.5, rebuild=True)
    assert report.identities == 6 and all(len(g) == 1 for g in people_per_identity(gallery, person_of))
    with gallery.writing():
        alone = link_identities(gallery, threshold=0.5, settings=LinkSettings(attach=False), rebuild=True)
    assert alone.identities == 7
    gallery.close()


def test_trace_answers_by_identity_by_default_because_the_calibration_measured_it_better():
    """trace's ``by="auto"`` prefers the identity route; the calibration worlds must say so."""
    import inspect
    import json

    from reid_search.journeys.trace import trace_vector

    from .conftest import REPO

    calibration = json.loads((REPO / "benchmarks" / "results" / "journeys.json").read_text())["calibration"]
    assert calibration["trace_best"].startswith("by the query's identity")
    assert inspect.signature(trace_vector).parameters["by"].default == "auto"
