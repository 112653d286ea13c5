"""Write the benchmark tables of README.md and docs/ from the JSON files in benchmarks/results/.

Each table sits between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->`` markers in
README.md or a docs/ page; this script replaces what is between them, so documented
numbers always come from a benchmark run. Tables whose JSON is missing are left as they are.

    python benchmarks/readme_tables.py
"""

from __future__ import annotations

import json
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
DOCUMENTS = (REPO / "README.md", REPO / "docs" / "cluster.md")


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


def serve_load_table(r: dict) -> str:
    rss = [m["rss_mb"] for m in r["server_rss_mb"]]
    return "\n".join(
        [
            "| queries | client threads | errors | p50 ms | p99 ms | max ms | queries/s | server RSS (MB) |",
            "|---|---|---|---|---|---|---|---|",
            f"| {r['queries']} | {r['client_threads']} | {r['errors']} | {r['p50_ms']:.0f} | "
            f"{r['p99_ms']:.0f} | {r['max_ms']:.0f} | {r['queries_per_s']:.1f} | "
            f"{rss[0]:.0f} at start, {rss[1]:.0f} -> {rss[-1]:.0f} after warm-up |",
        ]
    )


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


TABLES = {
    "levers": ("levers.json", levers_table),
    "cross-domain": ("cross_domain.json", cross_domain_table),
    "scale": ("scale.json", scale_table),
    "embed-speed": ("embed_speed.json", embed_speed_table),
    "eval-speed": ("eval_speed.json", eval_speed_table),
    "ray-speed": ("ray_speed.json", ray_speed_table),
    "serve-load": ("serve_load.json", serve_load_table),
    "clustering": ("clustering.json", clustering_table),
}


def main() -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
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
