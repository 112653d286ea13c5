"""Benchmark: attributes and search by description (``reid-search find``), on held-out people.

The labelled crops are ``../shared/data/extra-crops`` (PETA's attribute labels, per person).
The people split is the shipped head's (its card lists the test people; they were never
trained on). Measured, all through the project's own code:

1. **Attribute accuracy** (PETA's mA, instance F1, calibration error) of the shipped head
   (the embedding route: a linear layer over the default model's stored vectors), scored again
   here on its test people; the same recipe over ``market-only`` (a model that never saw
   extra-crops' images: how much the default tower's having seen them, without labels, helps);
   with ``--tower``, the other route: a copy of the default's backbone fine-tuned with an
   attribute head on the same training people (its mA and what it costs per image).
2. **Description search** in a gallery of all test people's crops (attributes given at index
   time): for each test person, queries of 2 and of 4 of their own labels (seeded); precision
   of the top 10 entries (an entry counts when its person's labels hold everything asked) and
   the rank of the person's first crop.
3. **Cost**: index throughput without and with attributes (same run, same images) and query
   latency on both galleries.

    python benchmarks/attributes.py [--tower]
    python benchmarks/attributes.py --candidate attr-e30=runs/attr-e30/model.keras   # another model
    python benchmarks/attributes.py --ceiling   # other inputs to the same recipe (only these run)

``--ceiling`` asks whether the embedding route's limit is our model or the labels: the same
recipe (linear layer, Platt, same people split) over the vectors of a strong public re-ID
model (Intel's retail-0277, the teacher whose embeddings ship with extra-crops), and over the
default's vectors joined with clothing colour histograms read from the pixels
(:mod:`reid_search.calibration.lookalikes`); description search precision@10 is ranked offline
from the held-out probabilities, as ``find`` ranks (product of the asked terms' probabilities).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import DATA, DEFAULT_MODEL, MODELS, REPO, read_result, write_result

from reid_search.attributes.head import AttributeHead
from reid_search.attributes.labels import read_labels
from reid_search.attributes.train import (
    AttributeTrainConfig,
    fit_calibrated_head,
    score_head,
    train_attribute_head,
)
from reid_search.attributes.vocabulary import DescriptionError, parse_description
from reid_search.embedding.embedder import Embedder
from reid_search.gallery import Gallery
from reid_search.gallery.build import build_gallery
from reid_search.search.find import FindOptions, find_by_description
from reid_search.search.query import QueryOptions, answer_vector

HEAD = REPO / "reid_search" / "models" / "default.attributes.npz"
LABELLED = DATA / "extra-crops"
WORDS = {  # attribute -> how a witness would say it (ages 30-59 have no one word: left out)
    "male": "man", "age_under_30": "young", "age_60_plus": "elderly", "short_sleeve": "short sleeves",
    "trousers": "trousers", "jeans": "jeans", "shorts": "shorts", "skirt": "skirt", "backpack": "backpack",
    "messenger_bag": "messenger bag", "plastic_bag": "plastic bag", "bag": "bag", "hat": "hat",
    "long_hair": "long hair",
}  # fmt: skip


def word_of(name: str) -> str:
    if name.startswith(("upper_", "lower_")):
        part, colour = name.split("_", 1)
        return f"{colour} {'top' if part == 'upper' else 'bottoms'}"
    return WORDS[name]


def describable(row: np.ndarray, names: tuple[str, ...]) -> list[tuple[str, str, bool]]:
    """(attribute, words, wanted value) a person's own labels can be asked by."""
    out = []
    for name, value in zip(names, row, strict=True):
        if value > 0.5 and (name in WORDS or name.startswith(("upper_", "lower_"))):
            out.append((name, word_of(name), True))
    if row[names.index("male")] < 0.5:
        out.append(("male", "woman", False))
    return out


def accuracy_rows(head: AttributeHead, labels, test) -> list[dict]:
    embedded = {}
    for model in (DEFAULT_MODEL, MODELS / "market-only.keras"):
        vectors, used, _ = Embedder(model).embed_files([labels.paths[i] for i in np.flatnonzero(test)])
        embedded[model.stem] = vectors
    rows = [{"route": "embedding (shipped head)", "model": "default", **score_head(head, embedded["default"],
             labels.matrix[test])}]  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        config = AttributeTrainConfig(
            [str(LABELLED)], f"{tmp}/m.attributes.npz", str(MODELS / "market-only.keras")
        )
        other = train_attribute_head(config, print)
    rows.append(
        {"route": "embedding", "model": "market-only (never saw extra-crops)", **other.card["metrics"]}
    )
    return rows


def description_queries(labels, test, terms: int, seed: int = 0) -> list[dict]:
    """One query of ``terms`` of each test person's own labels (persons with fewer are left out)."""
    rng = np.random.default_rng(seed + terms)
    out = []
    for person in sorted(set(labels.persons[test].tolist())):
        row = labels.matrix[labels.persons == person][0]
        can = describable(row, labels.names)
        if len(can) < terms:
            continue
        picked = [can[i] for i in sorted(rng.choice(len(can), terms, replace=False))]
        text = ", ".join(p[1] for p in picked)
        try:
            parse_description(text)
        except DescriptionError:  # labels no witness would give together (jeans and shorts: 12 people)
            continue
        out.append({"person": person, "text": text, "asked": picked})
    return out


def search_rows(gallery, labels) -> dict:
    """Precision@10 and first-crop rank of description queries over the test people's gallery."""
    person_of = {str(p): labels.persons[i] for i, p in enumerate(labels.paths)}
    row_of = {p: labels.matrix[labels.persons == p][0] for p in set(labels.persons.tolist())}
    names = labels.names
    test = np.ones(len(labels.paths), bool)
    out = {}
    for terms in (2, 3, 4):
        precisions, first_ranks, seconds = [], [], []
        for q in description_queries(labels, test, terms):
            started = time.perf_counter()
            result = find_by_description(gallery, q["text"], FindOptions(top_k=1000, matches=1, by="entry"))
            seconds.append(time.perf_counter() - started)
            people = [person_of[str(Path(h.matches[0].path).resolve())] for h in result.identities]
            fits = [
                all((row_of[p][names.index(a)] > 0.5) == want for a, _, want in q["asked"]) for p in people
            ]
            precisions.append(float(np.mean(fits[:10])))
            first_ranks.append(people.index(q["person"]) + 1 if q["person"] in people else len(people) + 1)
        out[f"{terms}_terms"] = {
            "queries": len(precisions),
            "precision_at_10": round(float(np.mean(precisions)), 4),
            "median_first_rank": float(np.median(first_ranks)),
            "first_in_top_10": round(float(np.mean(np.array(first_ranks) <= 10)), 4),
            "find_ms_median": round(1000 * statistics.median(seconds), 1),
            "example": description_queries(labels, test, terms)[0]["text"],
        }
        print(f"{terms} terms: {out[f'{terms}_terms']}")
    return out


def build_test_gallery(folder: Path, name: str, indexes: Path, attributes: bool, embedder: Embedder):
    """The gallery and its index throughput (images per second, the model already loaded)."""
    started = time.perf_counter()
    gallery, report = build_gallery(folder, name, embedder, indexes_dir=indexes, progress=False,
                                    attributes=attributes)  # fmt: skip
    return gallery, report.images_embedded / (time.perf_counter() - started)


def query_ms(gallery, vectors: np.ndarray, where: str | None = None) -> float:
    card = Embedder().card
    options = QueryOptions(top_k=10, where=where)
    times = []
    for v in vectors:
        started = time.perf_counter()
        answer_vector(gallery, v, ["q.jpg"], card=card, options=options)
        times.append(time.perf_counter() - started)
    return round(1000 * statistics.median(times), 2)


def link_test_crops(labels, test: np.ndarray, folder: Path) -> None:
    """The test people's crops as one flat folder of links (an unlabelled gallery's input)."""
    folder.mkdir()
    for i in np.flatnonzero(test):
        source = labels.paths[i].resolve()
        os.symlink(source, folder / f"{source.parent.name}_{source.name}")


def test_labels_of(labels, test: np.ndarray):
    chosen = labels.subset(test)
    chosen.paths = [p.resolve() for p in chosen.paths]
    return chosen


def cost_and_search(labels, test: np.ndarray, tmp: Path) -> tuple[dict, dict]:
    """Description search with the shipped head, and what attributes cost at index and query time."""
    folder, indexes = tmp / "crops", tmp / "indexes"
    link_test_crops(labels, test, folder)
    embedder = Embedder()
    build_test_gallery(folder, "warm-up", indexes, False, embedder)[0].close()
    rates: dict[bool, list[float]] = {False: [], True: []}
    kind = {False: "plain", True: "described"}
    for repeat in range(3):  # alternating which goes first, so drift and warm caches hit both alike
        for attributes in (False, True) if repeat % 2 == 0 else (True, False):
            built, rate = build_test_gallery(
                folder, f"{kind[attributes]}-{repeat}", indexes, attributes, embedder
            )
            rates[attributes].append(rate)
            built.close()
    plain_rate, rate = (statistics.median(rates[a]) for a in (False, True))
    plain, gallery = (Gallery.open(indexes / f"{kind[a]}-0") for a in (False, True))
    search = search_rows(gallery, test_labels_of(labels, test))
    _, vectors = gallery.vectors()
    sample = vectors[:: max(1, len(vectors) // 50)]
    cost = {
        "images": int(test.sum()),
        "index_images_per_second": {"without": round(plain_rate, 1), "with": round(rate, 1)},
        "index_runs": {kind[a]: [round(r, 1) for r in rates[a]] for a in (False, True)},
        "query_ms_median": {"without": query_ms(plain, sample), "with": query_ms(gallery, sample),
                            "with --where backpack": query_ms(gallery, sample, "backpack")},
    }  # fmt: skip
    plain.close()
    gallery.close()
    return search, cost


def candidate_row(name: str, model: Path, labels, test: np.ndarray) -> dict:
    """Another model's attributes: a head trained on its embeddings (same split), and the same
    description search over a gallery it embedded."""
    with tempfile.TemporaryDirectory() as tmp:
        config = AttributeTrainConfig([str(LABELLED)], f"{tmp}/{name}.attributes.npz", str(model))
        head = train_attribute_head(config, print)
        link_test_crops(labels, test, Path(tmp) / "crops")
        indexes = Path(tmp) / "indexes"
        gallery, _ = build_gallery(Path(tmp) / "crops", name, Embedder(model), indexes_dir=indexes,
                                   progress=False, attributes=False)  # fmt: skip
        gallery.fill_attributes(head)
        search = search_rows(gallery, test_labels_of(labels, test))
        gallery.close()
    return {
        "route": "embedding",
        "model": name,
        "model_file": str(model),
        **head.card["metrics"],
        "search": search,
    }


def offline_precision(probabilities: np.ndarray, labels) -> dict[str, float]:
    """precision@10 of the description queries over ``labels``' crops, ranked by the product of
    the asked terms' probabilities (``find``'s order) from ``probabilities`` (one row per crop)."""
    names, out = labels.names, {}
    everyone = np.ones(len(labels.paths), bool)
    for terms in (2, 3, 4):
        precisions = []
        for q in description_queries(labels, everyone, terms):
            fits, score = np.ones(len(labels.paths), bool), np.zeros(len(labels.paths))
            for a, _, want in q["asked"]:
                j = names.index(a)
                fits &= (labels.matrix[:, j] > 0.5) == want
                score += np.log(np.clip(probabilities[:, j] if want else 1 - probabilities[:, j], 1e-6, 1))
            precisions.append(float(fits[np.argsort(-score, kind="stable")[:10]].mean()))
        out[f"{terms}_terms"] = round(float(np.mean(precisions)), 4)
    return out


def ceiling_rows(labels, test: np.ndarray) -> list[dict]:
    """The shipped recipe over other inputs (see ``--ceiling`` in the module docstring)."""
    from reid_search.calibration.lookalikes import clothing_descriptors

    ours, used, _ = Embedder(DEFAULT_MODEL).embed_files(labels.paths)
    colours, seen = clothing_descriptors(labels.paths)
    if len(used) != len(labels.paths) or len(seen) != len(labels.paths):
        raise SystemExit("an extra-crops image could not be read")
    teacher = np.load(LABELLED / "teacher-omz0277.npz")
    row_of = {str(p): i for i, p in enumerate(teacher["paths"])}
    root = LABELLED.resolve()
    rows = [row_of[p.resolve().relative_to(root).as_posix()] for p in labels.paths]
    strong = teacher["embeddings"][rows].astype(np.float32)
    strong /= np.linalg.norm(strong, axis=1, keepdims=True)
    inputs = {
        "default model's embedding (the shipped recipe, refitted)": ours,
        "retail-0277's embedding (a strong public re-ID model)": strong,
        "both embeddings joined": np.concatenate([ours, strong], axis=1),
        "default embedding + clothing colour histograms (pixels)": np.concatenate([ours, colours], axis=1),
    }
    config = AttributeTrainConfig([str(LABELLED)], "unused.attributes.npz")
    out = []
    for name, vectors in inputs.items():
        head, metrics = fit_calibrated_head(vectors, labels, test, config)
        precision = offline_precision(head.probabilities(vectors[test]), labels.subset(test))
        out.append({"input": name, "dim": int(vectors.shape[1]), "mA": metrics["mA"],
                    "instance_f1": metrics["instance"]["f1"], "precision_at_10": precision})  # fmt: skip
        print(out[-1], flush=True)
    truth = labels.subset(test)
    out.append({"input": "the labels themselves (answers ranked by truth: what the queries allow)",
                "precision_at_10": offline_precision(truth.matrix.astype(np.float32), truth)})  # fmt: skip
    print(out[-1], flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tower", action="store_true", help="also measure the fine-tuned tower route")
    parser.add_argument("--candidate", action="append", default=[],
                        help="NAME=MODEL: a head trained on it, the same search; only these run")  # fmt: skip
    parser.add_argument("--ceiling", action="store_true", help="the recipe over other inputs; only these run")
    args = parser.parse_args()
    head = AttributeHead.load(HEAD)
    labels = read_labels(LABELLED)
    test = labels.mask(set(head.card["training"]["test_people"]))
    previous = read_result("attributes", {}) or {}
    if args.ceiling:
        write_result("attributes", {**previous, "ceiling": ceiling_rows(labels, test)})
        return
    if args.candidate:
        rows = {r["model"]: r for r in previous.get("candidates", [])}
        for name, path in (c.split("=", 1) for c in args.candidate):
            rows[name] = candidate_row(name, Path(path), labels, test)
            print(name, rows[name]["mA"], {k: v["precision_at_10"] for k, v in rows[name]["search"].items()})
        write_result("attributes", {**previous, "candidates": list(rows.values())})
        return
    result = {"head": head.card["name"], "test_people": len(set(labels.persons[test].tolist())),
              "test_images": int(test.sum()), "accuracy": accuracy_rows(head, labels, test)}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        result["search"], result["cost"] = cost_and_search(labels, test, Path(tmp))
    print(result["cost"])
    if args.tower:
        from attributes_tower import tower_route

        result["accuracy"].append(tower_route(labels, test))
    else:
        result["accuracy"] += [r for r in previous.get("accuracy", []) if r["route"].startswith("tower")]
    result["candidates"] = previous.get("candidates", [])
    result["ceiling"] = previous.get("ceiling", [])
    write_result("attributes", result)
    print(json.dumps({k: v for k, v in result.items() if k != "accuracy"}, indent=1))
    for row in result["accuracy"]:
        print(row["route"], row["model"], row["mA"])


if __name__ == "__main__":
    main()
