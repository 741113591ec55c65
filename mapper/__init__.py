"""einsynth mapper package: the Mapping object (mapper.mapping) and, later, the ILP mapper."""
from mapper.mapping import LEVELS, EinsumMapping, Group, Mapping, default_mapping, load_mapping

__all__ = ["LEVELS", "EinsumMapping", "Group", "Mapping", "default_mapping", "load_mapping"]
from .api import map_cascade, MapResult  # noqa: E402  (appended by the mapper helper)
