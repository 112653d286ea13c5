"""Model formats behind one interface: a model file plus its card -> vectors for a batch of pixels.

Every format is a small :class:`Backend` class in :data:`BACKENDS`, chosen by the model
file's suffix (as torchreid picks a model by name):

=========  ===========  ==========================  ============================
format     suffix       runtime                     pip extra
=========  ===========  ==========================  ============================
keras      ``.keras``   TensorFlow / Keras 3        (core)
onnx       ``.onnx``    onnxruntime                 ``reid-search[onnx]``
openvino   ``.xml``     OpenVINO (``.bin`` beside)  ``reid-search[openvino]``
litert     ``.tflite``  LiteRT (ai-edge-litert)     (core)
=========  ===========  ==========================  ============================

A model is named by its file (its card ``NAME.card.json`` beside it) or by a card whose
``model_file`` points at the file (relative to the card), which is how the peers' cards in
``benchmarks/peers/`` reach ``../shared/peers``. The card says how pixels reach the
network: ``channel_order`` (RGB/BGR), ``pixel_scale``, ``pixel_mean``, ``pixel_std``
(``x * scale - mean) / std``) and ``layout`` (NHWC/NCHW). The project's own towers
normalise inside, so their cards say RGB, scale 1, mean 0, std 1, NHWC.

Usage::

    from reid_search.embedding.backends import open_model
    model = open_model("benchmarks/peers/osnet_x0_25_msmt17.card.json")
    model.card.model_format, model.embed(pixels).shape
    # ('onnx', (8, 512))
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar

import numpy as np

from .._files import files_sha256
from ..registry import Registry
from .model_store import ModelCard, ModelError, card_path, read_card_file, resolve_model_path


class Backend:
    """A loaded model of one format; :meth:`embed` maps 0-255 RGB pixels to raw vectors."""

    format: ClassVar[str]
    suffixes: ClassVar[tuple[str, ...]]
    extra: ClassVar[str | None] = None  # pip extra that brings the runtime

    def __init__(self, path: Path, card: ModelCard, threads: int | None = None):
        self.path, self.card = path, card
        self.threads = threads or os.cpu_count() or 1
        self.file_sha256 = model_files_sha256(self.files())
        # a model's identity (what galleries record) is its training-format file
        self.sha256 = card.source_sha256 or self.file_sha256

    # ------------------------------------------------------------ per format
    def files(self) -> list[Path]:
        """Every file whose bytes define the model (hashed into ``sha256``)."""
        return [self.path]

    def run(self, batch: np.ndarray) -> np.ndarray:
        """The network on a batch already in its channel order, scale and layout."""
        raise NotImplementedError

    # ------------------------------------------------------------ shared
    def preprocess(self, pixels: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) RGB 0-255 -> what the network takes, as the card says."""
        c = self.card
        x = np.asarray(pixels, dtype=np.float32)
        if c.channel_order.upper() == "BGR":
            x = x[..., ::-1]
        if c.pixel_scale != 1.0 or any(c.pixel_mean) or any(s != 1.0 for s in c.pixel_std):
            x = (x * np.float32(c.pixel_scale) - np.asarray(c.pixel_mean, np.float32)) / np.asarray(
                c.pixel_std, np.float32
            )
        if c.layout.upper() == "NCHW":
            x = x.transpose(0, 3, 1, 2)
        return np.ascontiguousarray(x, dtype=np.float32)

    def embed(self, pixels: np.ndarray) -> np.ndarray:
        """Raw (not normalised) vectors of a batch of (N, H, W, 3) RGB 0-255 pixels."""
        if len(pixels) == 0:
            return np.zeros((0, self.card.embedding_dim), np.float32)
        out = np.asarray(self.run(self.preprocess(pixels)), dtype=np.float32)
        return out.reshape(len(pixels), -1)

    @classmethod
    def require(cls, module: str):
        """Import the runtime, or a clear error naming the extra that installs it."""
        from ..errors import require_extra

        return require_extra(module, cls.extra, f"running {cls.format} models")


class KerasBackend(Backend):
    """The project's own towers (``.keras``), run by a traced ``tf.function``."""

    format = "keras"
    suffixes = (".keras",)

    def __init__(self, path: Path, card: ModelCard, threads: int | None = None):
        super().__init__(path, card, threads)
        tf = import_tensorflow_quietly()  # its C++ start-up lines stay off stderr, as on LiteRT
        import keras

        from . import layers  # noqa: F401  (registers the towers' custom layers for loading)

        try:
            self.keras_model = keras.saving.load_model(path, compile=False, safe_mode=True)
        except Exception as exc:  # Keras raises many types for a bad archive
            raise ModelError(f"{path}: cannot load model ({type(exc).__name__}: {exc})") from None
        expected = (None, card.input_height, card.input_width, 3)
        if tuple(self.keras_model.input_shape) != expected:
            raise ModelError(f"{path}: input {self.keras_model.input_shape} differs from card {expected}")
        spec = tf.TensorSpec((None, *card.input_size, 3), tf.float32)
        self._infer = tf.function(lambda x: self.keras_model(x, training=False), input_signature=[spec])

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self._infer(batch).numpy()


class OnnxBackend(Backend):
    """ONNX files run by onnxruntime on the CPU."""

    format = "onnx"
    suffixes = (".onnx",)
    extra = "onnx"

    def __init__(self, path: Path, card: ModelCard, threads: int | None = None):
        super().__init__(path, card, threads)
        ort = self.require("onnxruntime")
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelError(f"{path}: onnxruntime cannot load it ({type(exc).__name__})") from None
        self.input_name = self.session.get_inputs()[0].name

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: batch})[0]


class OpenVinoBackend(Backend):
    """OpenVINO IR (``.xml`` + ``.bin``), reshaped to a dynamic batch, on the CPU."""

    format = "openvino"
    suffixes = (".xml",)
    extra = "openvino"

    def __init__(self, path: Path, card: ModelCard, threads: int | None = None):
        super().__init__(path, card, threads)
        ov = self.require("openvino")
        core = ov.Core()
        try:
            model = core.read_model(str(path))
            shape = list(model.inputs[0].partial_shape)
            shape[0] = ov.Dimension(-1)
            model.reshape({model.inputs[0]: ov.PartialShape(shape)})
            self.compiled = core.compile_model(
                model, "CPU", {"INFERENCE_NUM_THREADS": self.threads, "INFERENCE_PRECISION_HINT": "f32"}
            )
        except Exception as exc:  # OpenVINO raises RuntimeError and its own types
            raise ModelError(f"{path}: OpenVINO cannot load it ({type(exc).__name__}: {exc})") from None
        self.request = self.compiled.create_infer_request()

    def files(self) -> list[Path]:
        return [self.path, self.path.with_suffix(".bin")]

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self.request.infer({0: batch})[self.compiled.outputs[0]]


class LiteRtBackend(Backend):
    """TensorFlow Lite / LiteRT flatbuffers run by ai-edge-litert (XNNPACK) on the CPU."""

    format = "litert"
    suffixes = (".tflite",)
    extra = "litert"

    def __init__(self, path: Path, card: ModelCard, threads: int | None = None):
        super().__init__(path, card, threads)
        interpreter_module = self.require("ai_edge_litert.interpreter")
        try:
            with quiet_native_stderr():  # LiteRT prints an INFO line per delegate from C++
                self.interpreter = interpreter_module.Interpreter(str(path), num_threads=self.threads)
        except Exception as exc:  # LiteRT raises ValueError/RuntimeError
            raise ModelError(f"{path}: LiteRT cannot load it ({type(exc).__name__}: {exc})") from None
        self.input_index = self.interpreter.get_input_details()[0]["index"]
        self.output_index = self.interpreter.get_output_details()[0]["index"]
        self.batch = 0

    def run(self, batch: np.ndarray) -> np.ndarray:
        if len(batch) != self.batch:
            self.interpreter.resize_tensor_input(self.input_index, batch.shape)
            with quiet_native_stderr():
                self.interpreter.allocate_tensors()
            self.batch = len(batch)
        self.interpreter.set_tensor(self.input_index, batch)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output_index).copy()


@contextmanager
def quiet_native_stderr():
    """Silence what native code writes to file descriptor 2 (unless REID_SEARCH_VERBOSE is set)."""
    if os.environ.get("REID_SEARCH_VERBOSE"):
        yield
        return
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def import_tensorflow_quietly():
    """Import TensorFlow (once) with its C++ start-up lines kept off stderr; returns the module.

    Commands that always need TensorFlow (train, export, adapt) call it first, so that they
    are as quiet as the LiteRT path; ``--verbose`` (REID_SEARCH_VERBOSE) lets the lines through.
    """
    if "tensorflow" not in sys.modules:
        with quiet_native_stderr():
            import tensorflow  # noqa: F401
    return sys.modules["tensorflow"]


BACKENDS: Registry[type[Backend]] = Registry("model format", ModelError)  # a new format: one register
for _backend in (KerasBackend, OnnxBackend, OpenVinoBackend, LiteRtBackend):
    BACKENDS.register(_backend.format, _backend)


def backend_for(path: Path) -> type[Backend]:
    """The backend class of a model file, by its suffix."""
    for cls in BACKENDS.values():
        if path.name.endswith(cls.suffixes):
            return cls
    known = ", ".join(s for cls in BACKENDS.values() for s in cls.suffixes)
    raise ModelError(f"{path}: unknown model format (known: {known})")


def model_files_sha256(paths: list[Path]) -> str:
    """:func:`reid_search._files.files_sha256` of a model's files; a missing one is a ModelError."""
    try:
        return files_sha256(paths)
    except FileNotFoundError as exc:
        raise ModelError(f"{exc.filename}: no such model file") from None


def open_model(model: str | Path | None = None, threads: int | None = None, fast: bool = True) -> Backend:
    """Load any supported model (file or card; None = the package default) behind one interface.

    With ``fast`` (embedding), a ``.keras`` model whose card names an exported
    ``fast_runtime`` file made from this very file (same SHA-256) runs from that file when
    its runtime is installed; ``fast=False`` always gives the Keras model (training, export).
    """
    path, card = resolve_model_path(model), None
    if path.name.endswith(".card.json"):
        card = read_card_file(path)
        if not card.model_file:
            raise ModelError(f"{path}: the card names no model_file")
        path = (path.parent / card.model_file).resolve()
        if not path.is_file():
            raise ModelError(f"{path}: model file named by the card is missing")
    cls = backend_for(path)
    if card is None:
        card = read_card_file(card_path(path))
    if card.model_format != cls.format:
        raise ModelError(f"{path}: the card says {card.model_format!r}, the file is {cls.format!r}")
    if fast and card.fast_runtime:
        faster = _fast_sibling(path, card, threads)
        if faster is not None:
            return faster
    return cls(path, card, threads)


_warned_slow: set[str] = set()


def _warn_slow_once(path: Path, reason: str) -> None:
    """One stderr line per model and process: the model runs, but through its slow path."""
    if str(path) in _warned_slow:
        return
    _warned_slow.add(str(path))
    print(f"reid-search: {path.name} runs through Keras, several times slower: {reason}", file=sys.stderr)


def _fast_sibling(path: Path, card: ModelCard, threads: int | None) -> Backend | None:
    """The exported fast file named by a Keras card, if present, current and runnable.

    When it is not, the Keras model still works, and stderr says once why it is slow.
    """
    target = path.with_name(card.fast_runtime)
    if not target.is_file() or not card_path(target).is_file():
        _warn_slow_once(path, f"its fast export {target.name} is missing (reid-search export)")
        return None
    fast_card = read_card_file(card_path(target))
    if fast_card.source_sha256 != model_files_sha256([path]):
        _warn_slow_once(path, f"{target.name} was exported from an older version of it; export again")
        return None
    try:
        return backend_for(target)(target, fast_card, threads)
    except ModelError as exc:
        _warn_slow_once(path, str(exc))
        return None


def load_model(model: str | Path | None = None, threads: int | None = None):
    """Load a model of any format with its card; ``None`` loads the package's default model.

    Returns a :class:`reid_search.embedding.backends.Backend` (``card``, ``path``, ``sha256``,
    ``embed``; Keras models also ``keras_model``).
    """
    return open_model(model, threads, fast=False)
