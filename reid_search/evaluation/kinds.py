"""The evaluation protocols as a registry (:data:`PROTOCOLS`): each kind says whether it
applies to a source (a dataset folder or a gallery) and builds the protocol over its items.
``auto`` tries them in registration order: ``mars-official``, ``market1501``, ``cross-camera``.

A new protocol is one class here and one ``PROTOCOLS.register`` call::

    >>> PROTOCOLS.names()
    ('mars-official', 'market1501', 'cross-camera')
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..data.layouts import DatasetScan, default_gallery_splits
from ..gallery import Gallery
from ..registry import Registry
from .items import (
    _check_scorable,
    _gallery_mars_order,
    _subset,
    items_from_scan,
    mars_official_items,
)
from .protocols import (
    EvalItems,
    Protocol,
    ProtocolError,
    cross_camera,
    market1501,
    mars_info_dir,
    mars_official,
)


@dataclass
class EvalRequest:
    """What the user asked of an evaluation, shared by the protocol kinds that try it (the
    dataset's ordinary items are embedded once, however many kinds look at them)."""

    embedder: Any
    level: str
    frames_per_tracklet: int | None
    progress: bool
    query_cameras: list[int] | None
    gallery_cameras: list[int] | None
    named: bool  # the user named the protocol: it is used if it can be at all
    _items: tuple[EvalItems, list[str]] | None = None

    @property
    def cameras_chosen(self) -> bool:
        return bool(self.query_cameras or self.gallery_cameras)

    def dataset_items(self, scan: DatasetScan, source: str) -> tuple[EvalItems, list[str]]:
        """The scan's query + test splits (else its gallery splits) embedded: (items, failures)."""
        if self._items is None:
            splits = (
                ["query", "bounding_box_test"]
                if {"query", "bounding_box_test"} <= set(scan.splits)
                else default_gallery_splits(scan)
            )
            scan.records = [r for r in scan.records if r.split in splits]
            failures = [f"{s.path}: {s.reason}" for s in scan.skipped]
            items, embed_failures = items_from_scan(
                scan, self.embedder, self.level, self.frames_per_tracklet, self.progress
            )
            _check_scorable(items, source, failures + embed_failures)
            self._items = (items, failures + embed_failures)
        return self._items


@dataclass
class Chosen:
    """A protocol kind's answer: the items it scores, the protocol, their level, failures."""

    items: EvalItems
    protocol: Protocol
    level: str
    failures: list[str] = field(default_factory=list)


class ProtocolKind:
    """One evaluation protocol. ``auto`` tries the registered kinds in order and takes the first
    whose ``for_gallery`` / ``for_dataset`` answers; a named kind is used if it can be at all.
    Ordinary kinds only say when they apply (:meth:`applies`) and how to ``build`` the protocol
    over the usual items; a kind with items of its own (mars-official) overrides the ``for_``s."""

    name: str = ""
    needs: str = ""  # what a source must hold for this kind (the error when it cannot be used)

    def applies(self, items: EvalItems, cameras_chosen: bool) -> bool:
        return True

    def build(self, items: EvalItems, request: EvalRequest) -> Protocol:
        raise NotImplementedError

    def _choose(
        self, items: EvalItems, request: EvalRequest, level: str, failures: list[str]
    ) -> Chosen | None:
        if request.named or self.applies(items, request.cameras_chosen):
            return Chosen(items, self.build(items, request), level, failures)
        return None

    def for_gallery(self, gallery: Gallery, items: EvalItems, request: EvalRequest) -> Chosen | None:
        return self._choose(items, request, gallery.level, [])

    def for_dataset(self, scan: DatasetScan, source: str, request: EvalRequest) -> Chosen | None:
        items, failures = request.dataset_items(scan, source)
        return self._choose(items, request, request.level, failures)


PROTOCOLS: Registry[ProtocolKind] = Registry("protocol", ProtocolError)  # auto: tried in this order


class MarsOfficial(ProtocolKind):
    """MARS's own test protocol: the official tracklets and queries of its ``info/`` files."""

    name, needs = "mars-official", "a MARS root with info/ (or a tracklet gallery built from one)"

    def for_gallery(self, gallery, items, request):
        mars = None if request.cameras_chosen else _gallery_mars_order(gallery, items)
        if mars is None:
            return None
        items = _subset(items, mars[0])
        return Chosen(items, mars_official(items, mars[1]), gallery.level)

    def for_dataset(self, scan, source, request):
        official = scan.layout == "mars" and mars_info_dir(scan.root) is not None
        if not request.named and (request.cameras_chosen or not official):
            return None
        items, query_rows, failures = mars_official_items(
            scan.root, request.embedder, request.frames_per_tracklet, request.progress
        )
        return Chosen(items, mars_official(items, query_rows), "tracklet", failures)


class Market1501(ProtocolKind):
    """Market-1501's own split: ``query/`` against ``bounding_box_test/``."""

    name, needs = "market1501", "query/ and bounding_box_test/ splits"

    def applies(self, items, cameras_chosen):
        return (
            not cameras_chosen
            and items.splits is not None
            and {"query", "bounding_box_test"} <= set(items.splits)
        )

    def build(self, items, request):
        return market1501(items)


class CrossCamera(ProtocolKind):
    """Every item queries the rest; matches of the query's own camera (or tracklet) are junk."""

    name, needs = "cross-camera", "labelled items"

    def build(self, items, request):
        return cross_camera(items, request.query_cameras, request.gallery_cameras)


for _kind in (MarsOfficial(), Market1501(), CrossCamera()):
    PROTOCOLS.register(_kind.name, _kind)


def choose_protocol(
    kinds: list[ProtocolKind], source: str, answer: Callable[[ProtocolKind], Chosen | None]
) -> Chosen:
    """The first kind's answer (``kinds``: the one named, or all for ``auto``)."""
    for kind in kinds:
        chosen = answer(kind)
        if chosen is not None:
            return chosen
    kind = kinds[0] if len(kinds) == 1 else None
    why = f"protocol {kind.name} needs {kind.needs}" if kind else "no protocol applies"
    raise ProtocolError(f"{source}: {why} (known: auto, {', '.join(PROTOCOLS.names())})")
