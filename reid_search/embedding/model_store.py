"""Model files and their cards: a ``.keras`` tower (or an ONNX / OpenVINO / LiteRT file) plus
its card (``.card.json``) beside it, or a card whose ``model_file`` points at the file.

The card says everything a user needs to use or trust the file: architecture, input size,
preprocessing, embedding size, how it was made (command, data, epochs), its metrics and
the same/different threshold used by ``compare``. Files are loaded with Keras'
``safe_mode`` (no code, nothing unpickled) and named by the SHA-256 of their bytes, which
galleries record so a gallery is never searched with another model.

Usage::

    from reid_search.embedding.backends import load_model
    model = load_model()            # the package's default model
    model.card.embedding_dim, model.sha256[:12]
    # (256, '3f2a...')

:func:`load_model` returns a :class:`reid_search.embedding.backends.Backend` (any format); training and
export, which need the Keras graph itself, use its ``keras_model``.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import __version__
from .._files import file_sha256, write_json_atomic
from ..errors import InputError

if TYPE_CHECKING:
    import keras

CARD_FORMAT = "reid-search/model-card/v1"
DEFAULT_MODEL = Path(__file__).parents[1] / "models" / "default.keras"
PREPROCESSING = (
    "RGB; resized bilinearly to (input_height, input_width) without keeping aspect; "
    "float32 0-255 fed to the model, which divides by 255 and applies ImageNet mean/std itself"
)


class ModelError(InputError):
    """A model file that is missing, unreadable or without a valid card."""


@dataclass
class ModelCard:
    """The self-description saved beside every model file."""

    name: str
    architecture: str
    input_height: int
    input_width: int
    embedding_dim: int
    threshold: float | None = None  # cosine similarity at or above which compare says "same"
    threshold_rule: str = ""
    open_set: dict[str, Any] = field(default_factory=dict)  # query's accept rule (training.open_set)
    preprocessing: str = PREPROCESSING
    normalised: bool = True
    trained: bool = False
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    tower_config: dict[str, Any] = field(default_factory=dict)
    notes: str = ""
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat())
    tool_version: str = __version__
    format: str = CARD_FORMAT
    # how the file is run and how pixels reach it (the project's towers: all defaults)
    model_format: str = "keras"
    model_file: str | None = None  # relative to the card; None: the file beside the card
    channel_order: str = "RGB"
    pixel_scale: float = 1.0
    pixel_mean: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    pixel_std: list[float] = field(default_factory=lambda: [1.0, 1.0, 1.0])
    layout: str = "NHWC"
    fast_runtime: str | None = None  # an exported file beside this one, used for embedding when present
    source_sha256: str | None = None  # exported files: SHA-256 of the .keras file they came from

    @property
    def input_size(self) -> tuple[int, int]:
        return (self.input_height, self.input_width)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelCard:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


def card_path(model_path: str | Path) -> Path:
    """``foo.keras`` -> ``foo.card.json`` (any model suffix: ``.onnx``, ``.xml``, ``.tflite``)."""
    p = Path(model_path)
    return p.with_name(p.stem + ".card.json")


def read_card(model_path: str | Path) -> ModelCard:
    """Read the card beside a ``.keras`` model file."""
    return read_card_file(card_path(model_path))


def read_card_file(path: str | Path) -> ModelCard:
    """Read a model card file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelError(f"{path}: model card missing (every model file needs its card)") from None
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path}: model card is not valid JSON ({exc})") from None
    if data.get("format") != CARD_FORMAT:
        raise ModelError(f"{path}: not a reid-search model card (format {data.get('format')!r})")
    return ModelCard.from_dict(data)


def save_model(model: keras.Model, card: ModelCard, path: str | Path) -> Path:
    """Save the tower as ``path`` (.keras) and its card beside it, both atomically."""
    path = Path(path)
    if path.suffix != ".keras":
        raise ModelError(f"{path}: model files end in .keras")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.keras")
    model.save(tmp)
    os.replace(tmp, path)
    write_card(path, card)
    return path


def write_card(model_path: str | Path, card: ModelCard) -> None:
    """(Re)write the card of an existing model file, recording the file's SHA-256."""
    card_data = asdict(card)
    card_data["file_sha256"] = file_sha256(model_path)
    write_json_atomic(card_path(model_path), card_data)


def resolve_model_path(model: str | Path | None) -> Path:
    """The model file (or card) a command should use: ``--model`` if given, else the default."""
    path = Path(model).expanduser() if model else DEFAULT_MODEL
    if path.is_dir():
        candidates = sorted(path.glob("*.keras")) or sorted(path.glob("*.card.json"))
        if len(candidates) != 1:
            raise ModelError(f"{path}: expected exactly one .keras model (or one card) in the folder")
        path = candidates[0]
    if not path.is_file():
        raise ModelError(f"{path}: no such model file")
    return path


def copy_model(model_path: str | Path, dest: str | Path) -> Path:
    """Copy a model file and its card (e.g. a run's model.keras to the package default)."""
    import shutil

    src, dest = Path(model_path), Path(dest)
    if dest.suffix != ".keras":
        raise ModelError(f"{dest}: model files end in .keras")
    card = read_card(src)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dest)
    write_card(dest, card)
    return dest
