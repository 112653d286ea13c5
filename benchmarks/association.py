"""Diagnostic: how good are adaptation's first pseudo-identities on the cuhk03 cell?

Embeds cuhk03-mars ``bbox_train`` with each model given, associates its tracklets as
``reid-search adapt`` does (camera-centred, tracklets as units, cross-camera mutual nearest;
:func:`reid_search.adaptation.clustering.associate`), and only then reads the names' person
labels to score the pseudo-identities: how many, how many span both cameras, and pair
precision / recall over crops (a pair is right when both crops are one person). The labels
never reach the association; this explains adaptation, it does not feed it.

    python benchmarks/association.py --model benchmarks/models/lodo-no-cuhk03.keras \\
        --model /tmp/reid-search-adapt-bench/cuhk03/adapted.keras

Writes ``benchmarks/results/association.json``.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

import numpy as np
from _common import DATA, write_result

from reid_search.adaptation.clustering import associate, camera_centred
from reid_search.embedding.embedder import Embedder

MARS_NAME = re.compile(r"^(\d{4})C(\d)T(\d{4})F\d{3}")


def pair_counts(labels: np.ndarray) -> int:
    return sum(n * (n - 1) // 2 for n in Counter(labels.tolist()).values())


def score(model: str) -> dict:
    paths = sorted((DATA / "cuhk03-mars" / "bbox_train").rglob("*.jpg"))
    parts = [MARS_NAME.match(p.name).groups() for p in paths]
    person = np.array([int(a) for a, _, _ in parts])
    camera = np.array([int(b) for _, b, _ in parts])
    tracklet = np.unique([f"{a}|{b}|{c}" for a, b, c in parts], return_inverse=True)[1]
    vectors, used, _ = Embedder(model).embed_files(paths)
    assert len(used) == len(paths), "every crop of bbox_train is readable"
    labels = associate(camera_centred(vectors, camera), camera, tracklet)
    kept = labels >= 0
    clusters = np.unique(labels[kept])
    spanning = sum(len(np.unique(camera[labels == c])) > 1 for c in clusters)
    right = sum(pair_counts(person[labels == c]) for c in clusters)
    found = sum(pair_counts(labels[labels == c]) for c in clusters)
    row = {
        "model": model, "crops": len(paths), "pseudo_identities": len(clusters),
        "spanning_cameras": int(spanning), "pair_precision": round(right / found, 4),
        "pair_recall": round(right / pair_counts(person), 4),
    }  # fmt: skip
    print(row, flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", required=True, help="a model file (repeatable)")
    args = parser.parse_args()
    write_result("association", {"rows": [score(str(Path(m))) for m in args.model]})


if __name__ == "__main__":
    main()
