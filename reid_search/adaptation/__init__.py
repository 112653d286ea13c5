"""Domain adaptation without labels: a model learns a user's own cameras from their crops.

Usage::

    from reid_search.adaptation import AdaptConfig, adapt
    result = adapt(AdaptConfig(target=["lobby"], out="lobby-adapted.keras"))
"""

from .clustering import ClusterSettings, cluster
from .config import INGREDIENTS, AdaptConfig, adapt_command
from .target import AdaptError, TargetCrops, from_folders, from_gallery

__all__ = [
    "INGREDIENTS",
    "AdaptConfig",
    "AdaptError",
    "ClusterSettings",
    "TargetCrops",
    "adapt",
    "adapt_command",
    "cluster",
    "from_folders",
    "from_gallery",
]


def adapt(*args, **kwargs):
    """See :func:`reid_search.adaptation.run.adapt` (imported on use: it needs TensorFlow)."""
    from .run import adapt as run

    return run(*args, **kwargs)
