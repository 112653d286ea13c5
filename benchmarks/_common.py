"""What every benchmark shares: where the repo, the data, the peers and the results are.

Scripts run as ``python benchmarks/NAME.py`` (their folder is on ``sys.path``), so they
``from _common import DATA, write_result``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
PEERS = REPO / "benchmarks" / "peers"
PEER_CARDS = {  # the peers every benchmark compares with, by the names its results use
    "osnet_x0_25": PEERS / "osnet_x0_25_msmt17.card.json",
    "retail-0288": PEERS / "person-reidentification-retail-0288.card.json",
    "retail-0277": PEERS / "person-reidentification-retail-0277.card.json",
}
MODELS = REPO / "benchmarks" / "models"
RESULTS = REPO / "benchmarks" / "results"
DEFAULT_MODEL = REPO / "reid_search" / "models" / "default.keras"


def write_result(name: str, result: Any) -> Path:
    """``benchmarks/results/NAME.json`` written atomically (a reader never sees half a file)."""
    return write_json(RESULTS / f"{name}.json", result)


def write_json(out: Path, result: Any) -> Path:
    """``out`` written atomically, its folder made if needed."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(out)
    return out


def read_result(name: str, default: Any = None) -> Any:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else default
