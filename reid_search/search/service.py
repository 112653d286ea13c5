"""The one query path shared by ``reid-search query`` and the server: options, model, answer.

Both front ends turn their inputs into :class:`QueryOptions` (checked once, here: counts,
camera numbers, times, the threshold), choose the gallery's model with
:func:`embedder_for_gallery` (a gallery built from precomputed vectors has no model to
choose: that is an error, never a silent default) and answer with
:func:`answer_query` (files) or :func:`~reid_search.search.query.answer_vector` (a vector
the server embedded itself).

Usage::

    >>> options = QueryOptions(top_k=5, camera=(1,), after="2026-11-25T08:00")
    >>> options.entry_filter().sql()
    ('camera in (?) and time >= ?', [1, '2026-11-25T08:00:00'])
    >>> QueryOptions(min_score=float("nan"))  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    GalleryError: min_score must be a number from -1 to 1, not nan
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..gallery import Gallery, GalleryError
from .query import QueryOptions, QueryResult, answer_images, answer_vector, search_gallery  # noqa: F401


def embedder_for_gallery(gallery: Gallery, model: str | Path | None = None, **embedder_options):
    """The model that built ``gallery``, unless ``model`` names another (checked when searching).

    A gallery built from precomputed vectors records no model file: the caller must name it.
    A model file that moved since the build falls back to the package's default, which
    ``check_model`` then accepts only if it is the same model.
    """
    from ..embedding.embedder import Embedder

    if model is not None:
        return Embedder(model, **embedder_options)
    built = gallery.manifest["model"].get("path")
    if not built:
        raise GalleryError(
            f"gallery {gallery.name}: built from precomputed vectors; name the model that made them"
        )
    return Embedder(built if Path(built).is_file() else None, **embedder_options)


def answer_query(
    gallery: Gallery, embedder, images: Sequence[str | Path], options: QueryOptions
) -> QueryResult:
    """Embed ``images`` (one person: a tracklet) and rank ``gallery``'s identities."""
    return answer_images(gallery, embedder, images, options)
