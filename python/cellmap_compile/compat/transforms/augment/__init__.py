"""Value transforms of cellmap-data (``cellmap_data.transforms.augment``), usable on their own;
the compat loader recognises them and runs them in Rust (``docs/python.md``)."""

from .binarize import Binarize
from .gaussian_blur import GaussianBlur
from .gaussian_noise import GaussianNoise
from .nan_to_num import NaNtoNum
from .normalize import Normalize
from .random_contrast import RandomContrast
from .random_gamma import RandomGamma

__all__ = [
    "Binarize",
    "GaussianBlur",
    "GaussianNoise",
    "NaNtoNum",
    "Normalize",
    "RandomContrast",
    "RandomGamma",
]
