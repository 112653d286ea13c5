"""The one way the project draws a PNG: matplotlib without a display, written atomically enough.

plt = pyplot()
fig, ax = plt.subplots()
save_figure(fig, "plot.png")
"""

from __future__ import annotations

from pathlib import Path


def pyplot():
    """``matplotlib.pyplot`` on the headless Agg backend (servers, CI)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, out: str | Path) -> Path:
    """Lay out ``fig``, write it to ``out`` (folders created) and free it."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out)
    pyplot().close(fig)
    return out
