"""Person detectors behind one interface, chosen by their card (as embedding backends are).

A detector card (``NAME.card.json``) names the network file (relative to the card), its
runtime (``openvino`` or ``onnx``), input size and how its output is read (``decoder``):

=============  =====================================  ==========================
decoder        output                                 example
=============  =====================================  ==========================
``ssd``        ``[1,1,N,7]`` rows (id, label, conf,   Intel OMZ person-detection-0202
               x0, y0, x1, y1) in 0-1, plain resize
``yolox``      ``[1,A,85]`` raw head, letterbox top-  YOLOX-nano (COCO class 0)
               left, grid decode + NMS
=============  =====================================  ==========================

Both take BGR 0-255 float NCHW. ``detect(frames)`` takes RGB uint8 frames and returns one
:class:`Boxes` (pixels, ``x0, y0, x1, y1``, and scores) per frame.

Usage::

    detector = open_detector("benchmarks/detectors/person-detection-0202.card.json")
    boxes = detector.detect([frame])[0]
    boxes.xyxy.shape, boxes.scores[:3]
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from PIL import Image

from ..errors import InputError, require_extra
from ..registry import Registry


class DetectorError(InputError):
    """A detector card or network file that cannot be used."""


@dataclass(frozen=True)
class Boxes:
    """Detections of one frame: ``xyxy`` (N, 4) float pixels and ``scores`` (N,)."""

    xyxy: np.ndarray
    scores: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)

    def keep(self, mask: np.ndarray) -> Boxes:
        return Boxes(self.xyxy[mask], self.scores[mask])


@dataclass(frozen=True)
class DetectorCard:
    """What a detector is and how to run it (``NAME.card.json``)."""

    name: str
    runtime: str  # openvino | onnx
    decoder: str  # ssd | yolox
    model_file: str
    input_height: int
    input_width: int
    person_class: int = 0
    licence: str = ""
    source: str = ""
    measured: dict[str, Any] = field(default_factory=dict)
    path: str = ""  # the card file (set when read)

    @classmethod
    def read(cls, path: str | Path) -> DetectorCard:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise DetectorError(f"{path}: not a readable detector card ({exc})") from None
        known = set(cls.__dataclass_fields__)
        try:
            return cls(**{k: v for k, v in data.items() if k in known and k != "path"}, path=str(path))
        except TypeError as exc:
            raise DetectorError(f"{path}: not a detector card ({exc})") from None

    @property
    def model_path(self) -> Path:
        return (Path(self.path).parent / self.model_file).resolve()


class Detector:
    """A loaded person detector: ``detect(frames)`` -> one :class:`Boxes` per frame."""

    decoder: ClassVar[str]

    def __init__(self, card: DetectorCard, threads: int | None = None):
        self.card = card
        if not card.model_path.is_file():
            raise DetectorError(f"{card.path}: its network file {card.model_path} is missing")
        self._run = RUNTIMES.get(card.runtime, where=card.path)(card.model_path, threads)

    def detect(self, frames: list[np.ndarray], min_score: float = 0.3) -> list[Boxes]:
        return [self._detect_one(frame, min_score) for frame in frames]

    def _detect_one(self, frame: np.ndarray, min_score: float) -> Boxes:  # pragma: no cover - abstract
        raise NotImplementedError


def _bgr_nchw(image: Image.Image | np.ndarray) -> np.ndarray:
    return np.asarray(image, np.float32)[None, :, :, ::-1].transpose(0, 3, 1, 2).copy()


def resize(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    """Plain bilinear resize as the detectors were trained with (OpenCV's ``INTER_LINEAR``, no
    anti-aliasing; OpenCV comes with the ``[video]`` extra), PIL's bilinear without it."""
    try:
        import cv2
    except ImportError:
        return np.asarray(Image.fromarray(frame).resize((width, height), Image.BILINEAR))
    return cv2.resize(frame, (width, height), interpolation=cv2.INTER_LINEAR)


class SsdDetector(Detector):
    """OMZ-style detectors: plain resize, ``detection_out`` rows in 0-1 coordinates."""

    decoder = "ssd"

    def _detect_one(self, frame: np.ndarray, min_score: float) -> Boxes:
        h, w = frame.shape[:2]
        resized = resize(frame, self.card.input_width, self.card.input_height)
        rows = self._run(_bgr_nchw(resized)).reshape(-1, 7)
        rows = rows[: np.argmax(rows[:, 0] < 0)] if (rows[:, 0] < 0).any() else rows
        rows = rows[(rows[:, 1] == self.card.person_class) & (rows[:, 2] >= min_score)]
        xyxy = np.clip(rows[:, 3:7], 0, 1) * np.array([w, h, w, h], np.float32)
        return Boxes(xyxy.astype(np.float32), rows[:, 2].astype(np.float32))


class YoloxDetector(Detector):
    """YOLOX: letterbox into the top-left corner (pad 114), decode the grid, keep persons, NMS."""

    decoder = "yolox"
    strides = (8, 16, 32)
    nms_iou = 0.45

    def _detect_one(self, frame: np.ndarray, min_score: float) -> Boxes:
        h, w = frame.shape[:2]
        ih, iw = self.card.input_height, self.card.input_width
        scale = min(ih / h, iw / w)
        canvas = np.full((ih, iw, 3), 114, np.uint8)
        scaled = resize(frame, int(w * scale), int(h * scale))
        canvas[: scaled.shape[0], : scaled.shape[1]] = scaled
        out = self._run(_bgr_nchw(canvas))[0]
        grids, steps = [], []
        for stride in self.strides:
            gh, gw = ih // stride, iw // stride
            ys, xs = np.meshgrid(np.arange(gh), np.arange(gw), indexing="ij")
            grids.append(np.stack([xs, ys], -1).reshape(-1, 2))
            steps.append(np.full((gh * gw, 1), stride))
        grid, stride = np.concatenate(grids), np.concatenate(steps)
        centre = (out[:, :2] + grid) * stride
        size = np.exp(out[:, 2:4]) * stride
        scores = out[:, 4] * out[:, 5 + self.card.person_class]
        keep = scores >= min_score
        boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=1)[keep] / scale
        boxes = np.clip(boxes, 0, [w, h, w, h])
        chosen = non_max_suppression(boxes, scores[keep], self.nms_iou)
        return Boxes(boxes[chosen].astype(np.float32), scores[keep][chosen].astype(np.float32))


def non_max_suppression(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Indices of the boxes kept by greedy NMS, best first.

    >>> non_max_suppression(np.array([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30.]]),
    ...                     np.array([0.9, 0.8, 0.7]), 0.5).tolist()
    [0, 2]
    """
    order, kept = np.argsort(-scores), []
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    while len(order):
        best, rest = order[0], order[1:]
        kept.append(int(best))
        x0 = np.maximum(boxes[best, 0], boxes[rest, 0])
        y0 = np.maximum(boxes[best, 1], boxes[rest, 1])
        x1 = np.minimum(boxes[best, 2], boxes[rest, 2])
        y1 = np.minimum(boxes[best, 3], boxes[rest, 3])
        inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
        order = rest[inter / np.maximum(area[best] + area[rest] - inter, 1e-9) <= iou]
    return np.array(kept, np.int64)


def _openvino_runner(path: Path, threads: int | None):
    ov = require_extra("openvino", "openvino", "this detector")
    core = ov.Core()
    config = {"INFERENCE_NUM_THREADS": threads} if threads else {}
    compiled = core.compile_model(str(path), "CPU", config)
    request = compiled.create_infer_request()
    output = compiled.outputs[0]
    return lambda x: request.infer({0: x})[output]


def _onnx_runner(path: Path, threads: int | None):
    ort = require_extra("onnxruntime", "onnx", "this detector")
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x})[0]


RUNTIMES: Registry[Callable] = Registry("runtime", DetectorError)
RUNTIMES.register("openvino", _openvino_runner)
RUNTIMES.register("onnx", _onnx_runner)
DETECTORS: Registry[type[Detector]] = Registry("decoder", DetectorError)  # a new family: one register
for _detector in (SsdDetector, YoloxDetector):
    DETECTORS.register(_detector.decoder, _detector)


def open_detector(card_file: str | Path, threads: int | None = None) -> Detector:
    """The detector a card describes (its ``decoder`` picks the class, ``runtime`` the engine)."""
    card = DetectorCard.read(card_file)
    return DETECTORS.get(card.decoder, where=str(card_file))(card, threads)
