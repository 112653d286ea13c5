"""The journey as a picture: one row per camera, time across, each visit a bar from its first
to its last sighting with its best crop above it and arrows for the camera changes.

Usage::

    from reid_search.journeys.timeline import plot_journey
    plot_journey(journey, "journey.png")
"""

from __future__ import annotations

from pathlib import Path

from ..figures import check_figure_path, pyplot, save_figure
from .trace import Journey


def plot_journey(journey: Journey, out: str | Path, thumb_height: int = 96) -> Path:
    """Draw ``journey`` into ``out`` (any figure type matplotlib writes); returns the path."""
    out = check_figure_path(out)
    from matplotlib import dates
    from matplotlib.offsetbox import AnnotationBbox, OffsetImage
    from PIL import Image

    plt = pyplot()
    cameras = sorted({v.camera for v in journey.visits}) or [0]
    row = {camera: i for i, camera in enumerate(cameras)}
    fig, ax = plt.subplots(
        figsize=(max(6.0, 1.6 * len(journey.visits) + 2), 1.3 + 1.2 * len(cameras)), dpi=110
    )
    for visit in journey.visits:
        y = row[visit.camera]
        start, end = dates.date2num(visit.first), dates.date2num(visit.last)
        ax.plot(
            [start, max(end, start + 1e-5)], [y, y], linewidth=6, solid_capstyle="round", color="tab:blue"
        )
        try:
            with Image.open(visit.best.path) as image:
                image = image.convert("RGB")
                image.thumbnail((thumb_height, thumb_height))
                box = AnnotationBbox(OffsetImage(image, zoom=0.5), (start, y + 0.35), frameon=False)
                ax.add_artist(box)
        except OSError:
            ax.annotate("(crop missing)", (start, y + 0.3), fontsize=6)
        ax.annotate(f"{visit.confidence:.2f}", (start, y - 0.25), fontsize=6, ha="center")
    for before, after in zip(journey.visits, journey.visits[1:], strict=False):
        if before.camera != after.camera:
            ax.annotate("", xy=(dates.date2num(after.first), row[after.camera]),
                        xytext=(dates.date2num(before.last), row[before.camera]),
                        arrowprops={"arrowstyle": "->", "color": "grey"})  # fmt: skip
    ax.set_yticks(range(len(cameras)), [f"camera {c}" for c in cameras])
    ax.set_ylim(-0.7, len(cameras) - 0.2)
    ax.xaxis.set_major_formatter(dates.DateFormatter("%H:%M:%S"))
    ax.set_title(f"{len(journey.visits)} visit(s) in gallery {journey.gallery}", fontsize=9)
    return save_figure(fig, out)
