"""Type stubs of the pyo3 extension ``cellmap_compile._native`` (Rust: ``python/src/``).

Every function that takes a spec takes it as ``(text, source)``: ``text`` is the spec as YAML or
JSON text, ``source`` the path it was read from (relative data paths resolve against its folder;
messages name it with line and column) or ``"<dict>"`` for a spec built in Python (relative
paths then resolve against the current directory and messages carry JSON pointers only).
Long calls release the GIL.
"""

from typing import Any, TypedDict

class CellmapError(RuntimeError):
    """An error of the loader, the planner or the reader; the message is the CLI's."""

class SpecError(CellmapError, ValueError):
    """The spec is invalid. ``diagnostics`` holds every error and warning of it."""

    diagnostics: list[dict[str, Any]]

class SlotsHeldError(CellmapError):
    """Every ring slot is held by live tensors of earlier batches."""

#: Keys of the batch dict besides the arrays.
META_KEYS: list[str]
#: The version of the Rust crates inside the extension.
VERSION: str

def check(text: str, source: str, data: bool = False) -> list[dict[str, Any]]:
    """Diagnostics of a spec (empty when valid). Each dict: ``severity`` ("error" | "warning"),
    ``message``, ``file``, ``line``, ``column`` (1-based; ``None`` without a file position),
    ``pointer`` (JSON pointer), ``expected``, ``hint`` (``None`` when absent), ``rendered`` (the
    text the CLI prints). ``data=True`` also opens the data (as ``check --data``)."""

def normalized_spec(text: str, source: str) -> str:
    """The validated spec as JSON (every default filled in); raises ``SpecError``."""

def plan_json(text: str, source: str, counts: bool = False) -> str:
    """The plan as JSON, as ``cellmap-compile plan --json`` prints it; raises ``SpecError`` or
    ``CellmapError``. ``counts`` counts class voxels (``plan --counts``)."""

class CacheArgs(TypedDict, total=False):
    """Options of ``write_training_cache`` (``codec`` is required; a missing other key takes the
    default shown)."""

    codec: str  # "none", "lz4" or "zstd"
    chunk: int | None  # None: the spec's chunk shape
    prune: bool  # False
    force: bool  # False

def write_training_cache(text: str, source: str, out: str, args: CacheArgs) -> dict[str, Any]:
    """Write the spec's training cache in ``out`` (``cellmap-compile cache``); the report as a dict."""

class SampleRequest(TypedDict, total=False):
    """What ``sample`` reads (``split``, ``dataset`` and ``centre_nm`` are required; a missing
    key takes the default shown)."""

    split: str
    dataset: int
    centre_nm: tuple[float, float, float]
    raw_values: bool  # False
    augment: bool  # False
    epoch: int  # 0
    index: int  # 0

def sample(text: str, source: str, request: SampleRequest) -> tuple[dict[str, Any], dict[str, Any]]:
    """One sample as ``cellmap-compile sample`` writes it: ``{array: DLPack capsule}`` (float32;
    inputs ``[1, Z, Y, X]``, targets ``[C, Z, Y, X]``) and the info dict of ``sample.json``.
    ``augment``: as the training loader draws sample ``index`` of epoch ``epoch`` (rank 0)."""

def preview(text: str, source: str, path: str, split: str = "train", step: int = 0) -> None:
    """Draw batch ``step`` of ``split`` as a PNG grid at ``path``."""

def import_config(config_json: str, csv: str | None, name: str, iterations: str = "samples") -> tuple[str, list[str]]:
    """A cellmap-data / segmentation-challenge configuration (JSON object of keyword
    arguments) as spec YAML, with notes on keys without effect. ``iterations``: "samples" or
    "batches"."""

def cli(argv: list[str]) -> int:
    """Run the ``cellmap-compile`` command line with ``argv`` (the program name first, as in
    ``sys.argv``); returns the exit code."""

class LoaderArgs(TypedDict, total=False):
    """Options of a ``NativeLoader`` (``split`` is required; a missing key takes the default
    shown). ``rank`` and ``world_size`` come together, or neither to read torchrun's environment;
    ``seed`` overrides ``sampling.seed``; ``epoch`` and ``step`` say where to start."""

    split: str
    rank: int | None  # None
    world_size: int | None  # None
    seed: int | None  # None
    epoch: int  # 0
    step: int  # 0
    cache_dir: str | None  # None
    plan: str | None  # None
    training_cache: str | None  # None

class NativeLoader:
    """The generic Rust loader: an endless training stream or validation passes.

    The plan is cached under ``cache_dir`` (default ``$CELLMAP_CACHE_DIR`` or
    ``~/.cache/cellmap-compile/plans``) keyed by the normalized spec; a cached plan is checked
    against the data's metadata when opened and replaced when stale."""

    def __init__(self, text: str, source: str, args: LoaderArgs) -> None:
        """``args``: the ``Loader``'s keyword arguments. ``args["plan"]``: a plan made earlier (JSON,
        a generated package's embedded plan): the data is checked against it instead of planned; a
        stale one is an error."""
    def next_batch(
        self,
    ) -> tuple[int, int, list[Any], list[int], list[int], list[tuple[float, float, float]]] | None:
        """``(epoch, step, capsules, idx, dataset, centre_nm)``: one DLPack capsule per array
        (float32 ``[B, C, Z, Y, X]``, a zero-copy view of the ring slot, which stays reserved
        until the last tensor viewing it is freed), or ``None`` after a validation pass."""
    def batches_per_epoch(self) -> int: ...
    def prefetch(self) -> int: ...
    def device(self) -> str: ...
    def pin_memory(self) -> bool: ...
    def arrays(self) -> list[tuple[str, int, list[int]]]:
        """``(name, channels, [z, y, x])`` in batch order (inputs, then targets)."""
    def plan_json(self) -> str: ...
    def spec_json(self) -> str: ...
    def plan_origin(self) -> str:
        """``"cache"`` (opened over a cached plan), ``"planned"`` or ``"embedded"``."""
    def skipped_samples(self) -> int: ...

class NativeImage:
    """One OME-NGFF multiscale array read at a requested voxel size (cellmap-data's
    ``CellMapImage``): the coarsest level not coarser than ``scale``, resampled when the voxel
    sizes differ (``interpolation`` "nearest" or "linear"), ``pad_value`` outside the data."""

    def __init__(
        self,
        path: str,
        scale: tuple[float, float, float],
        shape: tuple[int, int, int],
        interpolation: str = "nearest",
        pad_value: float = float("nan"),
    ) -> None: ...
    def read(self, centre_nm: tuple[float, float, float]) -> Any:
        """The crop centred at ``centre_nm`` as a DLPack capsule (float32 ``[Z, Y, X]``)."""
    def level(self) -> int:
        """Index of the level read."""
    def level_scale(self) -> tuple[float, float, float]: ...
    def level_translation(self) -> tuple[float, float, float]:
        """Centre of the level's voxel 0 (nm)."""
    def level_shape(self) -> tuple[int, int, int]: ...
    def bounds_nm(self) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
        """``(lo, hi)``: the level's extent in nm, voxel edges (centre ± half a voxel)."""
    def dtype(self) -> str: ...

class NativePredictor:
    """The prediction writer of a spec's ``predict`` section: tiles in, OME-NGFF zarr out,
    resumable (completed tiles are skipped after a restart)."""

    def __init__(
        self,
        text: str,
        source: str,
        rank: int | None = None,
        world_size: int | None = None,
        batch_size: int = 1,
    ) -> None: ...
    def plan_json(self) -> str: ...
    def warnings(self) -> list[str]:
        """What a person should know about the plan (a region partly outside the data)."""
    def pending(self) -> list[int]:
        """Tile ids this rank still has to write."""
    def read_tiles(self, tiles: list[int]) -> list[Any]:
        """Inputs of these tiles: one DLPack capsule (float32 ``[B, 1, Z, Y, X]``) per input."""
    def write_tiles(self, tiles: list[int], outputs: bytes) -> None:
        """Write the model's outputs (float32 ``[B, model_channels, Z, Y, X]``, C order)."""
    def tile(self, tile: int) -> dict[str, Any]:
        """``id``, ``unit``, ``index``, ``start_vox``, ``shape_vox``, ``centre_nm``."""
    def tiles_completed(self) -> int: ...
