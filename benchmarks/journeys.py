"""Benchmark: ``reid-search trace`` on multi-camera worlds built from real labelled crops.

There is no multi-camera video with ground truth here, so each world is made of the real
crops of a held-out test split, walked through its own cameras (the generator, seeded):

* every person's crops are grouped per camera; each group is one **visit** (one tracklet of
  at most ``MAX_CROPS`` crops, a crop every ``DWELL`` seconds);
* a person visits their cameras in a random order, starting at a random time within
  ``WINDOW`` seconds, travelling ``TRAVEL`` seconds (uniform) between cameras: about a hundred
  people in one hour, several in view of one camera at once;
* a fifth of the people (``DISTRACTORS``) keep one random camera only: they appear once;
* the gallery is what a user's cameras and tracker give: the crops under hashed names with a
  CSV of camera, time and tracklet (``index --layout unlabelled --metadata``), never the person.

Every person seen on two or more cameras is a query: a crop of their first visit traces them.
A visit found counts as right when most of its crops are that person's; visit recall is the
share of the person's visits found right, precision the share of found visits that are right,
each averaged over the queries, with and without the physical constraints and the query
expansion, and by the query's identity (``trace --by identity`` after ``identities``: the
sightings the gallery-wide linking gave the query's best match). trace's expansion (two
rounds, the query plus each kept visit's mean) was chosen among twelve variants (rounds 1-2;
the crops' mean, the visits' mean or their sum; all visits or the confident ones) by the best
min(precision, recall) on the market world.

Worlds: ``market`` (the market1501-train split's 100 test people, 6 cameras; NOT the published
Market-1501 protocol), ``conreid`` (131 people, 6 cameras; test only, inference only),
``cuhk03`` (cuhk03-mars ``bbox_test``, 100 people, 2 cameras).

    python benchmarks/journeys.py [--world market ...]
    python benchmarks/journeys.py --calibrate   # choose identities' link settings (below)
    python benchmarks/journeys.py --intel       # the Intel sample video: identities, before and after adapt
    python benchmarks/journeys.py --ceiling     # what the linking threshold alone can reach (an oracle sweep)
    python benchmarks/journeys.py --peer retail-0277   # the same code on a stronger public model's embedding

``--calibrate`` chooses :class:`LinkSettings` (k-reciprocal neighbours, the cosine's weight,
the agreement two groups need) without any test world: the same generator walks the people
the default model held out of its own training data (``train``'s identity split of each of
its datasets, the people its card's threshold was fitted on) into calibration worlds (three
walks of each), and the setting with the best mean IDF1 over them is the product's default.

Writes ``benchmarks/results/journeys.json``.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import asdict
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from _common import DATA, DEFAULT_MODEL, PEER_CARDS, REPO, read_result, write_json, write_result

from reid_search.embedding.embedder import Embedder
from reid_search.gallery import build_gallery
from reid_search.journeys import trace_vector
from reid_search.journeys.identities import LinkSettings, link_identities, sightings, stored_identities

WORLDS = {
    "market": DATA / "market1501-train" / "bounding_box_test",
    "conreid": DATA / "conreid" / "bounding_box_test",
    "cuhk03": DATA / "cuhk03-mars" / "bbox_test",
}
MARKET_NAME = re.compile(r"^(\d+)_c(\d+)s\d+_\d+_\d+\.jpg$")
MARS_NAME = re.compile(r"^(\d{4})C(\d)T\d{4}F\d{3}\.jpg$")
MAX_CROPS, DWELL, WINDOW, TRAVEL, DISTRACTORS = 12, 2.0, 3600.0, (60.0, 600.0), 0.2
START = datetime(2026, 11, 25, 9, 0, 0)
INTEL_VIDEO = DATA.parent / "video" / "intel-sample" / "one-by-one-person-detection.mp4"
INTEL_PEOPLE = 6  # one after another, one tracklet each (docs/indexing.md; tests/test_video.py checks it)
DETECTOR = REPO / "benchmarks" / "detectors" / "person-detection-0202.card.json"
WORK = Path(tempfile.gettempdir()) / "reid-search-journeys-bench"
VARIANTS = {  # trace's settings measured (after `identities` with its defaults)
    "by the query": {"by": "query"},
    "by the query, no constraints": {"by": "query", "constraints": False},
    "by the query, one expansion round": {"by": "query", "expand": 1},
    "by the query, no expansion": {"by": "query", "expand": 0},
    "by the query's identity (the default)": {"by": "identity"},  # what by="auto" does here
}


def person_camera(name: str) -> tuple[str, int] | None:
    m = MARKET_NAME.match(name) or MARS_NAME.match(name)
    if not m or m.group(1) in ("0000", "-1"):
        return None
    return m.group(1), int(m.group(2))


def make_world(crops: Path, out: Path, seed: int = 0) -> dict:
    """Write the world (hashed symlinks + ``world.csv``); returns its truth: person of every
    file, the true visits (person, camera, tracklet) and the queries."""
    rng = np.random.default_rng(seed)
    groups: dict[str, dict[int, list[Path]]] = defaultdict(lambda: defaultdict(list))
    for path in sorted(crops.rglob("*.jpg")):
        found = person_camera(path.name)
        if found:
            groups[found[0]][found[1]].append(path)
    if out.exists():
        shutil.rmtree(out)
    (out / "crops").mkdir(parents=True)
    rows, person_of, visits, queries = [], {}, [], []
    tracklet = 0
    for person in sorted(groups):
        cameras = sorted(groups[person])
        if rng.random() < DISTRACTORS:
            cameras = [cameras[rng.integers(len(cameras))]]
        cameras = [cameras[i] for i in rng.permutation(len(cameras))]
        moment = START + timedelta(seconds=float(rng.uniform(0, WINDOW)))
        first_crops = []
        for n, camera in enumerate(cameras):
            tracklet += 1
            picked = groups[person][camera]
            picked = [
                picked[i] for i in sorted(rng.choice(len(picked), min(MAX_CROPS, len(picked)), replace=False))
            ]
            for k, path in enumerate(picked):
                name = hashlib.sha256(f"journeys|{path.name}".encode()).hexdigest()[:16] + ".jpg"
                os.symlink(path, out / "crops" / name)
                seen = moment + timedelta(seconds=DWELL * k)
                rows.append((name, camera, seen.isoformat(), tracklet))
                person_of[name] = person
                if n == 0:
                    first_crops.append(name)
            visits.append((person, camera, tracklet))
            moment += timedelta(seconds=DWELL * len(picked) + float(rng.uniform(*TRAVEL)))
        if len(cameras) >= 2:
            queries.append((person, first_crops[len(first_crops) // 2]))
    with open(out / "world.csv", "w", newline="") as handle:
        csv.writer(handle).writerows([("path", "camera", "time", "tracklet"), *rows])
    return {"person_of": person_of, "visits": visits, "queries": queries}


def score(journey, person: str, truth: dict) -> tuple[float, float]:
    """(visit precision, visit recall) of one traced journey against the person's true visits."""
    true_visits = {(p, c, t) for p, c, t in truth["visits"] if p == person}
    right = set()
    correct = 0
    for visit in journey.visits:
        names = [Path(e.path).name for e in visit.entries]
        owner, votes = Counter(truth["person_of"][n] for n in names).most_common(1)[0]
        if owner == person and votes * 2 > len(names):
            correct += 1
            right |= {
                v for v in true_visits if v[1] == visit.camera and v[2] in {e.tracklet for e in visit.entries}
            }
    precision = correct / len(journey.visits) if journey.visits else 1.0
    return precision, len(right) / len(true_visits)


def world_gallery(world: str, embedder: Embedder, tag: str = "") -> tuple[dict, object]:
    """(truth, gallery) of a test world, written and indexed afresh (in ``WORK/world+tag``)."""
    folder = WORK / f"{world}{tag}"
    truth = make_world(WORLDS[world], folder)
    gallery, _ = build_gallery(folder / "crops", "world", embedder, layout="unlabelled",
                               metadata=folder / "world.csv", indexes_dir=folder / "indexes", progress=False,
                               rebuild=True)  # fmt: skip
    return truth, gallery


def run_world(world: str, embedder: Embedder) -> dict:
    started = time.perf_counter()
    truth, gallery = world_gallery(world, embedder)
    index_seconds = time.perf_counter() - started
    results = {}
    started = time.perf_counter()
    with gallery.writing():
        link_identities(gallery, rebuild=True)  # what trace --by identity reads
    for label, settings in VARIANTS.items():
        precision, recall = trace_scores(gallery, truth, embedder.card, settings)
        results[label] = {"visit_precision": round(precision, 4), "visit_recall": round(recall, 4)}
    identities = {}
    for label, constraints, settings in (
        ("identities with constraints", True, LinkSettings()),
        ("identities without constraints", False, LinkSettings()),
        ("identities by cosine only", True, LinkSettings(neighbours=0)),
    ):
        with gallery.writing():
            report = link_identities(gallery, settings=settings, constraints=constraints, rebuild=True)
        identities[label] = {
            "idf1": idf1(gallery, truth), "found": report.identities, "seconds": round(report.seconds, 1),
            "refused_merges": report.constraint_refusals,
        }  # fmt: skip
    gallery.close()
    row = {
        "world": world, "crops": len(truth["person_of"]), "people": len({p for p, _, _ in truth["visits"]}),
        "visits": len(truth["visits"]), "queries": len(truth["queries"]), "model": str(DEFAULT_MODEL.name),
        "index_seconds": round(index_seconds, 1), "trace_seconds": round(time.perf_counter() - started, 1),
        **results, **identities,
    }  # fmt: skip
    print(row, flush=True)
    return row


def scale_run(crops: int, seed: int = 0) -> dict:
    """``identities`` on a gallery of ``crops`` entries (timing; the gallery built from a vectors
    file through build_gallery's precomputed path): one person a 40 crops, 8-crop tracklets
    over 6 cameras and 10 hours; each person's vectors a unit centre plus a camera offset and
    noise (so linking has real work: links, merges and constraint checks)."""
    from reid_search.embedding.vectors import VectorsFile

    rng = np.random.default_rng(seed)
    folder = WORK / f"scale-{crops}"
    if folder.exists():
        shutil.rmtree(folder)
    (folder / "crops").mkdir(parents=True)
    people, dim = crops // 40, 256
    centres = rng.normal(size=(people, dim))
    offsets = rng.normal(size=(6, dim)) * 0.4
    rows, names, vectors = [], [], []
    for t in range(crops // 8):
        person, camera = int(rng.integers(people)), int(rng.integers(1, 7))
        start = START + timedelta(seconds=float(rng.uniform(0, 36000)))
        for k in range(8):
            name = f"{t:06d}-{k}.jpg"
            (folder / "crops" / name).write_bytes(b"\xff\xd8")  # never decoded: the vectors stand in
            names.append(name)
            vectors.append(centres[person] + offsets[camera - 1] + rng.normal(size=dim) * 0.5)
            rows.append((name, camera, (start + timedelta(seconds=k)).isoformat(), t + 1))
    with open(folder / "world.csv", "w", newline="") as handle:
        csv.writer(handle).writerows([("path", "camera", "time", "tracklet"), *rows])
    embeddings = np.array(vectors, np.float32)
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    card = Embedder(DEFAULT_MODEL)
    table = VectorsFile(names, embeddings, card.card.name, card.model_sha256)
    started = time.perf_counter()
    gallery, _ = build_gallery(
        folder / "crops", "scale", None, layout="unlabelled", metadata=folder / "world.csv",
        indexes_dir=folder / "indexes", progress=False, rebuild=True, vectors=table,
    )  # fmt: skip
    built = time.perf_counter() - started
    with gallery.writing():
        report = link_identities(gallery, threshold=0.5)
    gallery.close()
    row = {"crops": crops, "sightings": report.units, "identities": report.identities, "true_people": people,
           "index_seconds": round(built, 1), "identities_seconds": round(report.seconds, 1)}  # fmt: skip
    print(row, flush=True)
    return row


CALIBRATION_GRID = {
    "neighbours": (0, 3, 4, 5, 6),
    "cosine_weight": (0.3, 0.5),
    "agreement": (0.3, 0.35, 0.4, 0.45, 0.5),
    "attach": (False, True),
}
CALIBRATION_SEEDS = (0, 1, 2)  # three walks of each dataset's people: a choice less at the mercy of one


def held_out_people(embedder: Embedder, data: str) -> Path:
    """A folder of links to the crops of the people ``embedder``'s model held out of ``data``."""
    from reid_search.calibration.fit import held_out_split
    from reid_search.data.layouts import scan_dataset
    from reid_search.data.records import split_identities

    fraction, split_seed = held_out_split(embedder.card, [data])
    scan = scan_dataset(data)
    records = scan.people_records(scan.train_records(), purpose="calibration")
    _, held_out = split_identities([r.person for r in records], fraction, split_seed)
    held = set(held_out)
    source = WORK / f"calibration-{Path(data).name}-people"
    if source.exists():
        shutil.rmtree(source)
    source.mkdir(parents=True)
    for r in records:
        if r.person in held:
            os.symlink(Path(r.path).resolve(), source / Path(r.path).name)
    return source


def calibration_world(embedder: Embedder, source: Path, seed: int) -> tuple[dict, object]:
    """(truth, gallery) of a world walked by the people of ``source`` (``seed``: the walk's)."""
    folder = WORK / f"{source.name.removesuffix('-people')}-{seed}"
    truth = make_world(source, folder, seed)
    gallery, _ = build_gallery(folder / "crops", "world", embedder, layout="unlabelled",
                               metadata=folder / "world.csv", indexes_dir=folder / "indexes", progress=False,
                               rebuild=True)  # fmt: skip
    return truth, gallery


def trace_scores(gallery, truth: dict, card, settings: dict) -> tuple[float, float]:
    """(visit precision, visit recall) of ``trace`` with ``settings``, averaged over the world's queries."""
    by_name = {Path(r["path"]).name: r["faiss_id"] for r in gallery.rows().values()}
    scores = []
    for person, crop in truth["queries"]:
        journey = trace_vector(gallery, gallery.vectors_for([by_name[crop]])[0], [crop], card, **settings)
        scores.append(score(journey, person, truth))
    precision, recall = np.mean(scores, axis=0)
    return float(precision), float(recall)


def calibrate_trace(worlds: dict, embedder: Embedder) -> dict:
    """Each trace variant on the calibration worlds (identities linked with the defaults):
    mean precision, recall and min(precision, recall) over the worlds."""
    per: dict[str, list] = defaultdict(list)
    for truth, gallery in worlds.values():
        with gallery.writing():
            link_identities(gallery, rebuild=True)
        for label, settings in VARIANTS.items():
            per[label].append(trace_scores(gallery, truth, embedder.card, settings))
    return {label: {"precision": round(float(np.mean([p for p, _ in v])), 4),
                    "recall": round(float(np.mean([r for _, r in v])), 4),
                    "min_pr": round(float(np.mean([min(p, r) for p, r in v])), 4)}
            for label, v in per.items()}  # fmt: skip


def calibration_worlds(embedder: Embedder) -> dict[str, tuple[dict, object]]:
    """Name -> (truth, gallery) of every calibration world: each dataset the model trained
    on, its held-out people walked ``CALIBRATION_SEEDS``."""
    data = [str((REPO / d).resolve()) if not Path(d).is_absolute() else d
            for d in embedder.card.training["config"]["data"]]  # fmt: skip
    sources = {Path(d).name: held_out_people(embedder, d) for d in data}
    return {f"{name} (walk {seed})": calibration_world(embedder, source, seed)
            for name, source in sources.items() for seed in CALIBRATION_SEEDS}  # fmt: skip


def calibrate(embedder: Embedder) -> dict:
    """Every setting of ``CALIBRATION_GRID`` on every calibration world; the best mean IDF1."""
    import itertools

    worlds = calibration_worlds(embedder)
    rows = []
    for values in itertools.product(*CALIBRATION_GRID.values()):
        settings = LinkSettings(**dict(zip(CALIBRATION_GRID, values, strict=True)))
        if settings.neighbours == 0 and values[1:] != (0.5, 0.5, False):
            continue  # cosine only (the earlier linking): the other knobs do nothing
        scores = {}
        for name, (truth, gallery) in worlds.items():
            with gallery.writing():
                report = link_identities(gallery, settings=settings, rebuild=True)
            scores[name] = {"idf1": idf1(gallery, truth), "found": report.identities,
                            "people": len({p for p, _, _ in truth["visits"]})}  # fmt: skip
        mean = round(float(np.mean([v["idf1"] for v in scores.values()])), 4)
        rows.append({"settings": asdict(settings), "worlds": scores, "mean_idf1": mean})
        print(rows[-1], flush=True)
    best = max(rows, key=lambda r: r["mean_idf1"])
    trace_rows = calibrate_trace(worlds, embedder)
    for _, gallery in worlds.values():
        gallery.close()
    return {"trace": trace_rows, "trace_best": max(trace_rows, key=lambda v: trace_rows[v]["min_pr"]),
            "worlds": {n: {"people": len({p for p, _, _ in t["visits"]}), "visits": len(t["visits"])}
                       for n, (t, _) in worlds.items()},
            "grid": rows, "best": best, "default": asdict(LinkSettings())}  # fmt: skip


CEILING_THRESHOLDS = (0.45, 0.50, 0.55, 0.60, 0.65, 0.70)
QUERY_CUTOFFS = (0.55, 0.60, 0.65, 0.70, 0.75, 0.80)  # trace by the query: accept a sighting at this cosine


def ceiling(embedder: Embedder, intel: dict | None) -> dict:
    """What the linking threshold alone can reach: every calibration and test world linked with
    the default settings at each of ``CEILING_THRESHOLDS`` (plus the product's own threshold,
    the card's or the one the gallery fits, and the lowest that keeps the Intel video's six
    people apart), scored against the truth: IDF1, identities found, trace by identity. A
    threshold picked on a test world's own truth is an oracle no user has: it bounds what any
    threshold rule could do with this embedding."""
    closest = (intel or {}).get("closest_pair_cosine")
    split = round(closest + 1e-4, 4) if closest is not None else None  # keeps the Intel video's people apart
    thresholds = [None, *CEILING_THRESHOLDS, *([split] if split else [])]
    worlds = {**calibration_worlds(embedder), **{w: world_gallery(w, embedder) for w in WORLDS}}
    rows = []
    for threshold in thresholds:
        per = {}
        for name, (truth, gallery) in worlds.items():
            with gallery.writing():
                report = link_identities(gallery, threshold=threshold, rebuild=True)
            precision, recall = trace_scores(gallery, truth, embedder.card, {"by": "identity"})
            per[name] = {"threshold": round(report.threshold, 4), "idf1": idf1(gallery, truth),
                         "found": report.identities, "people": len({p for p, _, _ in truth["visits"]}),
                         "trace_precision": round(precision, 4),
                         "trace_recall": round(recall, 4)}  # fmt: skip
        calibration = [v for n, v in per.items() if n not in WORLDS]
        rows.append({
            "threshold": threshold, "worlds": per,
            "calibration_idf1": round(float(np.mean([v["idf1"] for v in calibration])), 4),
            "calibration_trace": [round(float(np.mean([v[k] for v in calibration])), 4)
                                  for k in ("trace_precision", "trace_recall")],
        })  # fmt: skip
        print({k: v for k, v in rows[-1].items() if k != "worlds"}, {w: per[w] for w in WORLDS}, flush=True)
    cutoffs = {}  # trace by the query, every sighting at a cosine >= the cutoff (not the open-set rule)
    for world in WORLDS:
        truth, gallery = worlds[world]
        cutoffs[world] = {str(c): trace_scores(gallery, truth, embedder.card, {"by": "query", "min_score": c})
                          for c in QUERY_CUTOFFS}  # fmt: skip
        print(world, cutoffs[world], flush=True)
    for _, gallery in worlds.values():
        gallery.close()
    return {"rows": rows, "intel_split": split, "query_cutoffs": cutoffs}


def closest_tracklets(gallery) -> float:
    """The highest cosine between two sightings as identities compares them (tracklets' unit means)."""
    _, _, means = sightings(gallery)
    sims = means @ means.T
    np.fill_diagonal(sims, -1.0)
    return round(float(sims.max()), 4)


def peer_card(peer: str) -> Path:
    """A copy of ``peer``'s card with a same-person threshold fitted as the default model's card
    was (false-accept rate 0.1% over cross-camera pairs of the held-out people of the default's
    training datasets), so the product runs on it unchanged: the gallery's own threshold
    fitting, trace's acceptance, identities."""
    from reid_search.calibration.fit import calibrate_model

    card = json.loads(PEER_CARDS[peer].read_text())
    model = (PEER_CARDS[peer].parent / card["model_file"]).resolve()
    folder = WORK / "peers"
    out = folder / PEER_CARDS[peer].name  # beside a copy of the model's files, where a gallery looks
    if out.is_file() and json.loads(out.read_text()).get("threshold") is not None:
        return out  # fitted by an earlier run (a run stopped before the fit leaves none: fitted again)
    folder.mkdir(parents=True, exist_ok=True)
    for file in model.parent.glob(f"{model.stem}.*"):
        shutil.copyfile(file, folder / file.name)  # a copy: the gallery records the resolved model path
    card["model_file"] = model.name
    data = [str((REPO / d).resolve()) for d in Embedder(DEFAULT_MODEL).card.training["config"]["data"]]
    write_json(out, card)
    calibration = calibrate_model(Embedder(out), data, far=0.001)
    write_json(out, {**card, "threshold": calibration.threshold, "threshold_rule": calibration.rule})
    return out


def peer_run(peer: str) -> dict:
    """The same worlds, linking and trace with ``peer``'s embedding instead of the default
    model's (a diagnostic: what the journeys code gives with a stronger public model); also
    the Intel video's identities."""
    card = peer_card(peer)
    embedder = Embedder(card)
    rows = {}
    for world in WORLDS:
        truth, gallery = world_gallery(world, embedder, tag=f"-{peer}")
        with gallery.writing():
            report = link_identities(gallery, rebuild=True)
        by_identity = trace_scores(gallery, truth, embedder.card, {"by": "identity"})
        by_query = trace_scores(gallery, truth, embedder.card, {"by": "query"})
        rows[world] = {"idf1": idf1(gallery, truth), "found": report.identities,
                       "people": len({p for p, _, _ in truth["visits"]}),
                       "threshold": round(report.threshold, 4),
                       "by_identity": [round(v, 4) for v in by_identity],
                       "by_query": [round(v, 4) for v in by_query]}  # fmt: skip
        gallery.close()
        print(world, rows[world], flush=True)
    intel = intel_gallery(f"intel-{peer}", embedder)
    with intel.writing():
        found = link_identities(intel, rebuild=True).identities
    tracklets = len({r["tracklet"] for r in intel.rows().values()})
    intel.close()
    rule = json.loads(card.read_text())["threshold_rule"]
    return {"threshold": embedder.card.threshold, "threshold_rule": rule,
            "trained_on": embedder.card.training.get("data"), "worlds": rows,
            "intel": {"identities": found, "tracklets": tracklets}}  # fmt: skip


def intel_gallery(name: str, embedder: Embedder):
    """The Intel sample video indexed as tests/test_video.py does (every 2nd frame, camera 3)."""
    from reid_search.gallery.from_video import build_video_gallery
    from reid_search.video.ingest import VideoOptions

    options = VideoOptions(str(DETECTOR), detect_every=2, camera=3, start_time="2026-11-25T14:00:00")
    indexes = WORK / "intel" / "indexes"
    if (indexes / name).exists():  # a video gallery is not rebuilt in place (its crops live inside)
        shutil.rmtree(indexes / name)
    gallery, _, _ = build_video_gallery([INTEL_VIDEO], name, embedder, options, indexes_dir=indexes,
                                        progress=False)  # fmt: skip
    return gallery


def intel_row() -> dict:
    """Identities of the Intel sample video with the default model, then after the flow a user
    follows when the model confuses their people: ``adapt`` on the video's own gallery (its
    tracklets and camera, no labels; a benchmark-only model, never shipped), index again with
    it, ``identities`` again."""
    from reid_search.adaptation import AdaptConfig, adapt

    found = {}
    default = Embedder(DEFAULT_MODEL)
    gallery = intel_gallery("intel", default)
    tracklets = len({r["tracklet"] for r in gallery.rows().values()})
    with gallery.writing():
        found["default"] = link_identities(gallery, rebuild=True).identities
    closest = closest_tracklets(gallery)  # one person per tracklet here: the two most alike people
    gallery.close()
    out = WORK / "intel" / "adapted.keras"
    target = WORK / "intel" / "indexes" / "intel"
    config = AdaptConfig(target=[str(target)], out=str(out), model=str(DEFAULT_MODEL))
    resume = (out.parent / "adapted.keras.adapt" / "config.json").is_file()
    result = adapt(config, resume=resume, log=lambda line: print(f"  [intel] {line}", flush=True))
    adapted = intel_gallery("intel-adapted", Embedder(result.model_path))
    with adapted.writing():
        found["after adapt"] = link_identities(adapted, rebuild=True).identities
    adapted.close()
    card = json.loads(Path(result.model_path).with_suffix(".card.json").read_text())
    row = {"video": INTEL_VIDEO.name, "people": INTEL_PEOPLE, "tracklets": tracklets, "identities": found,
           "closest_pair_cosine": closest, "threshold": default.card.threshold,
           "adapt_minutes": round(result.seconds / 60, 1),
           "adapt_command": card["training"]["adaptation"]["command"]}  # fmt: skip
    print(row, flush=True)
    return row


def idf1(gallery, truth: dict) -> float:
    """IDF1 of the stored identities against the true people, over crops: the best one-to-one
    matching of identities to people (Hungarian), 2 IDTP / (predicted + true crops)."""
    from scipy.optimize import linear_sum_assignment

    identity_of = stored_identities(gallery)
    rows = gallery.rows(identity_of)
    pairs = [(identity_of[i], truth["person_of"][Path(r["path"]).name]) for i, r in rows.items()]
    found = {v: k for k, v in enumerate(sorted({p for p, _ in pairs}))}
    people = {v: k for k, v in enumerate(sorted({t for _, t in pairs}))}
    table = np.zeros((len(found), len(people)))
    for p, t in pairs:
        table[found[p], people[t]] += 1
    r, c = linear_sum_assignment(-table)
    return round(float(2 * table[r, c].sum() / (2 * len(pairs))), 4)


def markdown(rows: list[dict], intel: dict | None = None) -> str:
    lines = [
        "| world | people | visits | queries | "
        + " | ".join(f"{v}: precision / recall" for v in VARIANTS)
        + " |",
        "|---|---|---|---|" + "---|" * len(VARIANTS),
    ]
    for r in rows:
        cells = [f"{r[v]['visit_precision']:.3f} / {r[v]['visit_recall']:.3f}" for v in VARIANTS]
        lines.append(
            f"| {r['world']} | {r['people']} | {r['visits']} | {r['queries']} | " + " | ".join(cells) + " |"
        )
    lines += ["", "| world | people | identities: IDF1 (found) | without constraints (found) | "
              "by cosine only (found) | seconds |", "|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        kinds = ("with constraints", "without constraints", "by cosine only")
        cells = [r.get(f"identities {v}") for v in kinds]
        if all(cells):
            found = " | ".join(f"{c['idf1']:.3f} ({c['found']})" for c in cells)
            lines.append(f"| {r['world']} | {r['people']} | {found} | {cells[0]['seconds']:.1f} |")
    if intel:
        i = intel["identities"]
        lines += [
            "",
            f"The Intel sample video ({intel['people']} people one after another, "
            f"{intel['tracklets']} tracklets; `--intel`): {i['default']} identities with the "
            f"default model (it sees some of them as alike), {i['after adapt']} after `adapt` on "
            f"the video's own gallery ({intel['adapt_minutes']:.1f} min) and indexing it again.",
        ]
        if "closest_pair_cosine" in intel:
            lines[-1] += (
                f" With the default model its two most alike people (two men dressed in black) have "
                f"tracklet cosine {intel['closest_pair_cosine']:.3f}, far above the model's same-person "
                f"threshold ({intel['threshold']:.3f}): no linking rule keeps them apart without "
                "splitting most true pairs elsewhere (`--ceiling` below)."
            )
    return "\n".join(lines)


def calibration_markdown(calibration: dict) -> str:
    """The link settings ``--calibrate`` chose, against cosine-only linking, per calibration world."""
    cosine = next(r for r in calibration["grid"] if r["settings"]["neighbours"] == 0)
    best = calibration["best"]
    names = list(calibration["worlds"])
    header = (
        "| calibration world (held-out training people) | people | visits | "
        "IDF1, chosen settings (found) | IDF1, cosine only (found) |"
    )
    lines = [header, "|---|---|---|---|---|"]
    for name in names:
        w, b, c = calibration["worlds"][name], best["worlds"][name], cosine["worlds"][name]
        lines.append(f"| {name} | {w['people']} | {w['visits']} | {b['idf1']:.3f} ({b['found']}) | "
                     f"{c['idf1']:.3f} ({c['found']}) |")  # fmt: skip
    lines.append(f"| mean | | | {best['mean_idf1']:.3f} | {cosine['mean_idf1']:.3f} |")
    chosen = ", ".join(f"{k} {v}" for k, v in best["settings"].items())
    lines += ["", f"Chosen among {len(calibration['grid'])} settings: {chosen}."]
    if "trace" in calibration:
        lines += ["", "| trace on the calibration worlds | precision | recall | mean min(P, R) |"]
        lines.append("|---|---|---|---|")
        for label, t in calibration["trace"].items():
            lines.append(f"| {label} | {t['precision']:.3f} | {t['recall']:.3f} | {t['min_pr']:.3f} |")
    return "\n".join(lines)


def peers_markdown(result: dict) -> str:
    """The same worlds and code on a peer's embedding (``--peer``) against the default model's."""
    rows = {r["world"]: r for r in result["rows"]}
    ours = "by the query's identity (the default)"
    lines = ["| embedding | " + " | ".join(f"{w}: trace P / R | IDF1 (found)" for w in WORLDS)
             + " | Intel video: identities for its 6 people |",
             "|---|" + "---|---|" * len(WORLDS) + "---|"]  # fmt: skip
    cells = [f"{rows[w][ours]['visit_precision']:.3f} / {rows[w][ours]['visit_recall']:.3f} | "
             f"{rows[w]['identities with constraints']['idf1']:.3f} "
             f"({rows[w]['identities with constraints']['found']})" for w in WORLDS]  # fmt: skip
    intel = result.get("intel", {}).get("identities", {}).get("default", "-")
    lines.append("| the default model | " + " | ".join(cells) + f" | {intel} |")
    for peer, run in result.get("peers", {}).items():
        cells = [f"{v['by_identity'][0]:.3f} / {v['by_identity'][1]:.3f} | {v['idf1']:.3f} ({v['found']})"
                 for v in (run["worlds"][w] for w in WORLDS)]  # fmt: skip
        label = f"{peer} (threshold {run['threshold']:.3f}, fitted as the default's)"
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {run['intel']['identities']} |")
    return "\n".join(lines)


def ceiling_markdown(result: dict) -> str:
    """The threshold sweep of ``--ceiling``: calibration means and each test world, per threshold."""
    ceiling = result["ceiling"]
    lines = [
        "| linking threshold | calibration worlds: mean IDF1 | trace by identity P / R | "
        + " | ".join(f"{w}: IDF1 (found) | trace P / R" for w in WORLDS) + " |",
        "|---|---|---|" + "---|---|" * len(WORLDS),
    ]  # fmt: skip
    for row in ceiling["rows"]:
        if row["threshold"] is None:
            label = "the product's (card's, or fitted on the gallery)"
        elif row["threshold"] == ceiling.get("intel_split"):
            label = f"{row['threshold']:.3f} (keeps the Intel video's six people apart)"
        else:
            label = f"{row['threshold']:.2f}"
        cells = []
        for w in WORLDS:
            v = row["worlds"][w]
            cells.append(f"{v['idf1']:.3f} ({v['found']} for {v['people']}) | "
                         f"{v['trace_precision']:.3f} / {v['trace_recall']:.3f}")  # fmt: skip
        p, r = row["calibration_trace"]
        head = f"| {label} | {row['calibration_idf1']:.3f} | {p:.3f} / {r:.3f} | "
        lines.append(head + " | ".join(cells) + " |")
    if "query_cutoffs" in ceiling:
        cut = ceiling["query_cutoffs"]
        header = "| trace by the query, accepting at cosine | " + " | ".join(f"{w}: P / R" for w in cut)
        lines += ["", header + " |", "|---|" + "---|" * len(cut)]
        for c in next(iter(cut.values())):
            lines.append(
                f"| {float(c):.2f} | "
                + " | ".join(f"{cut[w][c][0]:.3f} / {cut[w][c][1]:.3f}" for w in cut)
                + " |"
            )
    if result.get("peers"):
        lines += ["", peers_markdown(result)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", action="append", choices=list(WORLDS), help="default: all")
    parser.add_argument("--scale", type=int, help="only time identities on a gallery of this many crops")
    parser.add_argument("--calibrate", action="store_true", help="only choose the link settings (see above)")
    parser.add_argument("--intel", action="store_true", help="only the Intel sample video's identities")
    parser.add_argument("--ceiling", action="store_true", help="only the threshold sweep (ceiling())")
    parser.add_argument("--peer", choices=list(PEER_CARDS), help="only the worlds with a peer's embedding")
    args = parser.parse_args()
    if args.peer:
        result = read_result("journeys", {"rows": []})
        result.setdefault("peers", {})[args.peer] = peer_run(args.peer)
        write_result("journeys", result)
        return
    if args.ceiling:
        result = read_result("journeys", {"rows": []})
        result["ceiling"] = ceiling(Embedder(DEFAULT_MODEL), result.get("intel"))
        write_result("journeys", result)
        print(ceiling_markdown(result))
        return
    if args.intel:
        result = read_result("journeys", {"rows": []})
        result["intel"] = intel_row()
        write_result("journeys", result)
        return
    if args.calibrate:
        result = read_result("journeys", {"rows": []})
        result["calibration"] = calibrate(Embedder(DEFAULT_MODEL))
        write_result("journeys", result)
        print("best:", result["calibration"]["best"])
        return
    if args.scale:
        result = read_result("journeys", {"rows": []})
        result["scale"] = scale_run(args.scale)
        write_result("journeys", result)
        return
    embedder = Embedder(DEFAULT_MODEL)
    rows = {r["world"]: r for r in read_result("journeys", {"rows": []})["rows"]}
    for world in args.world or list(WORLDS):
        rows[world] = run_world(world, embedder)
        previous = read_result("journeys", {"rows": []})
        write_result("journeys", {**previous, "rows": [rows[w] for w in WORLDS if w in rows]})
    print(markdown([rows[w] for w in WORLDS if w in rows]))


if __name__ == "__main__":
    main()
