"""The one way the project draws a figure: matplotlib without a display, written to a temporary
file beside the target and renamed over it (a reader never sees half a figure); a file type
matplotlib cannot write is refused before anything is drawn.

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


FIGURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".pdf", ".svg", ".webp", ".tif", ".tiff")


def check_figure_path(out: str | Path) -> Path:
    """``out`` if matplotlib can write its type, else one InputError naming the types.

    >>> check_figure_path("ranks.svg").name
    'ranks.svg'
    """
    from .errors import InputError

    out = Path(out)
    if out.suffix.lower() not in FIGURE_SUFFIXES:
        raise InputError(f"{out}: a figure is written as {', '.join(FIGURE_SUFFIXES)}")
    return out


def save_figure(fig, out: str | Path) -> Path:
    """Lay out ``fig``, write it to ``out`` (folders created; via a temporary file renamed over it)
    and free it."""
    out = check_figure_path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    tmp = out.with_name(f".{out.stem}.tmp{out.suffix}")
    try:
        fig.savefig(tmp)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
        pyplot().close(fig)
    return out
