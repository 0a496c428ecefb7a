"""cellmap-data's ``transforms`` package: the value transforms of :mod:`.augment`."""

from . import augment
from .augment import Binarize, GaussianBlur, GaussianNoise, NaNtoNum, Normalize, RandomContrast, RandomGamma

__all__ = [
    "augment",
    "Binarize",
    "GaussianBlur",
    "GaussianNoise",
    "NaNtoNum",
    "Normalize",
    "RandomContrast",
    "RandomGamma",
]
