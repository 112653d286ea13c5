"""An attribute head: calibrated attribute probabilities from a model's stored embeddings.

A head is a linear layer over one model's unit embeddings (``logits = v @ weights + bias``,
trained with class-balanced loss so ``logit > 0`` is the balanced decision PETA's mA scores)
and a per-attribute Platt calibration (``p = sigmoid(scale * logit + shift)``, fitted on people
the layer never saw) so a probability means what it says. It reads only stored vectors: a
gallery gains attributes without one image read. Files: ``NAME.attributes.npz`` (arrays,
loaded without pickle) and ``NAME.attributes.json`` (its card: the model it reads, the data,
people split, command, per-attribute scores).

Usage::

    from reid_search.attributes.head import head_for_model
    head = head_for_model(gallery.model_sha256)
    probabilities = head.probabilities(vectors)          # (n, len(head.names)) in 0..1
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._files import file_sha256, write_json_atomic
from ..errors import InputError

HEAD_FORMAT = "reid-search/attribute-head/v1"
SHIPPED = Path(__file__).parents[1] / "models"
HOME_ENV = "REID_SEARCH_HOME"


class AttributeHeadError(InputError):
    """No attribute head for a model, or a head file that cannot be used."""


@dataclass
class AttributeHead:
    """Calibrated attribute probabilities from one model's embeddings (see the module)."""

    names: tuple[str, ...]
    weights: np.ndarray  # (dim, attributes)
    bias: np.ndarray
    scale: np.ndarray  # Platt calibration of each attribute's logit
    shift: np.ndarray
    card: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def model_sha256(self) -> str:
        return str(self.card.get("model_sha256", ""))

    @property
    def sha256(self) -> str:
        """The head file's SHA-256 (empty before it is saved)."""
        return file_sha256(self.path) if self.path else ""

    def logits(self, vectors: np.ndarray) -> np.ndarray:
        return np.asarray(vectors, np.float32) @ self.weights + self.bias

    def probabilities(self, vectors: np.ndarray) -> np.ndarray:
        """Calibrated probability of each attribute for each vector, (n, attributes)."""
        z = self.scale * self.logits(vectors) + self.shift
        return (1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))).astype(np.float32)

    def decisions(self, vectors: np.ndarray) -> np.ndarray:
        """The balanced yes / no of each attribute (what PETA's mA scores)."""
        return self.logits(vectors) > 0

    def save(self, path: str | Path) -> Path:
        """Write ``path`` (``.attributes.npz``) and its card (``.attributes.json``) beside it."""
        path = Path(path)
        if not path.name.endswith(".attributes.npz"):
            raise AttributeHeadError(f"{path}: an attribute head's file name ends in .attributes.npz")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        arrays = {"weights": self.weights, "bias": self.bias, "scale": self.scale, "shift": self.shift}
        np.savez(tmp, names=np.array(self.names), **{k: v.astype(np.float32) for k, v in arrays.items()})
        os.replace(tmp, path)
        self.path = path
        write_json_atomic(card_path(path), {"format": HEAD_FORMAT, **self.card, "names": list(self.names)})
        return path

    @classmethod
    def load(cls, path: str | Path) -> AttributeHead:
        path = Path(path)
        try:
            card = json.loads(card_path(path).read_text())
            with np.load(path, allow_pickle=False) as data:
                names = tuple(str(n) for n in data["names"])
                arrays = [np.asarray(data[k], np.float32) for k in ("weights", "bias", "scale", "shift")]
        except (OSError, ValueError, KeyError) as exc:
            raise AttributeHeadError(f"{path}: not a readable attribute head ({exc})") from exc
        if card.get("format") != HEAD_FORMAT or arrays[0].shape[1:] != (len(names),):
            raise AttributeHeadError(f"{path}: not an attribute head of format {HEAD_FORMAT}")
        return cls(names, *arrays, card=card, path=path)


def card_path(head_path: str | Path) -> Path:
    """``x.attributes.npz`` -> ``x.attributes.json``."""
    return Path(head_path).with_suffix(".json")


def home_folder() -> Path:
    """Where ``train-attributes`` puts heads: ``$REID_SEARCH_HOME/attributes`` (or the user cache)."""
    return Path(os.environ.get(HOME_ENV) or Path.home() / ".cache" / "reid-search") / "attributes"


def head_folders() -> list[Path]:
    """Where heads are looked for: the user's own first (a head trained here for a model wins),
    then the package's."""
    return [home_folder(), SHIPPED]


def head_for_model(model_sha256: str, model_name: str = "") -> AttributeHead:
    """The attribute head that reads ``model_sha256``'s embeddings (one clear error if none)."""
    for folder in head_folders():
        for path in sorted(folder.glob("*.attributes.json")):
            try:
                card = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if card.get("model_sha256") == model_sha256:
                return AttributeHead.load(path.with_suffix(".npz"))
    name = model_name or f"sha256 {model_sha256[:12]}"
    raise AttributeHeadError(
        f"model {name} has no attribute head: train one with "
        "`reid-search train-attributes ../shared/data/extra-crops --model MODEL --out NAME.attributes.npz` "
        "(docs/querying.md)"
    )


def has_head(model_sha256: str) -> bool:
    """Whether :func:`head_for_model` finds a head for this model."""
    try:
        head_for_model(model_sha256)
    except AttributeHeadError:
        return False
    return True
