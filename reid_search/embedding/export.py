"""Export a trained ``.keras`` tower to a fast CPU format, with a card that says where it came from.

Keras stays the training format; for embedding, a converted file runs several times
faster on a CPU. Each format is a small exporter in :data:`EXPORTERS`:

* ``litert`` -> ``NAME-litert.tflite``: TensorFlow Lite / LiteRT flatbuffer (float32),
  run by ``ai-edge-litert`` with XNNPACK (a core dependency).
* ``onnx``   -> ``NAME-onnx.onnx`` via tf2onnx (extra ``[onnx]`` plus ``tf2onnx``).

The exported card copies the source card (threshold, metrics, training) and adds
``source_sha256``, the SHA-256 of the ``.keras`` file: galleries name a model by that
hash, so vectors of the fast file and of the Keras file (cosine >= 0.9999, tested) are
interchangeable. The source card records the export under ``fast_runtime`` so that
loading the ``.keras`` model for embedding picks the fast file automatically.

Usage::

    from reid_search.embedding.export import export_model
    export_model("reid_search/models/default.keras", "litert")
    # PosixPath('reid_search/models/default-litert.tflite')
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from .._files import file_sha256
from ..registry import Registry
from .model_store import ModelError, card_path, read_card, write_card


def _to_litert(keras_model, out: Path) -> None:
    import tensorflow as tf

    from .backends import quiet_native_stderr

    converter = tf.lite.TFLiteConverter.from_keras_model(keras_model)
    with contextlib.redirect_stdout(io.StringIO()), quiet_native_stderr():  # the converter's trace
        flatbuffer = converter.convert()
    out.write_bytes(flatbuffer)


def _to_onnx(keras_model, out: Path) -> None:
    from ..errors import MissingExtra

    try:
        import tf2onnx
    except ImportError:  # not in any extra: it pins an old protobuf
        raise MissingExtra("ONNX export needs tf2onnx: pip install tf2onnx") from None
    import tensorflow as tf

    spec = (tf.TensorSpec((None, *keras_model.input_shape[1:]), tf.float32, name="pixels"),)
    tf2onnx.convert.from_keras(keras_model, input_signature=spec, output_path=str(out))


EXPORTERS: Registry[tuple[str, str, Callable]] = Registry("export format", ModelError)
# format -> (file suffix, card model_format, converter)
EXPORTERS.register("litert", (".tflite", "litert", _to_litert))
EXPORTERS.register("onnx", (".onnx", "onnx", _to_onnx))


def export_model(model: str | Path, format: str, out: str | Path | None = None, link: bool = True) -> Path:
    """Convert ``model`` (.keras) to ``format``; writes the file and its card, returns the file.

    ``link`` records the export in the source card (``fast_runtime``) so it is used
    automatically for embedding.
    """
    from .backends import KerasBackend

    suffix, model_format, convert = EXPORTERS.get(format)
    source = Path(model)
    if source.suffix != ".keras":
        raise ModelError(f"{source}: only .keras models are exported")
    card = read_card(source)
    recorded = json.loads(card_path(source).read_text()).get("file_sha256")
    source_sha = file_sha256(source)
    if recorded and recorded != source_sha:
        raise ModelError(
            f"{source}: stale: the file changed since its card was written (card for sha256 "
            f"{recorded[:12]}, file {source_sha[:12]}); export the model its card describes"
        )
    target = Path(out) if out else source.with_name(f"{source.stem}-{format}{suffix}")
    tmp = target.with_name(f".{target.name}.tmp{suffix}")
    convert(KerasBackend(source, card).keras_model, tmp)
    tmp.replace(target)
    exported = replace(
        card,
        name=f"{card.name}-{format}",
        model_format=model_format,
        model_file=None,
        fast_runtime=None,
        source_sha256=source_sha,
        notes=(card.notes + " " if card.notes else "") + f"exported from {source.name} (sha256 {source_sha})",
    )
    write_card(target, exported)
    if link:
        write_card(source, replace(card, fast_runtime=target.name))
    return target
