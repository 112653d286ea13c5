"""Rank-list pictures: each query beside its top-k gallery images, green when right, red when wrong.

The picture torchreid's ``visrank`` draws, for one ``query`` answer (``reid-search query
--plot``) or for an evaluation's worst and best queries (``reid-search evaluate
--plot-ranks N``). Borders are green / red when both sides' identities are known, grey
otherwise.

Usage::

    rows = [RankRow("q.jpg", "0744", [RankedImage("g.jpg", 0.91, True, "0744 c2")])]
    draw_rank_rows(rows, "ranks.png")
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..figures import pyplot, save_figure

COLOURS = {True: "#1a7f37", False: "#cf222e", None: "#8c959f"}


@dataclass
class RankedImage:
    path: str
    similarity: float
    correct: bool | None  # None: an identity is unknown
    caption: str = ""


@dataclass
class RankRow:
    query_path: str
    query_caption: str
    ranked: list[RankedImage] = field(default_factory=list)


def _thumb(path: str, size: tuple[int, int] = (128, 64)) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB").resize((size[1], size[0]), Image.Resampling.BILINEAR))
    except OSError:
        return np.full((*size, 3), 200, np.uint8)  # a missing file is drawn as a grey box


def draw_rank_rows(rows: Sequence[RankRow], out: str | Path, title: str = "") -> Path:
    """One line per query: the query, then its ranked gallery images with similarity."""
    plt = pyplot()

    columns = 1 + max((len(r.ranked) for r in rows), default=0)
    fig, axes = plt.subplots(
        max(1, len(rows)), columns, figsize=(1.1 * columns, 2.35 * max(1, len(rows))), squeeze=False, dpi=100
    )
    for line, row in zip(axes, rows, strict=False):
        line[0].imshow(_thumb(row.query_path))
        line[0].set_title(f"query\n{row.query_caption}", fontsize=6.5)
        for ax, item in zip(line[1:], row.ranked, strict=False):
            ax.imshow(_thumb(item.path))
            ax.set_title(f"{item.similarity:.3f}\n{item.caption}", fontsize=6.5, color=COLOURS[item.correct])
            for spine in ax.spines.values():
                spine.set_edgecolor(COLOURS[item.correct])
                spine.set_linewidth(3)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        if not ax.images:
            ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
    return save_figure(fig, out)


def query_rank_row(result, query_person: str | None = None) -> RankRow:
    """A ``query`` answer as one row: the best match of each ranked identity."""
    ranked = []
    for hit in result.identities:
        best = hit.matches[0]
        known = query_person is not None and hit.person is not None
        label = hit.person if hit.person is not None else hit.key
        caption = f"#{hit.rank} {label}" + (f" c{best.camera}" if best.camera is not None else "")
        ranked.append(
            RankedImage(best.path, best.similarity, hit.person == query_person if known else None, caption)
        )
    caption = query_person or Path(result.images[0]).name
    return RankRow(result.images[0], caption, ranked)


def evaluation_rank_rows(report, n: int, worst: bool, k: int = 10) -> list[RankRow]:
    """The ``n`` scored queries of an evaluation with the lowest (or highest) AP, each with
    its top-``k`` gallery items after junk removal (cosine order, as the metrics rank)."""
    from .protocols import MatchCodes, matching_masks

    items, protocol = report.items, report.protocol
    scored = [i for i, s in enumerate(report.scores) if s.ap is not None]
    order = sorted(scored, key=lambda i: (report.scores[i].ap, i), reverse=not worst)[:n]
    gallery = protocol.gallery
    codes = MatchCodes.of(items)
    rows = []
    for i in order:
        q = protocol.query[i]
        positive, junk = matching_masks(items, np.array([q]), gallery, codes)
        sims = items.vectors[gallery] @ items.vectors[q]
        kept = np.flatnonzero(~junk[0])
        top = kept[np.argsort(-sims[kept], kind="stable")[:k]]
        ranked = [
            RankedImage(
                items.paths[gallery[j]], float(sims[j]), bool(positive[0, j]), _label(items, gallery[j])
            )
            for j in top
        ]
        rows.append(RankRow(items.paths[q], f"{_label(items, q)} AP {report.scores[i].ap:.2f}", ranked))
    return rows


def _label(items, index: int) -> str:
    camera = int(items.cameras[index])
    return f"{items.persons[index]}" + (f" c{camera}" if camera >= 0 else "")
