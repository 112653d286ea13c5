"""Benchmark: "is this person in my gallery?" answered as open-set identification.

For each test set (people never trained on), each of 10 draws puts a random 60% of the
people in a gallery of **unlabelled** crops (every entry answered on its own) and lets every
person query once with one crop from a camera the gallery does not use for that query
(cuhk03-mars / cuhk01-mars: a camera-1 crop against camera-2 crops; market1501-train split
and conreid: a random crop against the other cameras). Then, at the model card's open-set
rule (chosen on the held-out identities of the training data, never here):

* DIR, detection and identification rate: people in the gallery whose best answer is
  right **and** accepted;
* FAR, false-alarm rate: people not in the gallery whose best answer is accepted;

and, for comparison, the same with the card's pairwise threshold as the accept rule, and
the DIR/FAR curve as the accept level sweeps (``open_set_curves.png``). ``best_DIR``: the
highest DIR any threshold on the best cosine reaches at FAR <= 10%, that threshold chosen on
the test set itself (an upper bound for any rule on that score: what the embedding allows);
``best_DIR_with_margin``: the same for ``score + w * margin`` at its best ``w`` (the bound of
every rule the calibration chooses from). ``--peer`` measures both bounds for the peers (e.g.
the teacher, retail-0277).
``rule_by_gallery_share``: the rule's DIR / FAR with 30%, 60% and 90% of the people in the
gallery (a rule a user can trust keeps its false alarms as the gallery grows).
``tracklet_gallery``: the card's rule for galleries of tracklets (a video's visits), on the
same gallery with its background counting each visit (person and camera) once.

    python benchmarks/open_set.py [--model PATH] [--peer retail-0277 --peer osnet_x0_25] [--out FILE.json]

Without ``--peer`` the peers' bounds of the previous results file are kept.

``--variant NAME`` also records the model's top-1 and best DIR per test set (what the
embedding allows, whatever its rule) as a row of ``benchmarks/results/open_set_variants.json``
(the open-set-variants table of docs/querying.md); with ``--from FILE.json`` that row is taken from an
earlier run's results file instead of measuring again::

    python benchmarks/open_set.py --model RUN/model.keras --out RUN/open_set.json --variant NAME
    python benchmarks/open_set.py --from RUN/open_set.json --variant NAME

Writes ``benchmarks/results/open_set.json`` and ``docs/images/open_set_curves.png`` (with
``--out FILE.json``, e.g. for a candidate model: that file only).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from _common import DATA, DEFAULT_MODEL, PEER_CARDS, REPO, RESULTS, write_json

from reid_search.calibration.open_set import (
    GALLERY_SHARES,
    PROTOCOL_SHARE,
    TRACKLETS,
    OpenSetRule,
    best_dir_at_far,
    best_dir_with_margin,
    curve,
    simulate,
)
from reid_search.data.layouts import KIND_IDENTITY, scan_dataset
from reid_search.embedding.embedder import Embedder
from reid_search.figures import pyplot, save_figure

TEST_SETS = {  # name: (folder, split or None, query camera or None)
    "cuhk03-mars bbox_test": (DATA / "cuhk03-mars" / "bbox_test", None, 1),
    "market1501-train split": (DATA / "market1501-train", "bounding_box_test", None),
    "cuhk01-mars bbox_test": (DATA / "cuhk01-mars" / "bbox_test", None, 1),
    "conreid": (DATA / "conreid", "bounding_box_test", None),
}
OUT = RESULTS / "open_set.json"
VARIANTS = RESULTS / "open_set_variants.json"
REQUIRED = ("cuhk03-mars bbox_test", 0.70, 0.10)  # test set, DIR at least, FAR at most


def embedded(embedder: Embedder, folder, split):
    records = [r for r in scan_dataset(folder).records if r.kind == KIND_IDENTITY]
    if split:
        records = [r for r in records if r.split == split]
    vectors, used, _ = embedder.embed_files([r.path for r in records])
    kept = [records[i] for i in used]
    cameras = np.array([-1 if r.camera is None else r.camera for r in kept])
    return vectors, np.array([r.person for r in kept]), cameras


def peers_best_dir(names: list[str]) -> dict[str, dict]:
    """For each peer and test set: the best DIR at FAR <= 10% (the threshold chosen on the set)."""
    out = {}
    for peer in names:
        embedder = Embedder(PEER_CARDS[peer])
        out[peer] = {}
        for name, (folder, split, query_camera) in TEST_SETS.items():
            samples = simulate(*embedded(embedder, folder, split), query_camera=query_camera)
            out[peer][name] = {
                "top1": round(float(samples.correct[samples.present].mean()), 4),
                **best_dir_at_far(samples, REQUIRED[2]),
                "with_margin": best_dir_with_margin(samples, REQUIRED[2]),
            }
            best = out[peer][name]
            print(
                f"{peer:<12} {name:<24} top-1 {100 * best['top1']:5.1f}%  best DIR {100 * best['DIR']:5.1f}%"
                f" (with the margin {100 * best['with_margin']['DIR']:5.1f}%)"
            )
    return out


def kept_peers(out: Path) -> dict:
    """The peers' bounds of the previous results file (they do not depend on the model scored)."""
    if not out.is_file():
        return {}
    kept = json.loads(out.read_text()).get("peers_best_DIR", {})
    if kept:
        print(f"peers' best DIR kept from {out} ({', '.join(kept)}; --peer NAME measures again)")
    return kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(DEFAULT_MODEL))
    parser.add_argument("--peer", action="append", default=[], choices=list(PEER_CARDS))
    parser.add_argument("--out", type=Path, default=OUT, help="results file (the figure: default only)")
    parser.add_argument("--variant", help="also record the model's bounds as this row of " + VARIANTS.name)
    parser.add_argument("--from", dest="from_file", type=Path, help="with --variant: an earlier results file")
    args = parser.parse_args()
    if args.from_file:
        if not args.variant:
            raise SystemExit("--from FILE records a variant row: give --variant NAME")
        record_variant(args.variant, json.loads(args.from_file.read_text()))
        return
    result = measure(args)
    if args.variant:
        record_variant(args.variant, result)


def measure(args) -> dict:
    """Score ``args.model`` on every test set, write ``args.out`` and return the results."""
    embedder = Embedder(args.model)
    rule = OpenSetRule.from_dict(embedder.card.open_set)
    if rule is None:
        raise SystemExit(
            f"{args.model}: its card has no open-set rule (reid-search calibrate --open-set-far)"
        )
    visit_rule = OpenSetRule.from_dict(embedder.card.open_set, TRACKLETS)
    threshold = embedder.card.threshold
    rows, curves = [], {}
    for name, (folder, split, query_camera) in TEST_SETS.items():
        vectors, persons, cameras = embedded(embedder, folder, split)
        by_size = {  # the rule on smaller and larger galleries: do its false alarms hold?
            share: simulate(vectors, persons, cameras, present_share=share, query_camera=query_camera)
            for share in GALLERY_SHARES
        }
        samples = by_size[PROTOCOL_SHARE]
        dir_rule, far_rule = samples.rates(rule.confidences(samples) >= rule.accept)
        by_share = {}
        for share, other in by_size.items():
            d, f = other.rates(rule.confidences(other) >= rule.accept)
            by_share[f"{share:g}"] = {"DIR": round(d, 4), "FAR": round(f, 4)}
        visits = simulate(vectors, persons, cameras, query_camera=query_camera, sightings=TRACKLETS)
        by_visit = visits.rates(visit_rule.confidences(visits) >= visit_rule.accept) if visit_rule else None
        dir_thr, far_thr = samples.rates(samples.score >= threshold)
        present = samples.present
        row = {
            "test_set": name,
            "queries": int(len(samples.score)),
            "present_queries": int(present.sum()),
            "top1": round(float(samples.correct[present].mean()), 4),
            "DIR": round(dir_rule, 4),
            "FAR": round(far_rule, 4),
            "threshold_DIR": round(dir_thr, 4),
            "threshold_FAR": round(far_thr, 4),
            "best_DIR": best_dir_at_far(samples, REQUIRED[2]),
            "best_DIR_with_margin": best_dir_with_margin(samples, REQUIRED[2]),
            "rule_by_gallery_share": by_share,
            "tracklet_gallery": None if by_visit is None
            else {"DIR": round(by_visit[0], 4), "FAR": round(by_visit[1], 4)},
        }  # fmt: skip
        rows.append(row)
        curves[name] = curve(samples, rule)
        print(
            f"{name:<24} top-1 {100 * row['top1']:5.1f}%  "
            f"rule: DIR {100 * dir_rule:5.1f}% FAR {100 * far_rule:5.1f}%  | pairwise threshold "
            f"{threshold}: DIR {100 * dir_thr:5.1f}% FAR {100 * far_thr:5.1f}% | best DIR at FAR "
            f"<= {REQUIRED[2]:.0%}: {100 * row['best_DIR']['DIR']:5.1f}% (with the margin "
            f"{100 * row['best_DIR_with_margin']['DIR']:5.1f}%) | rule FAR by gallery share "
            + " ".join(f"{k}: {100 * v['FAR']:.1f}%" for k, v in by_share.items())
        )
    test_set, need_dir, max_far = REQUIRED
    req = next(r for r in rows if r["test_set"] == test_set)
    result = {
        "model": str(args.model),
        "model_sha256": embedder.model_sha256,
        "rule": rule.to_dict(),
        "threshold": threshold,
        "protocol": "60% of the people in an unlabelled gallery, one query crop each, 10 draws",
        "rows": rows,
        "required": {
            "test_set": test_set,
            "DIR_at_least": need_dir,
            "FAR_at_most": max_far,
            "met": req["DIR"] >= need_dir and req["FAR"] <= max_far,
        },
        "curves": curves,
        "peers_best_DIR": peers_best_dir(args.peer) if args.peer else kept_peers(args.out),
    }
    write_json(args.out, result)
    verdict = "met" if result["required"]["met"] else "NOT met"
    print(f"required on {test_set}: DIR >= {need_dir}, FAR <= {max_far}: {verdict}")
    if args.out.resolve() == OUT:
        draw_curves(curves, max_far)
    return result


def record_variant(name: str, result: dict) -> None:
    """Put ``name``'s top-1 and best DIR per test set in VARIANTS (replacing a row of that name)."""
    row = {
        "variant": name,
        "model_file": result["model"],
        "model_sha256": result["model_sha256"],
        "cells": {
            r["test_set"]: {
                "top1": r["top1"],
                "best_DIR": r["best_DIR"]["DIR"],
                "FAR": r["best_DIR"]["FAR"],
                **(
                    {"best_DIR_with_margin": r["best_DIR_with_margin"]["DIR"]}
                    if "best_DIR_with_margin" in r
                    else {}
                ),
            }
            for r in result["rows"]
        },
    }
    rows = json.loads(VARIANTS.read_text())["rows"] if VARIANTS.is_file() else []
    names = [r["variant"] for r in rows]
    if name in names:
        rows[names.index(name)] = row  # measured again: same place in the table
    else:
        rows.append(row)
    write_json(VARIANTS, {"protocol": result["protocol"], "max_FAR": REQUIRED[2], "rows": rows})
    print(f"{VARIANTS}: row {name!r} recorded")


def draw_curves(curves: dict[str, list[dict]], max_far: float) -> None:
    """docs/images/open_set_curves.png: DIR against FAR per test set as the accept level sweeps."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    for name, points in curves.items():
        ax.plot([p["FAR"] for p in points], [p["DIR"] for p in points], label=name)
    ax.axvline(max_far, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("false-alarm rate (absent person accepted)")
    ax.set_ylabel("detection and identification rate")
    ax.set_title("open-set identification, default model")
    ax.legend(fontsize=8)
    save_figure(fig, REPO / "docs" / "images" / "open_set_curves.png")


if __name__ == "__main__":
    main()
