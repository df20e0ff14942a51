"""mmdet adapter of insplug's faithful FCOS (:mod:`insplug.core.fcos`)."""
from .head import FaithfulFCOSHead  # noqa: F401
