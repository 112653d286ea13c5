"""Same person? Two images' cosine similarity and the verdict at the model card's threshold.

Usage::

    from reid_search import Embedder
    from reid_search.search.compare import compare_images
    comparison = compare_images(Embedder(), "a.jpg", "b.jpg")
    comparison.similarity, comparison.verdict
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..embedding.embedder import Embedder
from ..figures import pyplot, save_figure


@dataclass
class Comparison:
    image_a: str
    image_b: str
    similarity: float
    threshold: float | None
    model: str

    @property
    def same(self) -> bool | None:
        return None if self.threshold is None else self.similarity >= self.threshold

    @property
    def verdict(self) -> str:
        if self.same is None:
            return "unknown (the model card has no threshold)"
        return "same person" if self.same else "different people"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "same": self.same, "verdict": self.verdict}


def compare_images(embedder: Embedder, image_a: str | Path, image_b: str | Path) -> Comparison:
    """Cosine similarity of two images and the verdict at the model card's threshold."""
    vectors, used, failures = embedder.embed_files([image_a, image_b])
    if failures:
        raise failures[0]
    return Comparison(
        str(image_a),
        str(image_b),
        float(vectors[0] @ vectors[1]),
        embedder.card.threshold,
        embedder.card.name,
    )


def plot_comparison(comparison: Comparison, out: str | Path) -> Path:
    """The two images side by side with the similarity and verdict."""
    plt = pyplot()
    from PIL import Image

    fig, axes = plt.subplots(1, 2, figsize=(4.4, 4.4), dpi=110)
    for ax, path in zip(axes, (comparison.image_a, comparison.image_b), strict=True):
        with Image.open(path) as img:
            ax.imshow(img.convert("RGB"))
        ax.set_title(Path(path).name, fontsize=7)
        ax.axis("off")
    threshold = "n/a" if comparison.threshold is None else f"{comparison.threshold:.3f}"
    colour = {True: "green", False: "red", None: "black"}[comparison.same]
    fig.suptitle(
        f"similarity {comparison.similarity:.3f} (threshold {threshold})\n{comparison.verdict}",
        fontsize=9,
        color=colour,
    )
    return save_figure(fig, out)
