"""docs/models.md's numbers on the default model, rendered by ``benchmarks/readme_tables.py`` from
the default's card (validation, threshold rates), ``cross_domain.json`` with
``recipe_variants.json`` (the test sets) and ``embed_speed.json`` (speed)."""

from __future__ import annotations

import json

from _common import RESULTS

DEFAULT_CARD = "../../reid_search/models/default.card.json"  # relative to benchmarks/results
NAMES = {"cuhk03-mars": "CUHK03", "market1501-train": "Market", "cuhk01-mars": "CUHK01"}
TEST_SETS = ("cuhk03-mars bbox_test", "market1501-train split", "cuhk01-mars bbox_test", "conreid")
EARLIER = {  # earlier defaults, as rows of recipe_variants.json
    "30 Nov GeM default (the same without `--downscale`)":
        "all data: --named-crops, 30 epochs, --pooling gem (30 Nov GeM default's recipe)",
    "30 Nov default (the same, average pooling)":
        "all data: --named-crops, 30 epochs (30 Nov default's recipe)",
    "29 Nov default (extra crops teacher-only, 20 epochs)":
        "all data: extra-crops teacher only (the 29 Nov default)",
}  # fmt: skip


def default_validation(card: dict) -> str:
    v = card["metrics"]["validation"]
    parts = "; ".join(
        f"{NAMES.get(name, name)} rank-1 {100 * r['rank1']:.1f}%, mAP {100 * r['mAP']:.1f}%"
        for name, r in v["per_dataset"].items()
    )
    return (
        "10% of each labelled dataset's training identities are held out for validation (final: "
        f"{parts}; pooled {100 * v['rank1']:.1f}% / {100 * v['mAP']:.1f}%)."
    )


def _cells(rows: dict, model: str, variant: str = "plain", bold: bool = False) -> list[str]:
    out = []
    for test_set in TEST_SETS:
        r = rows.get((model, test_set, variant))
        text = "-" if r is None else f"{100 * r['rank1']:.1f} / {100 * r['mAP']:.1f}"
        out.append(f"**{text}**" if bold and r is not None else text)
    return out


def default_tests(cross_domain: list[dict]) -> str:
    variants = json.loads((RESULTS / "recipe_variants.json").read_text())
    rows = {(r["model"], r["test_set"], r.get("variant", "plain")): r for r in [*cross_domain, *variants]}
    table = [
        ("**default** (3 labelled sets + named extra crops, 30 epochs, GeM, `--downscale 0.5`)",
         _cells(rows, "default", bold=True)),
        ("default + flip test-time augmentation", _cells(rows, "default", "flip")),
        *((label, _cells(rows, model)) for label, model in EARLIER.items()),
        ("OSNet-x0.25 (MSMT17)", _cells(rows, "osnet_x0_25")),
        ("Intel retail-0288", _cells(rows, "retail-0288")),
        ("Intel retail-0277 (the teacher)", _cells(rows, "retail-0277")),
    ]  # fmt: skip
    lines = ["| model | " + " | ".join(TEST_SETS) + " |", "|---" * (len(TEST_SETS) + 1) + "|"]
    lines += [f"| {label} | " + " | ".join(cells) + " |" for label, cells in table]
    return "\n".join(lines)


def default_threshold(card: dict) -> str:
    lines = [
        f"The card's threshold: **{card['threshold']:.4f}** ({card['threshold_rule']}).",
        "",
        "| held-out identities of | false accepts | false rejects | look-alike false accepts |",
        "| --- | --- | --- | --- |",
    ]
    for name, r in card["metrics"]["threshold_rates"].items():
        lines.append(
            f"| {name} | {100 * r['false_accept']:.2f}% | {100 * r['false_reject']:.1f}% | "
            f"{100 * r['lookalike_false_accept']:.2f}% of {r['lookalike_pairs']:,} pairs |"
        )
    return "\n".join(lines)


def default_speed(result: dict) -> str:
    rows = {r["model"].split(" ")[0]: r for r in result["rows"]}
    ours, peer = rows["default"], rows["osnet_x0_25"]
    return (
        f"**Speed**: {ours['images_per_s_median']:.0f} images/s end to end in `reid-search index` from a "
        f"plain `pip install .` (median of {ours['runs']}, LiteRT, whole process), "
        f"{result['ratio_median']:.2f}x OSNet-x0.25 ({peer['images_per_s_median']:.0f} images/s) in the "
        "same runs (`python benchmarks/embed_speed.py`; see docs/benchmarks.md, Speed)."
    )
