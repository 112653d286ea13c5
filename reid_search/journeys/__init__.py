"""Journeys: where a person went across the gallery's cameras, and when.

Usage::

    from reid_search.journeys import trace
    journey = trace(gallery, embedder, ["crop.jpg"])
    journey.to_dict()["visits"]
"""

from .trace import TRACE_SCHEMA, Journey, trace, trace_vector
from .visits import Seen, Visit, resolve

__all__ = ["TRACE_SCHEMA", "Journey", "Seen", "Visit", "resolve", "trace", "trace_vector"]
