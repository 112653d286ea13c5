"""Gallery -> answers: queries (open set, filters, clusters), re-ranking, evaluation and its
metrics, reports and rank-list pictures.

``query`` holds the search itself; its main names are re-exported here::

    from reid_search.search import search_gallery, compare_images
"""

from .compare import Comparison, compare_images
from .query import GalleryMatch, IdentityHit, QueryResult, search_gallery

__all__ = ["Comparison", "GalleryMatch", "IdentityHit", "QueryResult", "compare_images", "search_gallery"]
