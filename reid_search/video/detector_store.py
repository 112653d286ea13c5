"""Person detectors by name. The package ships each registered detector's **card** (what it
is, its input, its licence and source, and every file's size and sha256), not its weights:
those are third-party files, installed once into the detector home by
``reid-search models fetch NAME`` (downloaded from the card's URLs, or copied from a folder
with ``--from DIR`` on a machine without internet), each file's sha256 checked before it is
kept. ``index VIDEO`` then finds the detector by name (default :data:`DEFAULT_DETECTOR`).

The home is ``$REID_SEARCH_HOME/detectors`` (default ``~/.cache/reid-search/detectors``);
``NAME/`` holds the files and the card, written last (a half-installed detector has no card).
``$REID_SEARCH_MIRROR`` (a base URL) fetches ``MIRROR/NAME/FILE`` instead of the card's
addresses: a company mirror or an offline site's own server; the sha256 checks are the same.

Usage::

    >>> DEFAULT_DETECTOR in DETECTOR_CARDS
    True
    >>> DETECTOR_CARDS.get("person-detection-0202").name
    'person-detection-0202.card.json'
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.request
from collections.abc import Callable
from pathlib import Path

from .._files import file_sha256, write_json_atomic
from ..registry import Registry
from .detectors import DetectorError

DEFAULT_DETECTOR = "person-detection-0202"
HOME_ENV = "REID_SEARCH_HOME"
MIRROR_ENV = "REID_SEARCH_MIRROR"  # a base URL to fetch detector files from instead of the cards' addresses
SHIPPED = Path(__file__).resolve().parents[1] / "models" / "detectors"

DETECTOR_CARDS: Registry[Path] = Registry("detector", DetectorError)  # name -> the shipped card
for _card in sorted(SHIPPED.glob("*.card.json")):
    DETECTOR_CARDS.register(_card.name.removesuffix(".card.json"), _card)


class DetectorNotInstalled(DetectorError):
    """A registered detector whose files are not in the detector home yet."""


def detector_home() -> Path:
    """Where detectors are installed: ``$REID_SEARCH_HOME/detectors`` or the user cache."""
    base = os.environ.get(HOME_ENV)
    root = Path(base).expanduser() if base else Path.home() / ".cache" / "reid-search"
    return root / "detectors"


def shipped_card(name: str) -> dict:
    """The shipped card of a registered detector (an unknown name lists the known ones)."""
    return json.loads(DETECTOR_CARDS.get(name).read_text())


def installed_card(name: str) -> Path | None:
    """The installed card of ``name`` (its files beside it), or None if not installed."""
    card = detector_home() / name / f"{name}.card.json"
    return card if card.is_file() else None


def resolve_detector(
    spec: str | Path | None, download: bool = False, log: Callable[[str], None] = print
) -> Path:
    """The card file of ``spec``: a card path as given, else a registered name (None: the
    default) that must be installed. With ``download``, a missing detector whose files all
    have an address is downloaded and installed first (sha256-checked, as model zoos fetch
    weights on first use); otherwise, or when that fails (no internet), one error saying how
    to install it."""
    name = str(spec) if spec is not None else DEFAULT_DETECTOR
    if spec is not None and (name.endswith(".json") or os.sep in name or Path(name).is_file()):
        if not Path(name).is_file():
            raise DetectorError(f"{name}: no such detector card")
        return Path(name)
    card = shipped_card(name)
    installed = installed_card(name)
    if installed is not None:
        return installed
    size = sum(f["bytes"] for f in card["files"]) / 1e6
    downloadable = bool(os.environ.get(MIRROR_ENV)) or all(f.get("url") for f in card["files"])
    how = (
        f"run `reid-search models fetch {name}` ({'downloads' if downloadable else 'copies'} {size:.1f} MB, "
        "sha256-checked; `--from DIR` copies the files from a folder)"
    )
    if download and downloadable:
        from ..errors import UnavailableError

        log(f"person detector {name} is not installed yet: fetching it once ({size:.1f} MB)")
        try:
            return fetch_detector(name, log=log)
        except UnavailableError as exc:
            raise DetectorNotInstalled(
                f"person detector {name} could not be downloaded ({exc}); {how}"
            ) from None
    raise DetectorNotInstalled(f"person detector {name} is not installed: {how}")


def fetch_detector(name: str, source: str | Path | None = None, log: Callable[[str], None] = print) -> Path:
    """Install the registered detector ``name`` into :func:`detector_home`: each file copied
    from ``source`` (a folder holding them) or downloaded from the card's URL, its sha256
    checked, then the card written; returns the installed card. Installing again re-checks."""
    card = shipped_card(name)
    folder = detector_home() / name
    folder.mkdir(parents=True, exist_ok=True)
    for entry in card["files"]:
        target = folder / entry["name"]
        if target.is_file() and file_sha256(target) == entry["sha256"]:
            log(f"{entry['name']}: already installed")
            continue
        tmp = folder / f".{entry['name']}.part"
        if source is not None:
            origin = Path(source) / entry["name"]
            if not origin.is_file():
                raise DetectorError(f"{source}: no {entry['name']} there (the files of {name})")
            shutil.copyfile(origin, tmp)
        elif entry.get("url") or os.environ.get(MIRROR_ENV):
            url = file_url(name, entry)
            log(f"{entry['name']}: downloading {entry['bytes'] / 1e6:.1f} MB from {url}")
            _download(url, tmp)
        else:
            raise DetectorError(f"{name}: {entry['name']} has no download address; give --from DIR")
        got = file_sha256(tmp)
        if got != entry["sha256"]:
            tmp.unlink()
            raise DetectorError(
                f"{entry['name']}: sha256 {got[:12]}... is not the card's "
                f"{entry['sha256'][:12]}...; not installed"
            )
        tmp.replace(target)
        log(f"{entry['name']}: installed (sha256 checked)")
    installed = folder / f"{name}.card.json"
    write_json_atomic(installed, card)  # last: a half-installed detector has no card
    return installed


def file_url(name: str, entry: dict) -> str:
    """Where a detector file is fetched from: ``$REID_SEARCH_MIRROR/NAME/FILE`` when set, else
    the card's address.

    >>> file_url("d", {"name": "d.bin", "url": "https://example.org/d.bin"})
    'https://example.org/d.bin'
    """
    mirror = os.environ.get(MIRROR_ENV, "").rstrip("/")
    return f"{mirror}/{name}/{entry['name']}" if mirror else entry["url"]


def _download(url: str, out: Path) -> None:
    from ..errors import UnavailableError

    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(out, "wb") as handle:
            shutil.copyfileobj(response, handle)
    except OSError as exc:
        out.unlink(missing_ok=True)
        raise UnavailableError(f"{url}: cannot download ({exc}); copy the files and use --from DIR") from None
