"""cellmap-data's API (release 2026.3.20.1935) over the Rust loader.

A training script written for cellmap-data runs on cellmap-compile when its import line
changes and nothing else::

    from cellmap_compile.compat import CellMapDataLoader, CellMapDataSplit
    from cellmap_compile.compat.transforms.augment import Binarize, NaNtoNum

The classes keep cellmap-data's constructors, attributes and batch layout; they turn their
arguments into a spec and let ``cellmap_compile.Loader`` (Rust worker threads) build the
batches. Value transforms of :mod:`.transforms.augment` (and torchvision's ``ToDtype`` and
``Normalize``) run in Rust; any other runs in Python after the loader, with a warning. What
differs from cellmap-data, and why: ``docs/python.md`` ("compat: what differs from
cellmap-data"). Needs torchvision (``pip install cellmap-compile[compat]``).
"""

try:
    import torchvision.transforms.v2  # noqa: F401 - cellmap-data's transforms are torchvision v2 transforms
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError(
        "cellmap_compile.compat needs torchvision (as cellmap-data does): pip install 'cellmap-compile[compat]'"
    ) from e

from . import transforms, utils
from .dataloader import CellMapDataLoader
from .dataset import CellMapDataset
from .dataset_writer import CellMapDatasetWriter
from .datasplit import CellMapDataSplit, CellMapSubset
from .empty_image import EmptyImage
from .image import CellMapImage
from .image_writer import ImageWriter
from .multidataset import CellMapMultiDataset
from .sampler import ClassBalancedSampler

__version__ = "2026.3.20.1935"

__all__ = [
    "CellMapDataLoader",
    "CellMapDataSplit",
    "CellMapDataset",
    "CellMapDatasetWriter",
    "CellMapImage",
    "CellMapMultiDataset",
    "CellMapSubset",
    "ClassBalancedSampler",
    "EmptyImage",
    "ImageWriter",
    "transforms",
    "utils",
]
