"""The documented tables of search by description, rendered by ``benchmarks/readme_tables.py``:
the vocabulary (from the code), the attribute set with the shipped head's held-out scores (from
its card) and the benchmark's results (``benchmarks/results/attributes.json``)."""

from __future__ import annotations

from reid_search.attributes import vocabulary as v

HEAD_CARD = "../../reid_search/models/default.attributes.json"  # relative to benchmarks/results


def vocabulary_table(_card: dict) -> str:
    colours = ", ".join(sorted(v._COLOUR_WORDS))
    rows = [
        ("gender", ", ".join(sorted(w for w, neg in v._GENDER.items() if not neg)) + " / "
         + ", ".join(sorted(w for w, neg in v._GENDER.items() if neg))),
        ("age", "; ".join(f"{w} = {' or '.join(a)}" for w, a in sorted(v._AGE.items()))),
        ("colours (before a garment)", colours),
        ("upper-body garments", ", ".join(v._UPPER)),
        ("lower-body garments (the word's kind too)", ", ".join(
            f"{w} ({v._LOWER_KIND[w]})" if w in v._LOWER_KIND else w for w in v._LOWER)),
        ("things and looks", "; ".join(f"{w} = {' or '.join(a)}" for w, a in v._THINGS.items())),
        ("meaning *not*", "; ".join(f"{w} = not {' or '.join(a)}" for w, a in v._NEGATED_THINGS.items())
         + "; and " + ", ".join(v._NEGATORS) + " before any term"),
        ("ignored", ", ".join(sorted(v._FILLER))),
    ]  # fmt: skip
    lines = ["| kind | words |", "|---|---|"] + [f"| {kind} | {words} |" for kind, words in rows]
    lines.append("")
    lines.append("A colour with no garment after it means either garment (`man in red`: upper or lower red).")
    return "\n".join(lines)


def attribute_set_table(card: dict) -> str:
    per = card["metrics"]["per_attribute"]
    lines = ["| attribute | means | PETA labels | held-out mA | crops with it |", "|---|---|---|---|---|"]
    for a in v.ATTRIBUTES:
        score = per[a.name]
        ma = "-" if score["mA"] is None else f"{100 * score['mA']:.1f}%"
        lines.append(f"| `{a.name}` | {a.label} | {', '.join(a.peta)} | {ma} | {score['positive_images']} |")
    m = card["metrics"]
    t = card["training"]
    lines.append("")
    lines.append(
        f"Mean: **mA {100 * m['mA']:.1f}%**, instance F1 {m['instance']['f1']:.3f}, calibration error "
        f"{m['calibration_error']:.3f} on {m['images']:,} crops of {len(t['test_people'])} held-out people "
        f"(trained on {t['train_images']:,} crops of {t['train_people']} others in "
        f"{t['wall_seconds']:.0f} s: `{t['command']}`). Not in the set: lower-body green, orange, pink "
        "and yellow (6, 0, 2 and 3 labelled people: too few to learn or score)."
    )
    return "\n".join(lines)


def attributes_table(result: dict) -> str:
    lines = ["| route | model | mA | instance F1 | calibration error |", "|---|---|---|---|---|"]
    for r in result["accuracy"]:
        ece = f"{r['calibration_error']:.3f}" if "calibration_error" in r else "-"
        lines.append(
            f"| {r['route']} | {r['model']} | {100 * r['mA']:.1f}% | {r['instance']['f1']:.3f} | {ece} |"
        )
    tower = [r for r in result["accuracy"] if r["route"].startswith("tower")]
    lines += ["", "| description search | queries | precision@10 | person's first crop in top 10 | "
              "median rank of it | find (median) |", "|---|---|---|---|---|---|"]  # fmt: skip
    for key, s in result["search"].items():
        asked = f'{key.replace("_", " ")} (e.g. "{s["example"]}")'
        lines.append(
            f"| {asked} | {s['queries']} | {s['precision_at_10']:.2f} | {100 * s['first_in_top_10']:.0f}% | "
            f"{s['median_first_rank']:.0f} | {s['find_ms_median']:.0f} ms |"
        )
    if result.get("candidates"):
        lines += ["", "| other model (`--candidate`) | mA | instance F1 | precision@10, 2 / 3 / 4 terms |"]
        lines.append("|---|---|---|---|")
        for r in result["candidates"]:
            p10 = " / ".join(f"{r['search'][f'{n}_terms']['precision_at_10']:.2f}" for n in (2, 3, 4))
            lines.append(f"| {r['model']} | {100 * r['mA']:.1f}% | {r['instance']['f1']:.3f} | {p10} |")
    if result.get("ceiling"):
        header = "| the same recipe over (`--ceiling`) | mA | instance F1 | precision@10, 2 / 3 / 4 terms |"
        lines += ["", header]
        lines.append("|---|---|---|---|")
        for r in result["ceiling"]:
            p10 = " / ".join(f"{r['precision_at_10'][f'{n}_terms']:.2f}" for n in (2, 3, 4))
            ma = f"{100 * r['mA']:.1f}%" if "mA" in r else "-"
            f1 = f"{r['instance_f1']:.3f}" if "instance_f1" in r else "-"
            lines.append(f"| {r['input']} | {ma} | {f1} | {p10} |")
    c = result["cost"]
    rates, q = c["index_images_per_second"], c["query_ms_median"]
    change = 100 * (rates["with"] / rates["without"] - 1)
    lines.append("")
    lines.append(
        f"Cost ({c['images']:,} crops, median of 3 alternating builds each): index {rates['without']:.0f} "
        f"images/s without attributes, {rates['with']:.0f} with ({change:+.0f}%); "
        f"query {q['without']:.1f} ms without, {q['with']:.1f} ms on the gallery with attributes, "
        f"{q['with --where backpack']:.1f} ms with `--where backpack`."
        + (f" The tower route adds a second backbone pass per image, "
           f"{tower[0]['extra_cost_per_image']:.2f}x the embedding model's own time (indexing would run "
           f"at about {100 / (1 + tower[0]['extra_cost_per_image']):.0f}% of its speed); it trained in "
           f"{tower[0]['train_minutes']:.0f} min." if tower else "")
    )  # fmt: skip
    return "\n".join(lines)


def attributes_headline(result: dict) -> str:
    shipped = next(r for r in result["accuracy"] if r["route"].startswith("embedding (shipped"))
    count = len(shipped["per_attribute"])
    lines = [f"| mA ({count} attributes) | precision@10, 2 / 3 / 4 terms asked | index cost |"]
    lines.append("|---|---|---|")
    p10 = " / ".join(f"{result['search'][f'{n}_terms']['precision_at_10']:.2f}" for n in (2, 3, 4))
    rates = result["cost"]["index_images_per_second"]
    change = 100 * (rates["with"] / rates["without"] - 1)
    cost = f"none measurable ({change:+.0f}% images/s; read from the stored vectors)"
    lines.append(f"| {100 * shipped['mA']:.1f}% | {p10} | {cost} |")
    return "\n".join(lines)
