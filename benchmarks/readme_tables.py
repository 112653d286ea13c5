"""Write the benchmark tables of README.md and docs/ from the JSON files in benchmarks/results/.

Each table sits between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->`` markers in
README.md or a docs/ page; this script replaces what is between them, so documented
numbers always come from a benchmark run. Tables whose JSON is missing are left as they are.

    python benchmarks/readme_tables.py
"""

from __future__ import annotations

import json
import re

from _common import REPO, RESULTS  # noqa: E402

DOCUMENTS = (REPO / "README.md", *sorted((REPO / "docs").glob("*.md")))


def _load(name: str):
    path = RESULTS / name
    return json.loads(path.read_text()) if path.is_file() else None


def cross_domain_table(rows: list[dict]) -> str:
    from cross_domain import markdown

    return markdown(rows)


def scale_table(rows: list[dict]) -> str:
    lines = [
        "| index type | entries | build s | on disk | peak RSS | p50 ms | p99 ms | recall@10 | parameters |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        head = (
            f"| {r['index_type']} | {r['entries']:,} | {r['build_s']:.0f} | {r['disk_bytes'] / 1e9:.2f} GB | "
            f"{r['peak_rss_bytes'] / 1e9:.2f} GB |"
        )
        if r.get("p50_ms") is None:
            lines.append(head + " | | | |")
            continue
        used = {"IVF": "nprobe", "HNSW": "efSearch"}  # the parameter each kind of index reads
        params = (
            ", ".join(f"{name}={r['params'][name]}" for kind, name in used.items() if kind in r["index_type"])
            or "exact"
        )
        lines.append(f"{head} {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['recall_at_10']:.3f} | {params} |")
    return "\n".join(lines)


def embed_speed_table(summary: dict) -> str:
    lines = ["| model | images | runs | images/s (median) | images/s (best) |", "|---|---|---|---|---|"]
    for r in summary["rows"]:
        lines.append(
            f"| {r['model']} | {r['images']:,} | {r['runs']} | {r['images_per_s_median']:.0f} | "
            f"{r['images_per_s_best']:.0f} |"
        )
    lines.append(
        f"\nRatio default (LiteRT) / OSNet-x0.25: **{summary['ratio_median']}x** (medians), "
        f"{summary['ratio_best']}x (best runs)."
    )
    return "\n".join(lines)


def eval_speed_table(rows: list[dict]) -> str:
    lines = ["| case | queries x gallery | seconds (min) | seconds (median) |", "|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['case']} | {r['queries']:,} x {r['gallery']:,} | {r['seconds_min']:.2f} | "
            f"{r['seconds_median']:.2f} |"
        )
    return "\n".join(lines)


def levers_table(rows: list[dict]) -> str:
    """One row a lever, with its change against the base row on the first (unseen-camera) set."""
    sets = list(rows[0]["scores"]) if rows else []
    base = next((r for r in rows if r["name"] == "base"), None)
    head = " | ".join(f"{t} R1 / mAP" for t in sets)
    lines = [
        f"| lever | {head} | vs base (first set) | epochs | train min |",
        "|" + "---|" * (len(sets) + 4),
    ]
    for r in rows:
        cells = " | ".join(
            f"{100 * r['scores'][t]['rank1']:.1f} / {100 * r['scores'][t]['mAP']:.1f}" for t in sets
        )
        delta = ""
        if base and r is not base:
            d1, d2 = (100 * (r["scores"][sets[0]][m] - base["scores"][sets[0]][m]) for m in ("rank1", "mAP"))
            delta = f"{d1:+.1f} / {d2:+.1f}"
        lines.append(f"| {r['lever']} | {cells} | {delta} | {r['epochs']} | {r['train_minutes']:.0f} |")
    return "\n".join(lines)


def ray_speed_table(rows: list[dict]) -> str:
    local = next((r for r in rows if r["engine"] == "local"), None)
    lines = [
        "| engine | actors | images | seconds (median) | images/s | vs local |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = f"{r['images_per_s'] / local['images_per_s']:.2f}x" if local else ""
        actors = r["actors"] if r["actors"] is not None else "-"
        speed = f"{r['seconds']:.1f} | {r['images_per_s']:.0f}"
        lines.append(f"| {r['engine']} | {actors} | {r['images']:,} | {speed} | {ratio} |")
    return "\n".join(lines)


def _row(cells: list) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _head(names: list[str]) -> list[str]:
    return [_row(names), "|" + "---|" * len(names)]


def serve_load_table(r: dict) -> str:
    probes = r["probes_under_load"]
    lines = _head(["client threads", "queries", "errors", "queries/s", "p50 ms", "p99 ms",
                   "/api/health p99 ms", "thumbnail p99 ms"])  # fmt: skip
    for level in r["levels"]:
        probe = probes[str(level["client_threads"])]
        lines.append(
            _row(
                [
                    level["client_threads"],
                    level["queries"],
                    level["errors"],
                    f"{level['queries_per_s']:.0f}",
                    f"{level['p50_ms']:.0f}",
                    f"{level['p99_ms']:.0f}",
                    f"{probe['health']['p99_ms']:.0f}",
                    f"{probe['thumbnail']['p99_ms']:.0f}",
                ]
            )  # fmt: skip
        )
    heavy, rss = r["heavy_request"], r["server_rss_mb"]
    health = heavy["health_meanwhile"]["p99_ms"]
    lines += [
        "",
        f"{r['server_workers']} server processes; 32 clients reach **{r['scaling_32_vs_1']}x** the "
        f"queries/s of one. {heavy['request']}: HTTP {heavy['status']} in {heavy['seconds']:.2f} s, "
        f"`/api/health` p99 {health:.0f} ms meanwhile. Server memory {rss['start']:.0f} MB at start, "
        f"{rss['mid_32_clients']:.0f} -> {rss['end']:.0f} MB over the second half of the 32-client run.",
    ]
    return "\n".join(lines)


def video_table(result: dict) -> str:
    lines = _head(["detector", "recall, MOT17 frame 1", "recall / precision, 28 frames", "ms/frame", "IDF1",
                   "ID switches", "every frame: x real time, frames/s, crops/s", "every 2nd frame",
                   "tracklets (Intel sample)"])  # fmt: skip
    for r in result["rows"]:
        one, all_ = r["detection_frame_1"], r["detection_all_frames"]
        every1, every2 = r["end_to_end"]
        lines.append(
            _row(
                [
                    r["detector"],
                    f"{one['found']}/{one['ground_truth']} = {one['recall']:.2f}",
                    f"{all_['recall']:.2f} / {all_['precision']:.2f}",
                    f"{all_['ms_per_frame']:.0f}",
                    f"{r['tracking']['idf1']:.2f}",
                    r["tracking"]["id_switches"],
                    f"{every1['realtime_factor']:.1f}x, {every1['frames_per_s']:.0f}, "
                    f"{every1['crops_per_s']:.0f}",
                    f"{every2['realtime_factor']:.1f}x",
                    f"{every1['tracklets']} / {every2['tracklets']}",
                ]
            )  # fmt: skip
        )
    return "\n".join(lines)


def _bounds_text(best: float, with_margin: float | None) -> str:
    """A best DIR, and after it the best DIR with the margin when measured: "52.8%; 54.0%"."""
    return f"{100 * best:.1f}%" + (f"; {100 * with_margin:.1f}%" if with_margin is not None else "")


def open_set_table(result: dict) -> str:
    peers = result.get("peers_best_DIR", {})
    lines = _head(["test set", "queries", "top-1 right", "DIR (rule)", "FAR (rule)",
                   "rule DIR / FAR, gallery of 30%; 90% of the people", "tracklet rule DIR / FAR",
                   "DIR (pairwise threshold)",
                   "FAR (pairwise threshold)", "best DIR at FAR <= 10%: cosine; with the margin",
                   *(f"{p}: best DIR" for p in peers)])  # fmt: skip
    pct = lambda v: f"{100 * v:.1f}%"  # noqa: E731
    for r in result["rows"]:
        best = r.get("best_DIR", {}).get("DIR")
        best_margin = r.get("best_DIR_with_margin", {}).get("DIR")
        sizes = r.get("rule_by_gallery_share", {})
        by_size = "; ".join(
            f"{pct(sizes[k]['DIR'])} / {pct(sizes[k]['FAR'])}" for k in ("0.3", "0.9") if k in sizes
        )
        tracklets = r.get("tracklet_gallery")
        visits = f"{pct(tracklets['DIR'])} / {pct(tracklets['FAR'])}" if tracklets else "-"
        lines.append(_row([r["test_set"], r["queries"], pct(r["top1"]), pct(r["DIR"]), pct(r["FAR"]),
                           by_size or "-", visits, pct(r["threshold_DIR"]), pct(r["threshold_FAR"]),
                           "-" if best is None else _bounds_text(best, best_margin),
                           *(_bounds_text(peers[p][r["test_set"]]["DIR"],
                                          peers[p][r["test_set"]].get("with_margin", {}).get("DIR"))
                             for p in peers)]))  # fmt: skip
    req = result["required"]
    lines += [
        "",
        f"Rule: confidence >= {result['rule']['accept']} (false-alarm rate 10% on the held-out identities "
        f"of the training sets); pairwise threshold {result['threshold']}. Required on {req['test_set']}: "
        f"DIR >= {pct(req['DIR_at_least'])} at FAR <= {pct(req['FAR_at_most'])}: "
        f'**{"met" if req["met"] else "not met"}**. "Best DIR": the highest DIR any threshold on '
        "the best cosine reaches at FAR <= 10%, the threshold picked on the test set itself (an upper "
        'bound for a rule on that score: what the embedding allows); "with the margin": the same for '
        "cosine + w x margin over the background at its best w (the bound of every rule the calibration "
        'chooses from). "Tracklet rule": the card\'s rule for '
        "galleries of tracklets, on the same galleries with the background counting each person's visit "
        "to a camera once.",
    ]
    return "\n".join(lines)


def _variant_cell(cell: dict) -> str:
    margin = cell.get("best_DIR_with_margin")
    text = f"{100 * cell['top1']:.1f}% / {100 * cell['best_DIR']:.1f}%"
    return text + (f" ({100 * margin:.1f}%)" if margin is not None else "")


def open_set_variants_table(result: dict) -> str:
    names = list(result["rows"][0]["cells"]) if result["rows"] else []
    lines = _head(["model", *(f"{n}: top-1 / best DIR (with the margin)" for n in names)])
    pct = lambda v: f"{100 * v:.1f}%"  # noqa: E731
    for r in result["rows"]:
        cells = r["cells"]
        lines.append(_row([r["variant"], *(_variant_cell(cells[n]) for n in names)]))
    lines += [
        "",
        f"{result['protocol']}; best DIR: the highest detection-and-identification rate any threshold on "
        f"the best cosine reaches at a false-alarm rate <= {pct(result['max_FAR'])}, picked on the test set "
        "itself (what the embedding allows, whatever the rule); in brackets, the same for cosine + w x "
        "margin at its best w (measured for the rows scored since that bound was added).",
    ]
    return "\n".join(lines)


def clustering_table(result: dict) -> str:
    lines = [
        "| test set | threshold (how chosen) | pairwise precision | pairwise recall | clusters | people |",
        "|---|---|---|---|---|---|",
    ]
    for r in result["quality"]:
        if r["rule"].startswith("sweep"):
            continue
        lines.append(
            f"| {r['test_set']} | {r['threshold']:.3f} ({r['rule']}) | {r['pairwise_precision']:.3f} | "
            f"{r['pairwise_recall']:.3f} | {r['clusters']} | {r['people']} |"
        )
    for c in result.get("cost", []):
        lines.append(
            f"| {c['entries']:,} simulated entries, {c['index_type']} k-NN | 0.700 (fixed) | cost: "
            f"{c['cluster_s']:.0f} s | peak RSS {c['peak_rss_bytes'] / 1e9:.2f} GB | {c['clusters']:,} | |"
        )
    return "\n".join(lines)


def clustering_summary(result: dict) -> str:
    """The paragraph under the clustering table, its numbers read from the same JSON."""
    rows = {(r["test_set"].split()[0], r["rule"].split(" (")[0]): r for r in result["quality"]}
    market, cuhk = rows[("market1501-train", "false-accept 0.1%")], rows[("cuhk03-mars", "false-accept 0.1%")]
    eer_m, eer_c = rows[("market1501-train", "equal error rate")], rows[("cuhk03-mars", "equal error rate")]
    return (
        f"At the card's threshold (0.1% false accepts on held-out training pairs) the market split's "
        f"test images fall into {market['clusters']} clusters for {market['people']} people with pairwise "
        f"precision {market['pairwise_precision']:.2f} and recall {market['pairwise_recall']:.2f}: a cluster "
        "is nearly always one person, and a person seen by several cameras is sometimes split in two or "
        f"three. On cuhk03's two very different cameras precision is {cuhk['pairwise_precision']:.2f} at "
        f"recall {cuhk['pairwise_recall']:.2f}. The equal-error threshold ({eer_m['threshold']:.2f}) merges "
        f"too much for clustering (precision {eer_m['pairwise_precision']:.2f} / "
        f"{eer_c['pairwise_precision']:.2f})."
    )


def serve_abuse_table(result: dict) -> str:
    lines = [
        "| abuse | what happened | /api/health p99 ms (failures) | server memory MB (first / max / last) "
        "| open files max | temp disk MB max |",
        "|---|---|---|---|---|---|",
    ]
    what = {
        "slowloris": lambda r: f"{r['connections']:,} half-sent requests; none refused",
        "frame_flood": lambda r: (
            f"{r['threads']} threads: " + ", ".join(f"{n} x {k}" for k, n in r["statuses"].items())
        ),
        "multipart_flood": lambda r: (
            f"{r['bodies']} bodies of {r['parts_each']} x 1 MiB parts: {r['replies'][0][9:]} "
            f"after at most {r['max_mb_sent']:.0f} MB"
        ),
        "chunked_flood": lambda r: (
            f"{r['planned_mb']:,} MB chunked without the token: {r['reply'][9:]}, "
            f"{r['mb_sent_before_close']:.1f} MB sent"
        ),
    }
    for name, describe in what.items():
        r = result.get(name)
        if r is None:
            continue
        m, health = r["rss_mb"], f"{r['health']['p99_ms']:.0f} ({r['health_failures']})"
        memory = f"{m['first']:.0f} / {m['max']:.0f} / {m['last']:.0f}"
        lines.append(
            f"| {name.replace('_', ' ')} | {describe(r)} | {health} | {memory} | {r['open_files_max']} "
            f"| {r['temp_disk_mb_max']:.0f} |"
        )
    return "\n".join(lines)


def adapt_open_set_line(result: dict) -> str:
    row = next(r for r in result["rows"] if r["test_set"].startswith("cuhk03"))
    return (
        "Open set on cuhk03-mars with the cuhk03-adapted model and its re-fitted rule (60% of the people "
        f"in the gallery, `benchmarks/open_set.py`): top-1 {100 * row['top1']:.1f}%, "
        f"**{100 * row['DIR']:.1f}% found and accepted at {100 * row['FAR']:.1f}% false alarms** "
        "(30% / 90% galleries: "
        + " / ".join(f"{100 * v['FAR']:.1f}%" for k, v in row["rule_by_gallery_share"].items() if k != "0.6")
        + f" false alarms); the best any threshold reaches at <= 10% is {100 * row['best_DIR']['DIR']:.1f}% "
        f"({100 * row['best_DIR_with_margin']['DIR']:.1f}% with the margin)."
    )


HEADLINE_MODELS = {
    "default": "reid-search default (MobileNetV2, 256-d)",
    "osnet_x0_25": "OSNet-x0.25 (MSMT17)",
    "retail-0288": "Intel retail-0288",
}
HEADLINE_SETS = ("cuhk03-mars bbox_test", "market1501-train split", "cuhk01-mars bbox_test", "conreid")


def headline_table(rows: list[dict]) -> str:
    """README's one table: the default against the two peers of its speed class, plain embeddings."""
    plain = {(r["model"], r["test_set"]): r for r in rows if r.get("variant", "plain") == "plain"}
    lines = [
        "| model (rank-1 / mAP %) | " + " | ".join(HEADLINE_SETS) + " |",
        "|---|" + "---|" * len(HEADLINE_SETS),
    ]
    for model, label in HEADLINE_MODELS.items():
        cells = []
        for test_set in HEADLINE_SETS:
            r = plain.get((model, test_set))
            cells.append(f"{100 * r['rank1']:.1f} / {100 * r['mAP']:.1f}" if r else "-")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def adapt_table(result: dict) -> str:
    from adapt import markdown

    return markdown(result["rows"])


def training_table(result: dict) -> str:
    from training_table import markdown

    return markdown(result["rows"])


def journeys_table(result: dict) -> str:
    from journeys import markdown

    return markdown(result["rows"], result.get("intel"))


def journeys_calibration(result: dict) -> str:
    from journeys import calibration_markdown

    if "calibration" not in result:
        return "(not measured yet: `python benchmarks/journeys.py --calibrate`)"
    return calibration_markdown(result["calibration"])


def journeys_ceiling(result: dict) -> str:
    from journeys import ceiling_markdown

    if "ceiling" not in result:
        return "(not measured yet: `python benchmarks/journeys.py --ceiling`)"
    return ceiling_markdown(result)


def journeys_scale(result: dict) -> str:
    r = result.get("scale")
    if not r:
        return "(not measured yet: `python benchmarks/journeys.py --scale 100000`)"
    return (
        f"`identities` on a {r['crops']:,}-crop gallery ({r['sightings']:,} tracklets; "
        f"`python benchmarks/journeys.py --scale {r['crops']}`: synthetic vectors through the real "
        f"precomputed-vector path, so the time, not the accuracy): {r['identities_seconds']:.1f} s "
        "on 2 cores "
        f"({r['identities']:,} identities for {r['true_people']:,} people; the gallery built in "
        f"{r['index_seconds']:.1f} s)."
    )


def adapt_speed_line(result: dict) -> str:
    """The adapted model's embedding speed against the default's, measured in the same runs."""
    rows = {r["model"]: r for r in result["rows"]}
    adapted = next(r for name, r in rows.items() if name.startswith("adapted"))
    default = next(r for name, r in rows.items() if name.startswith("default"))
    ratio = adapted["images_per_s_median"] / default["images_per_s_median"]
    return (
        f"Speed of an adapted model (`python benchmarks/embed_speed.py --model "
        f"{adapted['model']}=/tmp/reid-search-adapt-bench/cuhk03/adapted.keras --out "
        "benchmarks/results/adapt_speed.json`: the whole `index` command on 7,239 crops, alternating): "
        f"{adapted['images_per_s_median']:.0f} images/s against the default's "
        f"{default['images_per_s_median']:.0f} in the same runs ({ratio:.2f}x): `adapt` writes its "
        "LiteRT file too, so it embeds at the default's speed."
    )


def adapt_summary(result: dict) -> str:
    from adapt import summary

    return summary(result["rows"])


def _attribute_renderers():
    from attributes_tables import (
        HEAD_CARD,
        attribute_set_table,
        attributes_headline,
        attributes_table,
        vocabulary_table,
    )

    return {
        "vocabulary": (HEAD_CARD, vocabulary_table),
        "attribute-set": (HEAD_CARD, attribute_set_table),
        "attributes": ("attributes.json", attributes_table),
        "attributes-headline": ("attributes.json", attributes_headline),
    }


def _model_renderers():
    from model_tables import DEFAULT_CARD, default_speed, default_tests, default_threshold, default_validation

    return {
        "default-validation": (DEFAULT_CARD, default_validation),
        "default-tests": ("cross_domain.json", default_tests),
        "default-threshold": (DEFAULT_CARD, default_threshold),
        "default-speed": ("embed_speed.json", default_speed),
    }


TABLES = {
    "headline": ("cross_domain.json", headline_table),
    "adapt": ("adapt.json", adapt_table),
    "adapt-summary": ("adapt.json", adapt_summary),
    "training-table": ("training_table.json", training_table),
    "journeys": ("journeys.json", journeys_table),
    "journeys-scale": ("journeys.json", journeys_scale),
    "journeys-calibration": ("journeys.json", journeys_calibration),
    "journeys-ceiling": ("journeys.json", journeys_ceiling),
    "adapt-open-set": ("adapt_open_set.json", adapt_open_set_line),
    "adapt-speed": ("adapt_speed.json", adapt_speed_line),
    "serve-abuse": ("serve_abuse.json", serve_abuse_table),
    "levers": ("levers.json", levers_table),
    "cross-domain": ("cross_domain.json", cross_domain_table),
    "recipe-variants": ("recipe_variants.json", cross_domain_table),
    "scale": ("scale.json", scale_table),
    "embed-speed": ("embed_speed.json", embed_speed_table),
    "eval-speed": ("eval_speed.json", eval_speed_table),
    "ray-speed": ("ray_speed.json", ray_speed_table),
    "serve-load": ("serve_load.json", serve_load_table),
    "clustering": ("clustering.json", clustering_table),
    "clustering-summary": ("clustering.json", clustering_summary),
    "video": ("video.json", video_table),
    "open-set": ("open_set.json", open_set_table),
    "open-set-variants": ("open_set_variants.json", open_set_variants_table),
    **_attribute_renderers(),
    **_model_renderers(),
}


def main() -> None:

    for document in DOCUMENTS:
        text = document.read_text()
        for name, (file, render) in TABLES.items():
            data = _load(file)
            pattern = re.compile(rf"(<!-- {name}:start -->\n).*?(<!-- {name}:end -->)", re.S)
            if data is None or not pattern.search(text):
                continue
            text = pattern.sub(lambda m, d=data, r=render: m.group(1) + r(d) + "\n" + m.group(2), text)
            print(f"{document.name}: {name} table updated from {file}")
        document.write_text(text)


if __name__ == "__main__":
    main()
