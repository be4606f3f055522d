"""A PyTorch training loader for POP-ROK's Parquet copy: 2-bar stereo windows with multi-hot instrument targets.

    python examples/torch_loader.py out/parquet --split train --batch-size 8 --workers 2
    python examples/torch_loader.py <org>/pop-rok --split train+validation+test
    torchrun --standalone --nproc-per-node 2 examples/torch_loader.py out/parquet   # each rank its own shards

What it does, in the order a training script needs it:
- streams the copy (a folder ``pop_rok.py export`` wrote, or a Hub repo id) with ``datasets.load_dataset``;
  nothing is downloaded first, and no project code is needed to read it;
- gives each rank its own part with ``split_dataset_by_node`` when ``torch.distributed`` is initialised: whole
  shards when the world size divides the shard count (the copy's counts are multiples of 16), else every rank
  reads everything and keeps every world_size-th window;
- cuts every loop into its 2-bar windows with ``pop_rok.bar_windows`` (sample-exact, from the tempo), in the
  DataLoader's workers, and shuffles them through a buffer fed by several shards at once, so one loop's (or one
  tempo's) windows do not fill a batch. datasets then pauses 5 s as each worker's epoch ends (it waits for
  Arrow's reader threads, apache/arrow#45214): nothing is wrong;
- decodes each window to float stereo with ``get_all_samples().data`` (``["array"]`` is mono in datasets 5);
- batches them with ``collate``: ``audio`` (B, 2, n), ``lengths`` (B,), ``targets`` (B, classes), ``name`` and
  ``window``. Two bars last 8 beats: 211,680 samples at 100 BPM, 162,830 or 162,831 at 130 (window edges are
  rounded to samples), so lengths differ within a batch: each is zero-padded at the end to the batch's longest,
  and ``lengths`` says how many samples are real (mask: ``torch.arange(n) < lengths[:, None]``). Padding drops
  nothing and keeps every window's beat grid on its own samples; cropping would cut up to a quarter of the slow
  windows, resampling would change the drums' pitch.

DataLoader workers share out the stream by shards; a split with fewer shards than workers would leave the
extra workers idle, so the loader starts at most as many workers as the stream has shards.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from pathlib import Path

import torch
import torchcodec  # noqa: F401  decodes the audio; imported once here, not in every forked worker (seconds each)
from torch.utils.data import DataLoader

import datasets
from datasets.distributed import split_dataset_by_node

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # pop_rok.py sits in the repository root
import pop_rok  # noqa: E402

BARS = 2
SHUFFLE_BUFFER = 64  # windows per worker, held as WAV: up to 54 MB (2 bars at 100 BPM are 847 KB)


def window_stream(path: str, split: str = "train", *, rank=None, world_size=None, seed=0, shuffle_buffer=SHUFFLE_BUFFER):
    """This rank's 2-bar windows of ``split`` of the Parquet copy at ``path``, as a streamed IterableDataset.

    ``rank`` and ``world_size`` default to torch.distributed's when it is initialised (else: everything);
    ``shuffle_buffer=0`` keeps the copy's order.
    """
    stream = datasets.load_dataset(path, "default", split=split, streaming=True)
    if rank is None and torch.distributed.is_available() and torch.distributed.is_initialized():
        rank, world_size = torch.distributed.get_rank(), torch.distributed.get_world_size()
    if world_size and world_size > 1:
        stream = split_dataset_by_node(stream, rank=rank, world_size=world_size)
    windows = stream.map(pop_rok.bar_windows, batched=True, fn_kwargs={"bars": BARS}, remove_columns=list(stream.features))
    windows = windows.cast(pop_rok.window_features(stream.features))  # a streamed map forgets the features
    return windows.shuffle(seed=seed, buffer_size=shuffle_buffer) if shuffle_buffer else windows


def num_classes(windows) -> int:
    """The number of instrument classes, from the copy's ClassLabel (11 for POP-ROK's key map)."""
    return windows.features["instruments"].feature.num_classes


def collate(rows: list[dict], classes: int) -> dict:
    """Stack windows into a batch: stereo audio zero-padded to the longest, lengths, multi-hot targets, ids."""
    audio = [row["audio"].get_all_samples().data for row in rows]  # float32 (2, samples) in [-1, 1)
    lengths = torch.tensor([clip.shape[1] for clip in audio])
    batch = torch.zeros(len(rows), audio[0].shape[0], int(lengths.max()))
    targets = torch.zeros(len(rows), classes)
    for i, (clip, row) in enumerate(zip(audio, rows)):
        batch[i, :, : clip.shape[1]] = clip
        targets[i, row["instruments"]] = 1.0
    return {
        "audio": batch,
        "lengths": lengths,
        "targets": targets,
        "name": [row["name"] for row in rows],
        "window": torch.tensor([row["window"] for row in rows]),
    }


def make_loader(path: str, split: str = "train", batch_size: int = 8, workers: int = 2, **stream_kwargs) -> DataLoader:
    """A DataLoader over ``window_stream(path, split, **stream_kwargs)``, with at most one worker per shard."""
    windows = window_stream(path, split, **stream_kwargs)
    return DataLoader(
        windows,
        batch_size=batch_size,
        num_workers=min(workers, windows.num_shards),
        collate_fn=functools.partial(collate, classes=num_classes(windows)),
        pin_memory=torch.cuda.is_available(),
    )


def run_epoch(loader: DataLoader) -> dict:
    """Iterate the loader once: batches, windows and seconds."""
    start = time.perf_counter()
    batches = windows = 0
    for batch in loader:  # a training step on batch["audio"], batch["lengths"] and batch["targets"] goes here
        batches += 1
        windows += len(batch["name"])
    return {"batches": batches, "windows": windows, "seconds": time.perf_counter() - start}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path", help="a Parquet copy: its folder, or a Hub repo id")
    parser.add_argument("--split", default="train", help="train, validation, test, or a sum like train+validation")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shuffle-buffer", type=int, default=SHUFFLE_BUFFER, help="windows per worker; 0: no shuffling")
    args = parser.parse_args(argv)
    launched = "WORLD_SIZE" in os.environ and not torch.distributed.is_initialized()
    if launched:  # by torchrun, which sets the rendezvous variables but leaves initialising to the script (a GPU
        # training script would pick "nccl"; the loader itself sends nothing between ranks)
        torch.distributed.init_process_group("gloo")
    loader = make_loader(args.path, args.split, args.batch_size, args.workers, seed=args.seed, shuffle_buffer=args.shuffle_buffer)
    summary = run_epoch(loader)
    rank = f"rank {torch.distributed.get_rank()} of {torch.distributed.get_world_size()}, " if torch.distributed.is_initialized() else ""
    print(
        f"{rank}{args.split}: {summary['batches']} batches, {summary['windows']} {BARS}-bar windows, "
        f"{summary['seconds']:.2f} s with {loader.num_workers} worker(s)"
    )
    if launched:
        torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
