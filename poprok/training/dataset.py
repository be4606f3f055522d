"""Bar windows of a POP-ROK Parquet copy as a torch IterableDataset: sharded, shuffled, resumable, no stall.

    windows = WindowDataset("out/parquet", "train", seed=0)        # or a Hub repo id: "<org>/pop-rok"
    loader = StatefulDataLoader(windows, batch_size=8, num_workers=2, collate_fn=collate)
    for epoch in range(epochs):
        windows.set_epoch(epoch)
        for batch in loader: ...                                   # loader.state_dict() resumes mid-epoch

Each epoch's order is a function of (seed, epoch, rank, worker) alone: the copy's row groups are shuffled and dealt
whole to the ranks, then to each rank's DataLoader workers, balancing windows; a worker reads its row groups in
turn and shuffles the windows of every ``shuffle_loops`` consecutive loops together. So the state of a worker is
the number of windows it has yielded, and a resumed worker skips them without reading their audio.

``prefetch=n`` reads and cuts in a background thread up to n windows ahead (``poprok.training.prefetch``): with
``num_workers=0`` and a free second core that is the fastest path on a small machine, as a worker process hands
every batch over through a fresh shared-memory segment, which costs more than reading it. The state still counts
the windows the consumer took, not those the thread made. The thread stops with the iteration, so an epoch's end
waits only for it to notice (milliseconds): ``datasets`` streaming instead sleeps 5 s there
(``SLEEP_TIME_ON_THREADS_SHUTDOWN``).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import datasets
import fsspec
import numpy as np
import pyarrow.parquet as pq
import torch
from torch.utils.data import IterableDataset, get_worker_info

from poprok.record import SAMPLE_RATE
from poprok.training.prefetch import prefetch as read_ahead
from poprok.training.windows import DTYPES, WindowError, cut, loop_pcm, window_edges

logger = logging.getLogger(__name__)

COLUMNS = ("name", "bpm", "num_bars", "fold", "instruments")  # read with the audio's bytes, nothing else
SHUFFLE_LOOPS = 8  # loops whose windows are mixed at once: 8 loops of 100 BPM hold 27 MB of 16-bit audio


@dataclass(frozen=True)
class _Unit:
    """One row group: the smallest piece of the copy that is read, and dealt to a (rank, worker) whole."""

    file: str
    row_group: int
    names: tuple[str, ...]
    windows: tuple[int, ...]  # per loop: num_bars // bars


class WindowDataset(IterableDataset):
    """The ``bars``-bar windows of ``split`` of a Parquet copy, as dicts of PCM and labels (see ``collate``).

    ``path`` is a copy's folder (what ``pop_rok.py export`` wrote), an fsspec URL of one, or a Hub repo id
    (read through ``hf://datasets/``); ``split`` may be a sum like ``train+validation``. ``rank`` and
    ``world_size`` default to torch.distributed's when it is initialised. Items: ``audio`` (2, T) float32 in
    [-1, 1) or int16, ``name``, ``window``, ``start`` (seconds), ``bpm``, ``fold`` and a multi-hot ``target``.
    ``prefetch``: windows a reader thread keeps ready (0: read on the iterating thread).
    """

    def __init__(
        self,
        path: str,
        split: str = "train",
        *,
        bars: int = 2,
        dtype: str = "float32",
        shuffle: bool = True,
        seed: int = 0,
        shuffle_loops: int = SHUFFLE_LOOPS,
        rank: int | None = None,
        world_size: int | None = None,
        config: str = "default",
        prefetch: int = 0,
    ):
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
        if shuffle_loops < 1:
            raise ValueError(f"shuffle_loops must be at least 1, got {shuffle_loops}")
        if prefetch < 0:
            raise ValueError(f"prefetch must be 0 or more windows, got {prefetch}")
        if (
            rank is None
            and world_size is None
            and torch.distributed.is_available()
            and torch.distributed.is_initialized()
        ):
            rank, world_size = torch.distributed.get_rank(), torch.distributed.get_world_size()
        self.rank, self.world_size = rank or 0, world_size or 1
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} is not one of world size {self.world_size}'s ranks")
        self.path, self.split, self.bars, self.dtype = path, split, bars, dtype
        self.shuffle, self.seed, self.shuffle_loops, self.epoch = shuffle, seed, shuffle_loops, 0
        self.prefetch = prefetch
        self._fs, files = _parquet_files(path, config, split)
        self._units, self.classes = self._survey(files)
        self._resume: dict | None = None
        self._position: tuple[int, int, int] | None = None  # (epoch, worker, windows yielded) of the iteration
        logger.info(
            "%s of %s: %d loops in %d row group(s) of %d file(s); rank %d of %d reads %d windows",
            split, path, sum(len(unit.names) for unit in self._units), len(self._units), len(files),
            self.rank, self.world_size, len(self),
        )  # fmt: skip

    def _survey(self, files: list[str]) -> tuple[list[_Unit], list[str]]:
        """Every row group's loops and window counts, from the small columns: a misfit window fails here."""
        units, classes = [], None
        for file in files:
            with self._open(file) as parquet:
                names = set(parquet.schema_arrow.names)
                missing = [column for column in ("audio", *COLUMNS) if column not in names]
                if missing:
                    raise ValueError(f"{file} is not a POP-ROK Parquet copy's shard: it has no {', '.join(missing)}")
                if classes is None:
                    feature = datasets.Features.from_arrow_schema(parquet.schema_arrow)["instruments"]
                    classes = list(feature.feature.names)
                for group in range(parquet.metadata.num_row_groups):
                    table = parquet.read_row_group(group, columns=["name", "bpm", "num_bars"], use_threads=False)
                    rows = table.to_pydict()
                    windows = tuple(
                        len(window_edges(name, bpm, num_bars, self.bars)) - 1
                        for name, bpm, num_bars in zip(rows["name"], rows["bpm"], rows["num_bars"])
                    )
                    units.append(_Unit(file, group, tuple(rows["name"]), windows))
        return units, classes

    def _open(self, file: str) -> pq.ParquetFile:
        return pq.ParquetFile(file, filesystem=self._fs, pre_buffer=False)

    def __len__(self) -> int:
        """This rank's windows per epoch (the ranks' counts differ by at most one row group's)."""
        return sum(sum(self._units[unit].windows) for unit in self._ranks()[self.rank])

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle: epoch ``epoch``'s order (call before iterating, in the main process)."""
        self.epoch = epoch
        self._position = None

    def state_dict(self) -> dict:
        """Where this worker (or the main process, with no workers) is in its epoch: the windows it yielded."""
        if self._position is None:
            info = get_worker_info()
            self._position = (self.epoch, info.id if info is not None else 0, 0)
        epoch, worker, yielded = self._position
        return {"seed": self.seed, "epoch": epoch, "rank": self.rank, "world_size": self.world_size,
                "worker": worker, "yielded": yielded}  # fmt: skip

    def load_state_dict(self, state: dict) -> None:
        """Resume: the next iteration replays ``state``'s epoch, skipping the windows it had yielded."""
        if (state["seed"], state["rank"], state["world_size"]) != (self.seed, self.rank, self.world_size):
            raise ValueError(
                f"the state is of seed {state['seed']}, rank {state['rank']} of {state['world_size']}; "
                f"this dataset is seed {self.seed}, rank {self.rank} of {self.world_size}"
            )
        self._resume = dict(state)
        self.epoch = state["epoch"]

    def _ranks(self) -> list[list[int]]:
        """The epoch's row groups, shuffled, dealt to the ranks."""
        order = np.arange(len(self._units))
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(order)
        return self._balance(order.tolist(), self.world_size)

    def _balance(self, units: list[int], parts: int) -> list[list[int]]:
        """Deal ``units`` in turn to the part holding the fewest windows so far (the lowest on ties)."""
        shares: list[list[int]] = [[] for _ in range(parts)]
        load = [0] * parts
        for unit in units:
            part = load.index(min(load))
            shares[part].append(unit)
            load[part] += sum(self._units[unit].windows)
        return shares

    def _plan(self, worker: int, workers: int) -> list[list[tuple[int, int, int]]]:
        """This worker's epoch: blocks of (unit, row, window) in the order they are yielded."""
        mine = self._balance(self._ranks()[self.rank], workers)[worker]
        loops = [(unit, row) for unit in mine for row in range(len(self._units[unit].names))]
        blocks = []
        for index in range(0, len(loops), self.shuffle_loops):
            block = [
                (u, r, k)
                for u, r in loops[index : index + self.shuffle_loops]
                for k in range(self._units[u].windows[r])
            ]
            if self.shuffle:
                rng = np.random.default_rng([self.seed, self.epoch, self.rank, worker, index])
                block = [block[i] for i in rng.permutation(len(block))]
            blocks.append(block)
        return blocks

    def __iter__(self):
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        skip = 0
        if self._resume is not None:
            state, self._resume = self._resume, None
            if state["worker"] != worker:
                raise ValueError(f"the state is of worker {state['worker']}, loaded into worker {worker}")
            skip = state["yielded"]
        self._position = (self.epoch, worker, skip)  # now, not at the first window: a state taken before it is right
        windows = self._windows(self._plan(worker, workers), skip)  # planned here: the epoch is the one counted
        if self.prefetch:
            windows = read_ahead(windows, self.prefetch, f"poprok-reader-{worker}")
        return self._taken(windows, self.epoch, worker, skip)

    def _taken(self, windows, epoch: int, worker: int, taken: int):
        """``windows``, counted as the consumer takes them: the state of a resumable position, whoever read ahead."""
        for item in windows:
            taken += 1
            self._position = (epoch, worker, taken)
            yield item

    def _windows(self, plan: list[list[tuple[int, int, int]]], skip: int):
        """The windows of ``plan`` after the first ``skip``, whose blocks are passed over unread."""
        done, cache = 0, {}
        for block in plan:
            if done + len(block) <= skip:
                done += len(block)
                continue
            todo, done = block[max(0, skip - done) :], done + len(block)
            loops = self._read(sorted({(unit, row) for unit, row, _ in todo}), cache)
            for unit, row, k in todo:
                yield loops[unit, row].window(k, self.dtype)

    def _read(self, wanted: list[tuple[int, int]], cache: dict) -> dict:
        """The loops ``wanted`` of a block, decoded; ``cache`` keeps a row group that runs on into the next block."""
        units = {unit for unit, _ in wanted}
        for unit in set(cache) - units:
            del cache[unit]
        for unit in sorted(units - set(cache)):
            where = self._units[unit]
            with self._open(where.file) as parquet:
                table = parquet.read_row_group(where.row_group, columns=["audio.bytes", *COLUMNS], use_threads=False)
            audio = [data for chunk in table.column("audio").chunks for data in _buffers(chunk.field("bytes"))]
            cache[unit] = (table.select(list(COLUMNS)).to_pylist(), audio)
        loops = {}
        for unit, row in wanted:
            rows, audio = cache[unit]
            loops[unit, row] = _Loop(rows[row], audio[row], self.bars, len(self.classes), self._units[unit].file)
        return loops


def _buffers(array) -> list:
    """Each value of a binary array as a zero-copy pyarrow Buffer (None where null): no Python scalars (ms each)."""
    _, offsets, data = array.buffers()
    width = np.int64 if str(array.type).startswith("large") else np.int32
    ends = np.frombuffer(offsets, dtype=width)[array.offset : array.offset + len(array) + 1].tolist()
    valid = array.is_valid().to_pylist() if array.null_count else [True] * len(array)
    return [data.slice(a, b - a) if ok else None for a, b, ok in zip(ends, ends[1:], valid)]


class _Loop:
    """One loop, decoded once per block: its PCM, edges and labels, cut into windows on demand."""

    def __init__(self, row: dict, data, bars: int, classes: int, file: str):
        self.name = row["name"]
        if data is None:
            raise WindowError(f"loop {self.name!r} in {file} has no audio bytes")
        self.pcm = loop_pcm(data, self.name)
        self.edges = window_edges(self.name, row["bpm"], row["num_bars"], bars)
        self.bpm, self.fold = row["bpm"], row["fold"]
        self.target = torch.zeros(classes)
        self.target[row["instruments"]] = 1.0

    def window(self, k: int, dtype: str) -> dict:
        return {
            "audio": torch.from_numpy(cut(self.pcm, self.edges, k, self.name, dtype)),
            "name": self.name,
            "window": k,
            "start": self.edges[k] / SAMPLE_RATE,
            "bpm": self.bpm,
            "fold": self.fold,
            "target": self.target.clone(),
        }


def collate(items: list[dict]) -> dict:
    """A batch: ``audio`` (B, 2, n) zero-padded at the end to the longest, ``lengths`` (B,), labels stacked.

    Two bars at 100 BPM are 211,680 samples, at 130 BPM 162,830 or 162,831: padding keeps every window whole
    and on its own beat grid (mask: ``torch.arange(n) < lengths[:, None]``).
    """
    lengths = [item["audio"].shape[1] for item in items]
    first = items[0]["audio"]
    shape = (len(items), first.shape[0], max(lengths))
    if get_worker_info() is not None:  # built in shared memory, the batch is not copied again to reach the loader
        audio = torch.empty(shape, dtype=first.dtype).share_memory_()
    else:  # numpy's allocation asks for huge pages (madvise): fewer page faults than torch.empty's, measured
        audio = torch.from_numpy(np.empty(shape, dtype=first.numpy().dtype))
    out = audio.numpy()  # numpy: torch's copy into a slice is 10x slower on a busy 2-core machine
    for i, (item, length) in enumerate(zip(items, lengths)):
        out[i, :, :length] = item["audio"].numpy()
        out[i, :, length:] = 0
    return {
        "audio": audio,
        "lengths": torch.tensor(lengths),
        "target": torch.stack([item["target"] for item in items]),
        "name": [item["name"] for item in items],
        "window": torch.tensor([item["window"] for item in items]),
        "start": torch.tensor([item["start"] for item in items], dtype=torch.float64),
        "bpm": torch.tensor([item["bpm"] for item in items]),
        "fold": torch.tensor([item["fold"] for item in items]),
    }


def _parquet_files(path: str, config: str, split: str) -> tuple:
    """The filesystem (None: local) and sorted Parquet files of ``split`` (``a+b``: both) of the copy at ``path``."""
    if os.path.isdir(path):
        fs, root = None, os.path.join(path, "data", config)
        listing = sorted(os.listdir(root)) if os.path.isdir(root) else []
        found = [os.path.join(root, name) for name in listing if name.endswith(".parquet")]
    else:
        fs, root = fsspec.core.url_to_fs(path if "://" in path else f"hf://datasets/{path}")
        root = f"{root.rstrip('/')}/data/{config}"
        found = sorted(fs.glob(f"{root}/*.parquet"))
    by_split: dict[str, list[str]] = {}
    for file in found:
        by_split.setdefault(os.path.basename(file).split("-")[0], []).append(file)
    files = []
    for part in split.split("+"):
        if part not in by_split:
            have = ", ".join(sorted(by_split)) or "none"
            raise ValueError(f"the copy at {path} has no {part!r} split in config {config!r} (it has: {have})")
        files += by_split[part]
    return fs, files
