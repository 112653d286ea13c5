"""The model zoo: every model and detector the package ships or registers, from their cards.

Usage::

    >>> rows = zoo_rows()
    >>> [r["name"] for r in rows if r["kind"] == "detector"]
    ['person-detection-0202', 'yolox-nano']
    >>> next(r for r in rows if r["kind"] == "re-id")["input"]
    '160x80 RGB'
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PACKAGE_MODELS = Path(__file__).resolve().parent / "models"


def zoo_rows() -> list[dict[str, Any]]:
    """One row per shipped re-ID model file and registered detector: kind, name, file or
    state, input, licence, how it was made, scores; ``card`` holds the whole card."""
    from .video.detector_store import DETECTOR_CARDS, installed_card, shipped_card

    rows = []
    for card_file in sorted(PACKAGE_MODELS.glob("*.card.json")):
        card = json.loads(card_file.read_text())
        training = card.get("training") or {}
        rows.append({
            "kind": "re-id",
            "name": card_file.name.removesuffix(".card.json"),
            "state": f"shipped ({card.get('model_format')})",
            "input": f"{card['input_height']}x{card['input_width']} {card.get('channel_order', 'RGB')}",
            "output": f"{card['embedding_dim']}-d unit vector",
            "licence": "this project's (trained here)",
            "made": training.get("command") or card.get("notes", "")[:120],
            "scores": (card.get("metrics") or {}).get("validation", {}),
            "card": card,
        })  # fmt: skip
    for name in DETECTOR_CARDS:
        card = shipped_card(name)
        rows.append({
            "kind": "detector",
            "name": name,
            "state": "installed" if installed_card(name) else f"to install: reid-search models fetch {name}",
            "input": f"{card['input_height']}x{card['input_width']} BGR",
            "output": "person boxes",
            "licence": card.get("licence", ""),
            "made": card.get("made", ""),
            "scores": card.get("measured", {}),
            "card": card,
        })  # fmt: skip
    return rows
