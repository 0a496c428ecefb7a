"""``CellMapDataLoader``: cellmap-data's loader over the Rust loader (``cellmap_compile.Loader``)."""

from __future__ import annotations

import math
import os
import warnings
from typing import Any, Callable, Iterator, Optional, Sequence, Union

import torch
from torch.utils.data import Dataset, Subset

import cellmap_compile as cc

from . import _spec
from .dataset import CellMapDataset, loader_spec
from .multidataset import CellMapMultiDataset, plan_together
from .sampler import ClassBalancedSampler

#: Samples of a training epoch when neither ``iterations_per_epoch`` nor a sampler says
#: (cellmap-data would draw every centre of the data once: ~10⁶–10⁹ nearly identical crops).
DEFAULT_SAMPLES_PER_EPOCH = 1000

#: Keyword arguments of ``torch.utils.data.DataLoader`` accepted through ``**kwargs``.
DATALOADER_KWARGS = frozenset(
    {
        "shuffle",
        "batch_sampler",
        "collate_fn",
        "pin_memory",
        "drop_last",
        "timeout",
        "worker_init_fn",
        "multiprocessing_context",
        "generator",
        "prefetch_factor",
        "persistent_workers",
        "pin_memory_device",
        "in_order",
    }
)


def _leaves(dataset: Any) -> tuple[list[CellMapDataset], Optional[list[int]]]:
    """The :class:`CellMapDataset`\\ s under ``dataset`` and, for a ``Subset``, its indices."""
    if isinstance(dataset, CellMapDataset):
        return [dataset], None
    if isinstance(dataset, Subset):
        leaves, _ = _leaves(dataset.dataset)
        return leaves, list(dataset.indices)
    if isinstance(dataset, CellMapMultiDataset) or hasattr(dataset, "datasets"):
        out: list[CellMapDataset] = []
        for d in dataset.datasets:
            out.extend(_leaves(d)[0])
        return out, None
    raise TypeError(
        f"cellmap_compile.compat.CellMapDataLoader reads CellMapDataset, CellMapMultiDataset or a Subset of "
        f"them (as CellMapDataSplit makes them), not {type(dataset).__name__}"
    )


class _Batches:
    """What ``loader.loader`` is: an iterable of batches with a length (cellmap-data gives a
    ``torch.utils.data.DataLoader`` there; scripts iterate it and take its ``len``)."""

    def __init__(self, owner: "CellMapDataLoader") -> None:
        self._owner = owner

    @property
    def dataset(self) -> Any:
        return self._owner.dataset

    @property
    def batch_size(self) -> int:
        return self._owner.batch_size

    @property
    def num_workers(self) -> int:
        return self._owner.num_workers

    @property
    def drop_last(self) -> bool:
        return self._owner._drop_last

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self._owner)

    def __len__(self) -> int:
        return len(self._owner)


class CellMapDataLoader:
    """Batches of cellmap-data datasets, loaded by the Rust loader.

    ``dataset`` is what cellmap-data's loader takes: ``split.train_datasets_combined`` (random
    crops, ``is_train=True``), ``split.validation_blocks`` (the validation tiles, one pass per
    iteration, ``is_train=False``), a :class:`CellMapMultiDataset` or a :class:`CellMapDataset`.
    Batches are cellmap-data's: ``{"idx": int64 [B], <input>: float32 [B, 1, *spatial],
    <target>: float32 [B, n_classes, *spatial]}`` with singleton axes dropped (a 2D array gives
    ``[B, 1, Y, X]``); the last validation batch is short when the tiles do not fill it.

    - ``num_workers``: Rust worker threads (``0`` means one thread; none runs in this process's
      main thread).
    - ``weighted_sampler`` (training): the class-balanced sampler of cellmap-data 2026.3
      (``sampling.weighting: class_balanced``); else centres are drawn uniformly.
    - ``iterations_per_epoch``: samples per epoch (as cellmap-data 2026.3), used with or without
      the weighted sampler; default ``min(len(dataset), 1000)``. ``len(loader)`` is
      ``ceil(samples / batch_size)`` (``floor`` with ``drop_last=True``).
    - ``rng`` (a ``torch.Generator``): the seed is its ``initial_seed()``, else
      ``torch.initial_seed()``, mod 2³².
    - ``device``: batches are moved there (CUDA batches are copied once through pinned memory);
      ``None`` gives CPU tensors, as cellmap-data always does.
    - ``sampler``: a :class:`ClassBalancedSampler` is honoured; another sampler is not (warning).
    - ``training_cache`` (not in cellmap-data): read through this training cache folder, written
      once with ``cellmap_compile.write_training_cache(loader.spec, folder)``: the same batches,
      from a local copy laid out for sample windows (for data on S3 or far larger than the
      chunk cache).
    - ``**kwargs``: ``torch.utils.data.DataLoader``'s keywords are accepted (``drop_last`` and
      ``prefetch_factor`` act; ``pin_memory`` pins CUDA transfers; ``collate_fn`` and
      ``batch_sampler`` cannot be honoured and warn; the others only concern worker processes);
      any other keyword raises ``TypeError``.
    """

    def __init__(
        self,
        dataset: Dataset,
        classes: Optional[Sequence[str]] = None,
        batch_size: int = 1,
        num_workers: int = 0,
        weighted_sampler: bool = False,
        sampler: Optional[Union[torch.utils.data.Sampler, Callable]] = None,
        is_train: bool = True,
        rng: Optional[torch.Generator] = None,
        device: Optional[str | torch.device] = None,
        iterations_per_epoch: Optional[int] = None,
        training_cache: Optional[str | os.PathLike[str]] = None,
        **kwargs: Any,
    ) -> None:
        unknown = sorted(set(kwargs) - DATALOADER_KWARGS)
        if unknown:
            raise TypeError(
                f"CellMapDataLoader got unexpected keyword argument(s) {', '.join(repr(k) for k in unknown)} "
                f"(accepted besides its own: torch DataLoader's {', '.join(sorted(DATALOADER_KWARGS))})"
            )
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        for name in ("collate_fn", "batch_sampler"):
            if kwargs.get(name) is not None:
                warnings.warn(
                    f"CellMapDataLoader: `{name}` is not used; batches are assembled by the Rust loader",
                    UserWarning,
                    stacklevel=2,
                )
        self.dataset = dataset
        self.classes = list(classes) if classes is not None else list(getattr(dataset, "classes", []))
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self.is_train = bool(is_train)
        self.iterations_per_epoch = iterations_per_epoch
        self.weighted_sampler = bool(weighted_sampler)
        self._kwargs = dict(kwargs)
        self._drop_last = bool(kwargs.get("drop_last", False))
        self._device = None if device is None else torch.device(device)
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
        #: The device as cellmap-data resolves it (batches go to an explicitly given one only).
        self.device = device
        generator = rng if rng is not None else kwargs.get("generator")
        self.seed = (generator.initial_seed() if generator is not None else torch.initial_seed()) % (2**32)

        self._datasets, indices = _leaves(dataset)
        if not self._datasets:
            raise ValueError("CellMapDataLoader: the dataset holds no CellMapDataset")
        plan_together(self._datasets)
        keys = {d._config_key() for d in self._datasets}
        if len(keys) > 1:
            warnings.warn(
                "CellMapDataLoader: the datasets differ in arrays, classes, pad or transforms; the first one's are used",
                UserWarning,
                stacklevel=2,
            )
        self._split = "train" if self.is_train else "validate"
        self._weighting = "uniform"
        samples = iterations_per_epoch
        if sampler is not None:
            if isinstance(sampler, ClassBalancedSampler):
                self._weighting = "class_balanced"
                samples = samples or sampler.samples_per_epoch
            else:
                warnings.warn(
                    f"CellMapDataLoader: the sampler {type(sampler).__name__} cannot drive the Rust loader and is "
                    f"not used; training centres are drawn {'class-balanced' if weighted_sampler else 'uniformly'}",
                    UserWarning,
                    stacklevel=2,
                )
        if self.weighted_sampler and self.is_train:
            self._weighting = "class_balanced"
        if not self.is_train and indices is not None:
            expected = getattr(dataset.dataset, "validation_indices", None)
            if expected is not None and list(indices) != list(expected):
                warnings.warn(
                    "CellMapDataLoader: a Subset other than validation_blocks is read as the validation tiles of "
                    "the datasets it covers",
                    UserWarning,
                    stacklevel=2,
                )
        self._shape_by_name = {
            name: _spec.spatial_shape(info)
            for name, info in [*self._datasets[0].input_arrays.items(), *self._datasets[0].target_arrays.items()]
        }
        live = [d for d in self._datasets if len(d) > 0]
        if self.is_train:
            n = int(samples) if samples else min(len(dataset), DEFAULT_SAMPLES_PER_EPOCH)
            if n < 1:
                raise ValueError(
                    "CellMapDataLoader: the dataset has no sample"
                    + "".join(f"\n  {d.raw_path}: {d.info.excluded}" for d in self._datasets if d.info.excluded)
                )
            iterations, self._batches, self._last = _spec.iterations_for(n, self.batch_size, self._drop_last)
        else:
            tiles = sum(len(d.info.tiles) for d in live if d.info.tiles is not None)
            iterations = 1000
            if self._drop_last:
                self._batches, self._last = tiles // self.batch_size, self.batch_size
            else:
                self._batches, self._last = (
                    math.ceil(tiles / self.batch_size),
                    (tiles % self.batch_size or self.batch_size),
                )
        self._live = live
        prefetch_factor = kwargs.get("prefetch_factor")
        workers = max(1, self.num_workers)
        self._spec, self._tail = loader_spec(
            live or self._datasets,
            self._split,
            seed=self.seed,
            iterations=iterations,
            weighting=self._weighting,
            batch_size=self.batch_size,
            workers=workers,
            prefetch=max(4, int(prefetch_factor) * workers if prefetch_factor else 4),
            pin_memory=kwargs.get("pin_memory") if self._device is not None and self._device.type == "cuda" else None,
        )
        #: The training cache folder read through (``training_cache``), or ``None``.
        self._training_cache = None if training_cache is None else os.fspath(training_cache)
        self._native: Optional[cc.Loader] = None
        self._stream: Optional[Iterator[dict[str, torch.Tensor]]] = None
        self._stream_at = (0, 0)
        self._pass_open = False
        #: ``None`` (zero-copy views on the CPU) until the script keeps too many batches alive.
        self._handoff: Optional[str] = None

    # -- the Rust loader --------------------------------------------------------------------

    @property
    def spec(self) -> dict[str, Any]:
        """The spec this loader gives the Rust loader."""
        return self._spec

    def _open(self, *, epoch: int = 0, step: int = 0, handoff: Optional[str] = None) -> cc.Loader:
        device = self._device if self._device is not None and self._device.type == "cuda" else None
        # Validation: every rank reads every tile (cellmap-data has no distributed validation);
        # training: each torchrun rank draws its own stream (RANK / WORLD_SIZE).
        dist = {"rank": 0, "world_size": 1} if self._split == "validate" else {}
        handoff = handoff or self._handoff
        return cc.Loader(
            self._spec,
            self._split,
            device=device,
            epoch=epoch,
            step=step,
            handoff=handoff,
            training_cache=self._training_cache,
            **dist,
        )

    @property
    def loader(self) -> _Batches:
        """The iterable of batches (``iter()`` starts an epoch; ``len()`` batches)."""
        return _Batches(self)

    def __len__(self) -> int:
        return self._batches

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if not self._live:
            return iter(())
        return self._train_epoch() if self._split == "train" else self._validation_pass()

    def _pull(self) -> Optional[dict[str, torch.Tensor]]:
        """The next Rust batch, or ``None`` at the end of a Rust epoch (training) or pass.

        Batches are zero-copy views of the Rust loader's ring of ``prefetch`` slots, so a script
        that keeps more batches alive than there are slots (``list(loader)``, a list of losses
        holding their graphs) would stall it. Then this loader warns once and goes on from the
        same position with a loader that copies every batch out of its ring.
        """
        while True:
            if self._stream is None:
                self._stream = iter(self._native)
                self._stream_at = (self._native.epoch, 0)
            try:
                batch = next(self._stream, None)
            except cc.SlotsHeldError:
                epoch, step = self._stream_at
                warnings.warn(
                    f"CellMapDataLoader: the script keeps more batches alive than the Rust loader has ring slots "
                    f"({self._spec['loader']['prefetch']}); from now on each batch is copied out of the ring (slower). "
                    f"Keep .clone()s or .item()s of what you store to stay zero-copy.",
                    UserWarning,
                    stacklevel=4,
                )
                self._handoff = "copy"
                # A validation pass is positioned by its step alone.
                self._native = self._open(epoch=epoch if self._split == "train" else 0, step=step)
                self._stream = iter(self._native)
                continue
            if batch is None:
                self._stream = None
            else:
                self._stream_at = (self._stream_at[0], self._stream_at[1] + 1)
            return batch

    def _train_epoch(self) -> Iterator[dict[str, Any]]:
        """``len(self)`` batches from the endless Rust stream (an epoch abandoned early is not
        resumed: the next ``iter()`` starts a full one from where the stream is)."""
        if self._native is None:
            self._native = self._open()
        for produced in range(self._batches):
            batch = None
            while batch is None:
                batch = self._pull()
            keep = self._last if produced == self._batches - 1 else None
            out = self._convert(batch, keep)
            del batch
            yield out

    def _validation_pass(self) -> Iterator[dict[str, Any]]:
        """One pass over the validation tiles, in order (a pass abandoned early is not resumed:
        the next ``iter()`` starts a new one)."""
        if self._native is None or self._pass_open or self._stream is not None:
            self._native = self._open()
            self._stream = None
            if not self._drop_last:
                self._batches = len(self._native)  # the Rust plan's tiles (as planned for this split)
        self._pass_open = True
        while (batch := self._pull()) is not None:
            n = int((batch["idx"] >= 0).sum())
            if n == 0 or (self._drop_last and n < self.batch_size):
                continue
            out = self._convert(batch, n)
            del batch
            yield out
        self._pass_open = False

    def _convert(self, batch: dict[str, torch.Tensor], keep: Optional[int]) -> dict[str, Any]:
        """cellmap-data's batch from a Rust batch: the first ``keep`` samples, ``idx`` and the
        arrays only, singleton axes dropped (views, no copy unless a Python transform runs)."""
        b = batch["idx"].shape[0]
        n = b if keep is None else min(keep, b)
        arrays = {name: (batch[name] if n == b else batch[name][:n]) for name in self._shape_by_name}
        if self._tail:
            self._tail.apply(arrays, n, batch["dataset"][:n])
        out: dict[str, Any] = {"idx": batch["idx"] if n == b else batch["idx"][:n]}
        move = self._device is not None and self._device.type not in ("cpu", "cuda")
        for name, shape in self._shape_by_name.items():
            x = arrays[name]
            x = (
                x.view(n, x.shape[1], *_spec.squeezed_shape(shape))
                if x.is_contiguous()
                else x.reshape(n, x.shape[1], *_spec.squeezed_shape(shape))
            )
            out[name] = x.to(self._device, non_blocking=True) if move else x
        return out

    # -- cellmap-data's methods -------------------------------------------------------------

    def refresh(self) -> None:
        """Nothing to do: every training epoch draws new centres (kept for scripts that call it)."""

    def to(self, device: str | torch.device) -> "CellMapDataLoader":
        """Put later batches on ``device``."""
        new = torch.device(device)
        if self._device != new:
            cuda_changed = (self._device is not None and self._device.type == "cuda") != (new.type == "cuda")
            self._device = new
            if cuda_changed:
                self._native, self._stream, self._pass_open = None, None, False
        self.device = device
        return self

    @staticmethod
    def collate_fn(batch: list[dict]) -> dict[str, Any]:
        """Samples → batch: tensors stacked, ``__metadata__`` kept as a list, other values stacked
        when they can be and listed otherwise."""
        if not batch:
            return {}
        out: dict[str, Any] = {}
        for key in batch[0]:
            values = [item[key] for item in batch]
            if key == "__metadata__" and not isinstance(values[0], torch.Tensor):
                out[key] = values
                continue
            try:
                out[key] = (
                    torch.stack(values)
                    if isinstance(values[0], torch.Tensor)
                    else torch.stack([torch.as_tensor(v) for v in values])
                )
            except (TypeError, RuntimeError, ValueError):
                out[key] = values
        return out

    def __repr__(self) -> str:
        return f"CellMapDataLoader(dataset={self.dataset!r}, batch_size={self.batch_size}, is_train={self.is_train})"
