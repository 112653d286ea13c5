"""Benchmark: a model adapts to cameras it never saw from their unlabelled crops (`reid-search adapt`).

Each cell gives the adaptation what a user has: the crops under meaningless names (symlinks
named by a salted hash) with a CSV of camera, tracklet (an opaque id) and frame (an opaque id of
one camera at one moment) where the set has them, never the person. Then it scores the start
model and the adapted one on the cell's test people, with the project's own evaluation:

* ``cuhk03``: ``benchmarks/models/lodo-no-cuhk03`` (never saw cuhk03) adapted on cuhk03-mars
  ``bbox_train`` (743 people, 2 cameras, tracklets of up to 5 frames), scored on ``bbox_test``
  (100 other people); with labels: the default model, which trained on cuhk03's labels;
* ``market``: ``lodo-no-market`` adapted on the market1501-train split's train part (651
  people, 6 cameras, no tracklets; same camera, sequence and frame number = one moment),
  scored on its 100 test people (NOT the published Market-1501 protocol);
* ``conreid`` (test only, transductive as its README allows: the test images are read, never
  their identities): the default adapted on conreid's images, scored on the same images;
* ``intel-video``: the Intel sample video indexed with the default (one camera, six visits
  of one person each, cut into tracklets), the default adapted on that gallery itself (its
  rows: camera, tracklet, time); each visit's middle crop queries all other crops: is the
  visit's own tracklet found first, before and after.

``--levers`` runs the cuhk03 cell again with each ingredient left out in turn (tracklets,
cameras, recluster, distill). ``--open-set`` runs ``benchmarks/open_set.py`` on the adapted
cuhk03 model (its re-fitted rule).

    python benchmarks/adapt.py [--cell cuhk03 ...] [--levers] [--open-set]

Writes ``benchmarks/results/adapt.json`` (rows of cells measured before are kept).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import DATA, DEFAULT_MODEL, MODELS, REPO, RESULTS, read_result, write_result
from cross_domain import run_cell

from reid_search.adaptation import INGREDIENTS, AdaptConfig, adapt
from reid_search.embedding.embedder import Embedder

MARS_NAME = re.compile(r"^(\d{4})C(\d)T(\d{4})F(\d{3})\.jpg$")
MARKET_NAME = re.compile(r"^(-?\d+)_c(\d+)s(\d+)_(\d+)_(\d+)\.jpg$")
CELLS = {
    "cuhk03": {
        "model": MODELS / "lodo-no-cuhk03.keras",
        "crops": DATA / "cuhk03-mars" / "bbox_train",
        "test_set": "cuhk03-mars bbox_test",
    },
    "market": {
        "model": MODELS / "lodo-no-market.keras",
        "crops": DATA / "market1501-train" / "bounding_box_train",
        "test_set": "market1501-train split",
    },
    "conreid": {
        "model": DEFAULT_MODEL,
        "crops": DATA / "conreid" / "bounding_box_test",
        "test_set": "conreid",
    },
    "intel-video": {},  # see video_cell
}
WORK = Path(tempfile.gettempdir()) / "reid-search-adapt-bench"


def user_view(crops: Path, out: Path) -> Path:
    """Symlinks to every crop under a salted-hash name, and ``crops.csv`` with what a user's
    cameras and tracker would know: camera, tracklet id, frame id (opaque; never the person)."""
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for path in sorted(crops.rglob("*.jpg")):
        mars, market = MARS_NAME.match(path.name), MARKET_NAME.match(path.name)
        if mars:
            person, camera, tracklet, _ = mars.groups()
            tracklet_id = hashlib.sha256(f"t|{person}|{camera}|{tracklet}".encode()).hexdigest()[:12]
            frame_id = ""
        elif market:
            _, camera, sequence, frame, _ = market.groups()
            tracklet_id, frame_id = "", f"{camera}-{sequence}-{frame}"
        else:
            continue
        name = hashlib.sha256(f"salt|{path.name}".encode()).hexdigest()[:16] + ".jpg"
        link = out / "crops" / name
        link.parent.mkdir(exist_ok=True)
        if not link.is_symlink():
            os.symlink(path, link)
        rows.append((name, int(camera), tracklet_id, frame_id))  # relative to the crops folder
    with open(out / "crops.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "camera", "tracklet", "frame"])
        writer.writerows(sorted(rows))
    return out


def score(model: Path, test_set: str) -> dict:
    embedder = Embedder(model)
    cell = run_cell(embedder, test_set, "plain")
    return {"rank1": cell["rank1"], "mAP": cell["mAP"]}


def labelled_reference(test_set: str) -> dict | None:
    """The default model's row (trained with this set's labels) from cross_domain.json."""
    for row in read_result("cross_domain", []):
        if (
            row["model"] == "default"
            and row.get("variant", "plain") == "plain"
            and row["test_set"] == test_set
        ):
            return {"rank1": row["rank1"], "mAP": row["mAP"]}
    return None


def visits_found_first(model: Path, gallery_path: Path) -> int:
    """Tracklets (visits) whose middle crop finds another crop of its own tracklet first."""
    import numpy as np

    from reid_search.gallery import Gallery

    with Gallery.open(gallery_path) as gallery:
        rows = sorted(gallery.rows().values(), key=lambda r: (r["tracklet"], r["frame"]))
    vectors, used, _ = Embedder(model).embed_files([r["path"] for r in rows])
    tracklets = np.array([rows[i]["tracklet"] for i in used])
    found = 0
    for t in np.unique(tracklets):
        mine = np.flatnonzero(tracklets == t)
        q = mine[len(mine) // 2]
        sims = vectors @ vectors[q]
        sims[q] = -np.inf
        found += int(tracklets[int(np.argmax(sims))] == t)
    return found


def video_cell(overrides: dict) -> dict:
    """The default adapted on the Intel sample video's own gallery (see the module docstring)."""
    from reid_search.gallery.from_video import build_video_gallery
    from reid_search.video.ingest import VideoOptions

    video = DATA.parent / "video" / "intel-sample" / "one-by-one-person-detection.mp4"
    card = REPO / "benchmarks" / "detectors" / "person-detection-0202.card.json"
    indexes = WORK / "video-indexes"
    if not (indexes / "intel" / "manifest.json").is_file():
        gallery, _, _ = build_video_gallery(
            [video], "intel", Embedder(DEFAULT_MODEL), VideoOptions(str(card), detect_every=2, camera=3),
            indexes_dir=indexes, progress=False,
        )  # fmt: skip
        gallery.close()
    out = WORK / "intel-video" / "adapted.keras"
    config = AdaptConfig(target=[str(indexes / "intel")], out=str(out), model=str(DEFAULT_MODEL), **overrides)
    resume = (out.parent / "adapted.keras.adapt" / "config.json").is_file()
    result = adapt(config, resume=resume, log=lambda line: print(f"  [intel-video] {line}", flush=True))
    before = visits_found_first(DEFAULT_MODEL, indexes / "intel")
    after = visits_found_first(result.model_path, indexes / "intel")
    print(f"intel-video: visits found first {before} -> {after} of {result.rounds[-1].get('clusters')}")
    return {
        "cell": "intel-video",
        "without": [],
        "test_set": "Intel sample video (its own gallery)",
        "start_model": str(DEFAULT_MODEL.relative_to(REPO)),
        "crops": len(result.target),
        "before": {"visits_found_first": before},
        "after": {"visits_found_first": after},
        "with_labels": None,
        "minutes": round(result.seconds / 60, 1),
        "clusters_per_round": [r.get("clusters") for r in result.rounds],
        "command": adapt_command_of(result.model_path),
        "model_file": str(result.model_path),
        "rules": result.extra,
    }


def adapt_command_of(model_path: Path) -> str:
    """The ``reid-search adapt`` command an adapted model's card records (also when resumed)."""
    card = json.loads(Path(model_path).with_suffix(".card.json").read_text())
    return card["training"]["adaptation"]["command"]


def run(cell: str, without: list[str], overrides: dict, tag: str = "") -> dict:
    if cell == "intel-video":
        return video_cell(overrides)
    spec = CELLS[cell]
    view = user_view(spec["crops"], WORK / f"{cell}-input")
    label = cell + "".join(f" -{w}" for w in without) + (f" @{tag}" if tag else "")
    out = WORK / label.replace(" ", "_") / "adapted.keras"
    config = AdaptConfig(
        target=[str(view / "crops")],
        metadata=str(view / "crops.csv"),
        out=str(out),
        model=str(spec["model"]),
        without=without,
        **overrides,
    )
    resume = (out.parent / "adapted.keras.adapt" / "config.json").is_file()
    started = time.perf_counter()
    result = adapt(config, resume=resume, log=lambda line: print(f"  [{label}] {line}", flush=True))
    minutes = (time.perf_counter() - started) / 60
    before = score(spec["model"], spec["test_set"])
    after = score(result.model_path, spec["test_set"])
    row = {
        "cell": cell,
        "without": without,
        "test_set": spec["test_set"],
        "start_model": str(Path(spec["model"]).relative_to(REPO)),
        "crops": len(result.target),
        "before": before,
        "after": after,
        "with_labels": labelled_reference(spec["test_set"]) if cell != "conreid" else None,
        "minutes": round(result.seconds / 60, 1),
        "minutes_this_run": round(minutes, 1),
        "clusters_per_round": [r.get("clusters") for r in result.rounds],
        "cross_camera_share_per_round": [r.get("cross_camera_clusters") for r in result.rounds],
        "command": adapt_command_of(result.model_path),
        "model_file": str(result.model_path),
        "rules": result.extra,
    }
    print(
        f"{label:<24} before {100 * before['rank1']:5.1f} / {100 * before['mAP']:5.1f}   "
        f"after {100 * after['rank1']:5.1f} / {100 * after['mAP']:5.1f}   {row['minutes']:.1f} min",
        flush=True,
    )
    return row


def settings(row: dict) -> str:
    """The settings a row was measured with that changed over time (rounds, ignored partners)."""
    words = row.get("command", "").split()

    def value(flag: str, default: str) -> str:
        return words[words.index(flag) + 1] if flag in words else default

    return f"{value('--rounds', '8')} rounds, partners {value('--ignore-partners', '0')}"


def markdown(rows: list[dict]) -> str:
    lines = [
        "| cell | left out | settings | before R1 / mAP | after R1 / mAP | with labels R1 / mAP | minutes "
        "| clusters (last round) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r.get("tag"):
            continue  # tuning variants stay in the JSON only
        ref = r.get("with_labels")
        if "visits_found_first" in r["before"]:
            before, after = (
                f"{r[k]['visits_found_first']} of 6 visits found first" for k in ("before", "after")
            )
        else:
            before, after = (
                f"{100 * r[k]['rank1']:.1f} / {100 * r[k]['mAP']:.1f}" for k in ("before", "after")
            )
        lines.append(
            f"| {r['cell']} | {', '.join(r['without']) or '-'} | {settings(r)} | {before} | {after} | "
            + (f"{100 * ref['rank1']:.1f} / {100 * ref['mAP']:.1f}" if ref else "-")
            + f" | {r['minutes']:.1f} | {(r['clusters_per_round'] or ['-'])[-1]} |"
        )
    return "\n".join(lines)


def summary(rows: list[dict]) -> str:
    """Each labelled cell against its bar (half the distance from before to with-labels)."""
    lines = []
    for r in rows:
        ref = r.get("with_labels")
        if r.get("tag") or r["without"] or not ref or "rank1" not in r["before"]:
            continue
        parts = []
        for metric, label in (("rank1", "rank-1"), ("mAP", "mAP")):
            before, after, top = (100 * x[metric] for x in (r["before"], r["after"], ref))
            bar = before + (top - before) / 2
            closed = (after - before) / (top - before) if top > before else 0.0
            verdict = "met" if after >= bar else "not met"
            parts.append(
                f"{label} {after:.1f} against {bar:.1f} ({verdict}; {100 * closed:.0f}% of the distance)"
            )
        lines.append(f"- {r['cell']}: " + "; ".join(parts))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cell", action="append", choices=list(CELLS), help="default: all")
    parser.add_argument("--levers", action="store_true", help="the cuhk03 cell with each ingredient left out")
    parser.add_argument(
        "--open-set", action="store_true", help="benchmarks/open_set.py on the adapted cuhk03 model"
    )
    parser.add_argument("--set", action="append", default=[], help="an AdaptConfig field, NAME=JSON (tuning)")
    parser.add_argument("--tag", default="", help="a tuning variant: own run folder, a row of its own")
    args = parser.parse_args()
    overrides = {k: json.loads(v) for k, v in (s.split("=", 1) for s in args.set)}
    jobs = [(c, []) for c in (args.cell or ([] if args.levers else list(CELLS)))]
    if args.levers:
        jobs += [("cuhk03", [w]) for w in INGREDIENTS]
    rows = read_result("adapt", {"rows": []})["rows"]
    for cell, without in jobs:
        row = run(cell, without, overrides, args.tag)
        if args.tag:
            row["tag"], row["overrides"] = args.tag, overrides
        key = (cell, without, args.tag)
        rows = [r for r in rows if (r["cell"], r["without"], r.get("tag", "")) != key] + [row]
        rows.sort(
            key=lambda r: (list(CELLS).index(r["cell"]), len(r["without"]), r["without"], r.get("tag", ""))
        )
        write_result("adapt", {"rows": rows})
    if args.open_set:
        model = WORK / "cuhk03" / "adapted.keras"
        out = RESULTS / "adapt_open_set.json"
        subprocess.run(
            [
                sys.executable,
                str(REPO / "benchmarks" / "open_set.py"),
                "--model",
                str(model),
                "--out",
                str(out),
            ],
            check=True,
        )
    print(markdown(rows))


if __name__ == "__main__":
    main()
