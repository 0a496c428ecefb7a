"""cellmap-compile from Python: the generic loader, the spec tools and the prediction writer.

One YAML spec (or the same keys as a dict) describes the data, the arrays, the sampling and the
augmentation; the loading runs in Rust (a fixed pool of worker threads filling a ring of batch
slots) and batches arrive as dicts of ``torch.Tensor``::

    import cellmap_compile as cc

    loader = cc.Loader("spec.yaml")                 # split="train"; rank/world size from torchrun
    for epoch in range(10):
        for batch in loader:                        # len(loader) batches, then loader.epoch += 1
            raw, labels = batch["raw"], batch["labels"]

``cellmap_compile.compat`` offers cellmap-data's classes over the same loader.
"""

from __future__ import annotations

import gc
import json
import os
import warnings
from pathlib import Path
from typing import Any, Iterator, Mapping, NamedTuple

import torch

from . import _native, cli
from ._native import CellmapError, SlotsHeldError, SpecError

__all__ = [
    "CellmapError",
    "SpecText",
    "Loader",
    "Predictor",
    "SlotsHeldError",
    "SpecError",
    "check",
    "import_config",
    "normalized_spec",
    "plan",
    "preview",
    "sample",
    "write_training_cache",
]

__version__: str = _native.VERSION

#: Keys of the batch dict besides the arrays.
META_KEYS: tuple[str, ...] = tuple(_native.META_KEYS)

class SpecText(NamedTuple):
    """A spec's text and the path it stands for (relative data paths resolve against that
    path's folder; messages name it with line and column), e.g. a spec compiled into a package."""

    text: str
    source: str


def spec_source(spec: str | os.PathLike[str] | Mapping[str, Any] | SpecText) -> tuple[str, str]:
    """``(text, source)`` of a spec given as a path, a dict of the spec's keys or a :class:`SpecText`.

    A dict is passed on as JSON with the source ``"<dict>"`` (relative data paths resolve against
    the current directory). A path is read as it is (messages name it with line and column).
    """
    if isinstance(spec, SpecText):
        return spec.text, spec.source
    if isinstance(spec, Mapping):
        return json.dumps(spec, default=_json_default), "<dict>"
    if isinstance(spec, (str, os.PathLike)):
        path = Path(spec)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as e:
            raise FileNotFoundError(f"cannot read the spec `{path}`: {e.strerror or e}") from e
        return text, os.fspath(path)
    raise TypeError(f"a spec is a path or a dict of the spec's keys, not {type(spec).__name__}")


def _json_default(value: Any) -> Any:
    """Tuples, paths and numpy/torch scalars inside a spec dict."""
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"a spec value of type {type(value).__name__} cannot be written as JSON: {value!r}")


def check(spec: str | os.PathLike[str] | Mapping[str, Any] | SpecText, *, data: bool = False) -> list[dict[str, Any]]:
    """Every diagnostic of a spec (errors and warnings; an empty list when it is valid).

    Each is a dict with ``severity``, ``message``, ``file``, ``line``, ``column``, ``pointer``,
    ``expected``, ``hint`` and ``rendered`` (what ``cellmap-compile check`` prints). With
    ``data=True`` the data the spec names is opened as well (``check --data``).
    """
    return _native.check(*spec_source(spec), data)


def normalized_spec(spec: str | os.PathLike[str] | Mapping[str, Any] | SpecText) -> dict[str, Any]:
    """The validated spec with every default filled in; raises :class:`SpecError`."""
    return json.loads(_native.normalized_spec(*spec_source(spec)))


def plan(spec: str | os.PathLike[str] | Mapping[str, Any] | SpecText, *, counts: bool = False) -> dict[str, Any]:
    """The plan (levels, boxes, centre grids, tiles, exact batch bytes, each dataset's resolved
    ``input_transforms``) as ``plan --json`` prints it."""
    return json.loads(_native.plan_json(*spec_source(spec), counts))


def write_training_cache(
    spec: str | os.PathLike[str] | Mapping[str, Any] | SpecText,
    out: str | os.PathLike[str],
    *,
    codec: str = "auto",
    chunk: int | None = None,
    prune: bool = False,
    force: bool = False,
) -> dict[str, Any]:
    """Write (or bring up to date) the spec's training cache in ``out``, as
    ``cellmap-compile cache SPEC --out OUT`` does: the arrays its plan reads copied into a local
    folder laid out for sample windows, every binary class of a crop packed as bits. Read through
    it with ``Loader(spec, training_cache=out)`` (or ``loader.training_cache`` in the spec, or
    ``CellMapDataLoader(..., training_cache=out)``): the batches are the same.

    ``codec``: ``"auto"`` (lz4 where it saves a tenth of the bytes, packed classes always;
    else uncompressed), ``"none"``, ``"lz4"`` or ``"zstd"``; ``chunk``: the chunk edge in voxels (default
    32 for 3D samples, one 128² plane for 2D ones); ``prune``: remove the array folders a rewrite
    replaced (only while no loader reads the cache); ``force``: copy every array again (after
    relabelling a crop in place: contents are not compared). Returns what was written: ``copies_written``,
    ``packs_written``, ``classes_packed``, ``kept``, ``chunks_written``, ``source_bytes``,
    ``disk_bytes``, ``unreferenced`` and ``seconds``.
    """
    args = {"codec": codec, "chunk": chunk, "prune": prune, "force": force}
    return _native.write_training_cache(*spec_source(spec), os.fspath(out), args)


def sample(
    spec: str | os.PathLike[str] | Mapping[str, Any] | SpecText,
    split: str = "train",
    dataset: int = 0,
    center: tuple[float, float, float] | list[float] = (0.0, 0.0, 0.0),
    *,
    raw_values: bool = False,
    augment: bool = False,
    epoch: int = 0,
    index: int = 0,
) -> dict[str, Any]:
    """One sample at a world centre (nm, z y x), as ``cellmap-compile sample`` writes it.

    Returns ``{array: float32 tensor}`` (inputs ``[1, Z, Y, X]``, targets ``[C, Z, Y, X]``) plus
    ``"info"``: the windows read, as ``sample.json`` records them. ``raw_values`` skips the
    value transforms. Random choices are keyed as the training loader keys sample ``index`` of
    epoch ``epoch`` (rank 0); ``augment`` also draws the spec's spatial transform, so at the
    loader's centre for that sample (``batch["idx"]`` and the batch's epoch) the arrays equal the
    loader's; ``info["transform"]`` records the transform applied.
    """
    request = {
        "split": split,
        "dataset": int(dataset),
        "centre_nm": tuple(float(c) for c in center),
        "raw_values": raw_values,
        "augment": bool(augment),
        "epoch": int(epoch),
        "index": int(index),
    }
    arrays, info = _native.sample(*spec_source(spec), request)
    out: dict[str, Any] = {name: torch.from_dlpack(capsule) for name, capsule in arrays.items()}
    out["info"] = info
    return out


def preview(
    spec: str | os.PathLike[str] | Mapping[str, Any] | SpecText,
    path: str | os.PathLike[str],
    *,
    split: str = "train",
    step: int = 0,
) -> None:
    """Draw batch ``step`` of ``split`` as a PNG grid at ``path`` (as ``cellmap-compile preview``)."""
    _native.preview(*spec_source(spec), os.fspath(path), split, step)


def import_config(
    csv: str | os.PathLike[str] | None = None,
    *,
    name: str = "imported",
    iterations: str = "samples",
    **kwargs: Any,
) -> tuple[str, list[str]]:
    """Turn cellmap-data / segmentation-challenge keyword arguments into spec YAML.

    Takes the keyword arguments of ``CellMapDataSplit``, ``CellMapDataLoader`` and the
    challenge's train configuration (``input_array_info``, ``target_array_info``,
    ``datasplit_path``, ``random_seed``, ``use_mutual_exclusion``, ...) as they are written in
    Python, and returns ``(yaml, notes)``: the spec, and one note per key accepted without effect.
    ``iterations`` says whether ``iterations_per_epoch`` counts ``"samples"`` (cellmap-data
    2026.3) or ``"batches"`` (the challenge's train configs).
    """
    for key in ("train_raw_value_transforms", "val_raw_value_transforms", "target_value_transforms"):
        if callable(kwargs.get(key)):
            kwargs[key] = _transforms_as_spec(key, kwargs[key])
    config = json.dumps(kwargs, default=_json_default)
    return _native.import_config(config, None if csv is None else os.fspath(csv), name, iterations)


def _transforms_as_spec(key: str, transform: Any) -> list[dict[str, Any]]:
    """A cellmap-data transform chain (torchvision ``Compose``, cellmap-data's transforms) as spec
    value transforms; a transform the spec cannot express is an error naming it."""
    from .compat._spec import map_value_transforms

    mapped = map_value_transforms(transform, random_ok=True)
    if mapped.python:
        names = ", ".join(type(t).__name__ for t in mapped.python)
        raise ValueError(
            f"`{key}`: {names} has no spec equivalent; a spec holds normalize, nan_to_num, binarize, "
            "gaussian_noise, random_contrast, random_gamma and gaussian_blur. Remove it from the "
            "chain (and apply it in your training loop), or use cellmap_compile.compat, which runs it in Python"
        )
    return mapped.spec


class Loader:
    """Batches of a spec as dicts of torch tensors.

    Args:
        spec: The spec: a YAML (or JSON) file, or a dict with the spec's keys.
        split: ``"train"`` (endless in Rust, cut into epochs of ``len(loader)`` batches here)
            or ``"validate"`` (one pass over this rank's validation tiles per ``iter()``).
        rank: Global rank; with ``world_size``. Both default to torchrun's ``RANK`` and
            ``WORLD_SIZE`` (a single process when unset).
        world_size: Number of processes.
        seed: Overrides the spec's ``sampling.seed``.
        epoch: First epoch (resume).
        step: First step within the first epoch (resume).
        device: Overrides the spec's ``loader.device`` (``"cpu"``, ``"cuda"``, ``"cuda:1"``, a
            ``torch.device``).
        handoff: ``"dlpack"`` (zero-copy views of the ring; CPU only) or ``"copy"`` (one copy
            into torch-allocated, pinned-for-CUDA memory). Default: ``"dlpack"`` on the CPU
            when the ring has at least two slots, else ``"copy"``.
        cache_dir: Where plans are cached (default ``$CELLMAP_CACHE_DIR`` or
            ``~/.cache/cellmap-compile/plans``).
        plan: A plan made earlier for this spec (``plan()``'s dict or its JSON), e.g. the one a
            package built with ``cellmap-compile build --python`` embeds: the data is checked
            against it instead of planned, and a plan the data no longer matches is an error.
        training_cache: Read through this training cache folder (written by
            ``cellmap-compile cache SPEC --out DIR``) instead of the spec's
            ``loader.training_cache``: the same batches, read from a local copy laid out for
            sample windows.

    Each batch dict holds one tensor ``[B, C, Z, Y, X]`` per array (:attr:`arrays`), of the array's
    ``dtype`` (float32 unless the spec says float16, bfloat16 or uint8), on
    ``device``, plus CPU tensors ``idx`` (int64 ``[B]``, sample index in its epoch or tile
    index; -1 for an empty position at the end of validation), ``dataset`` (int64 ``[B]``,
    dataset index within the split) and ``centre_nm`` (float64 ``[B, 3]``, z, y, x).

    Raises:
        SpecError: The spec is invalid (a ``ValueError``; ``diagnostics`` lists every problem).
        CellmapError: The spec's data cannot be planned or read (same message as the CLI).
        ValueError: An argument is invalid.
    """

    def __init__(
        self,
        spec: str | os.PathLike[str] | Mapping[str, Any] | SpecText,
        split: str = "train",
        *,
        rank: int | None = None,
        world_size: int | None = None,
        seed: int | None = None,
        epoch: int = 0,
        step: int = 0,
        device: str | torch.device | None = None,
        handoff: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        plan: str | Mapping[str, Any] | None = None,
        training_cache: str | os.PathLike[str] | None = None,
    ) -> None:
        text, source = spec_source(spec)
        self._spec_args = (text, source)
        self._loader_args = {
            "split": split,
            "rank": rank,
            "world_size": world_size,
            "seed": seed,
            "cache_dir": None if cache_dir is None else os.fspath(cache_dir),
            "plan": plan if plan is None or isinstance(plan, str) else json.dumps(plan),
            "training_cache": None if training_cache is None else os.fspath(training_cache),
        }
        self._native = self._open_native(epoch, step)
        #: The split this loader reads.
        self.split = split
        #: Device of the array tensors.
        self.device = torch.device(device if device is not None else self._native.device())
        if handoff is None:
            handoff = "dlpack" if self.device.type == "cpu" and self._native.prefetch() >= 2 else "copy"
        if handoff not in ("dlpack", "copy"):
            raise ValueError(f"unknown handoff `{handoff}` (expected `dlpack` or `copy`)")
        if handoff == "dlpack" and self.device.type != "cpu":
            raise ValueError("handoff `dlpack` gives CPU tensors; use `copy` for a CUDA device")
        #: ``"dlpack"`` or ``"copy"`` (see the class docs).
        self.handoff = handoff
        #: The epoch the next ``iter()`` yields; advances when an iterator is exhausted.
        self.epoch = epoch
        self._step = step
        self._pin = self.device.type == "cuda"
        #: ``(name, channels, [z, y, x])`` of each array, in batch order (inputs, then targets).
        self.arrays: list[tuple[str, int, list[int]]] = list(self._native.arrays())
        self._names = [name for name, _, _ in self.arrays]
        self._pass_done = False
        self._spec: dict[str, Any] | None = None

    @property
    def spec(self) -> dict[str, Any]:
        """The validated spec with every default filled in."""
        if self._spec is None:
            self._spec = json.loads(self._native.spec_json())
        return self._spec

    @property
    def plan_origin(self) -> str:
        """Where the plan came from: ``"cache"`` (the plan cache), ``"planned"`` (planned now) or
        ``"embedded"`` (the ``plan`` argument)."""
        return self._native.plan_origin()

    @property
    def skipped_samples(self) -> int:
        """Samples skipped under ``loader.on_error: skip_and_log``."""
        return self._native.skipped_samples()

    def _open_native(self, epoch: int, step: int) -> _native.NativeLoader:
        """A native loader over this loader's spec and options, starting at ``epoch`` and ``step``."""
        return _native.NativeLoader(*self._spec_args, {**self._loader_args, "epoch": epoch, "step": step})

    def __len__(self) -> int:
        """Batches per epoch (training) or per validation pass."""
        return self._native.batches_per_epoch()

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        """Yield the rest of the current epoch, then advance ``epoch``.

        A training iterator abandoned mid-epoch leaves the stream where it stopped: the next
        ``iter()`` finishes that epoch. A validation iterator reads one pass.
        """
        if self._pass_done:
            self._native = self._open_native(0, 0)
            self._pass_done = False
        while self._step < len(self):
            batch = self._next()
            if batch is None:
                break
            self._step += 1
            yield batch
            # Let go before the next fetch, so that only the caller can still hold this slot.
            batch = None
        self._step = 0
        self.epoch += 1
        if self.split != "train":
            self._pass_done = True

    def _next(self) -> dict[str, torch.Tensor] | None:
        """The next batch of the stream as a dict of tensors, or ``None`` at the end of a pass."""
        try:
            out = self._native.next_batch()
        except SlotsHeldError:
            # Tensors in reference cycles are only freed by the cycle collector.
            gc.collect()
            out = self._native.next_batch()
        if out is None:
            return None
        epoch, step, capsules, idx, dataset, centre_nm = out
        if self.split == "train" and (epoch, step) != (self.epoch, self._step):
            raise CellmapError(f"stream out of step: got epoch {epoch} step {step}, expected {self.epoch} {self._step}")
        batch: dict[str, torch.Tensor] = {}
        for name, capsule in zip(self._names, capsules):
            view = torch.from_dlpack(capsule)
            if self.handoff == "copy":
                owned = torch.empty(view.shape, dtype=view.dtype, pin_memory=self._pin)
                owned.copy_(view)
                del view
                batch[name] = owned.to(self.device, non_blocking=True) if self._pin else owned
            else:
                batch[name] = view
        del capsules
        batch["idx"] = torch.tensor(idx, dtype=torch.int64)
        batch["dataset"] = torch.tensor(dataset, dtype=torch.int64)
        batch["centre_nm"] = torch.tensor(centre_nm, dtype=torch.float64).reshape(-1, 3)
        return batch

    def plan(self) -> dict[str, Any]:
        """The plan (levels, boxes, centre grids, tiles, batch bytes, each dataset's resolved
        ``input_transforms``) as a dict."""
        return json.loads(self._native.plan_json())

    def preview(self, path: str | os.PathLike[str], step: int = 0) -> None:
        """Draw batch ``step`` of this loader's split as a PNG grid at ``path``."""
        preview(SpecText(*self._spec_args), path, split=self.split, step=step)

    def __repr__(self) -> str:
        return (
            f"Loader(spec={self.spec.get('name')!r}, split={self.split!r}, epoch={self.epoch}, "
            f"batches_per_epoch={len(self)}, device={str(self.device)!r}, handoff={self.handoff!r})"
        )


class Predictor:
    """Tiled inference over a spec's ``predict`` section: inputs per tile, outputs written back
    as OME-NGFF zarr, resumable (tiles written before a restart are skipped).

    ::

        pred = cc.Predictor("spec.yaml", batch_size=4)
        for tiles, inputs in pred:                 # inputs: {name: float32 [B, 1, Z, Y, X]}
            pred.write(tiles, model(inputs["raw"]))  # [B, model_classes, Z, Y, X]

    Ranks come from torchrun's ``RANK``/``WORLD_SIZE`` (or ``rank``/``world_size``); each rank
    writes its own share of the tiles.
    """

    def __init__(
        self,
        spec: str | os.PathLike[str] | Mapping[str, Any] | SpecText,
        *,
        batch_size: int = 1,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self._native = _native.NativePredictor(*spec_source(spec), rank, world_size, batch_size)
        self.batch_size = batch_size
        #: The prediction plan (units, tiles, inputs, output bytes).
        self.plan: dict[str, Any] = json.loads(self._native.plan_json())
        #: Input array names, in the order of the model's inputs.
        self.inputs: list[str] = [i["name"] for i in self.plan["inputs"]]
        for message in self._native.warnings():
            warnings.warn(message, stacklevel=2)

    def pending(self) -> list[int]:
        """Tile ids this rank still has to write."""
        return list(self._native.pending())

    def tile(self, tile: int) -> dict[str, Any]:
        """Where tile ``tile`` lies: ``unit``, ``index``, ``start_vox``, ``shape_vox``, ``centre_nm``."""
        return self._native.tile(int(tile))

    def read(self, tiles: list[int]) -> dict[str, torch.Tensor]:
        """The inputs of ``tiles``: ``{name: float32 [B, 1, Z, Y, X]}`` (``[B, 1, Y, X]`` for a 2D spec, as
        its training batches), each tile grown by the context."""
        out = self._native.read_tiles([int(t) for t in tiles])
        return {name: torch.from_dlpack(capsule) for name, capsule in zip(self.inputs, out)}

    def write(self, tiles: list[int] | torch.Tensor, outputs: torch.Tensor) -> None:
        """Write the model's outputs for ``tiles``: float32-convertible ``[B, model_classes, Z, Y, X]`` (or
        ``[B, model_classes, Y, X]`` for a 2D spec)."""
        if isinstance(tiles, torch.Tensor):
            tiles = tiles.tolist()
        data = outputs.detach().to("cpu", torch.float32).contiguous().numpy().tobytes()
        self._native.write_tiles([int(t) for t in tiles], data)

    @property
    def tiles_completed(self) -> int:
        """Tiles written so far (this run and earlier ones)."""
        return self._native.tiles_completed()

    def __iter__(self) -> Iterator[tuple[list[int], dict[str, torch.Tensor]]]:
        """``(tiles, inputs)`` for each batch of this rank's pending tiles."""
        pending = self.pending()
        for i in range(0, len(pending), self.batch_size):
            tiles = pending[i : i + self.batch_size]
            yield tiles, self.read(tiles)
