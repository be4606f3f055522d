"""A PyTorch training loader for POP-ROK's Parquet copy: 2-bar stereo windows with multi-hot instrument targets.

    PYTHONPATH=. python examples/torch_loader.py out/parquet --split train --batch-size 8   # reader thread
    PYTHONPATH=. python examples/torch_loader.py out/parquet --workers 2                      # process workers
    PYTHONPATH=. python examples/torch_loader.py <org>/pop-rok --split train+validation+test
    PYTHONPATH=. torchrun --standalone --nproc-per-node 2 examples/torch_loader.py out/parquet   # per-rank shards

What it does, in the order a training script needs it:
- reads the copy (a folder ``pop_rok.py export`` wrote, or a Hub repo id) with
  ``poprok.training.dataset.WindowDataset``: pyarrow reads only the columns it needs, and each 2-bar window comes
  out as float32 PCM (2, T), cut sample-exact from the loop's WAV bytes (FLAC copies are decoded once per loop by
  libFLAC), never re-encoded;
- gives each rank its own row groups when ``torch.distributed`` is initialised (as ``split_dataset_by_node``
  gives whole shards), and each DataLoader worker its own share of those; shuffles across row groups and
  windows from ``--seed``, reshuffled every epoch by ``set_epoch``;
- batches with ``collate``: ``audio`` (B, 2, n) zero-padded at the end to the longest window, ``lengths`` (B,)
  (mask: ``torch.arange(n) < lengths[:, None]``), ``target`` (B, classes) multi-hot, ``name``, ``window``,
  ``start``, ``bpm`` and ``fold``. Two bars last 211,680 samples at 100 BPM and 162,830 or 162,831 at 130, so
  padding keeps every window whole and on its own beat grid;
- by default (``--workers 0``) reads in one background thread two batches ahead (``prefetch``), the fastest path
  measured (``benchmarks/bench_loader.py``) wherever a second core is free: pyarrow and numpy release the GIL, so
  reading overlaps the training step on that core, and no batch crosses a process boundary. ``--workers N`` uses
  N DataLoader worker processes instead, which ship int16 batches (``--dtype float32`` to override): every batch
  crosses through a fresh shared-memory segment, which costs more than reading it on a small machine, and int16
  is half the bytes;
- uses torchdata's ``StatefulDataLoader``: ``loader.state_dict()`` saved with a checkpoint resumes mid-epoch,
  every window of the epoch exactly once (the reader thread's windows not yet taken are read again); pins memory
  when CUDA is available.

What a GPU training script adds: ``init_process_group("nccl")`` and ``torch.cuda.set_device(local_rank)``; the
model wrapped in ``DistributedDataParallel``; ``batch["audio"].to(device, non_blocking=True)`` (pinned memory
makes the copy asynchronous), and int16 batches (process workers' default) made float on the GPU:
``batch["audio"].float().div_(32768)``, the same values as float32 batches; ``loader.dataset.set_epoch(epoch)``
before each epoch; ``loader.state_dict()`` in each checkpoint, beside the model's and optimiser's, and
``loader.load_state_dict`` on restart; and, since ranks get whole row groups, their window counts can differ by
one row group's: train under ``model.join()`` (or stop every rank at the smallest ``len(dataset)``) so no rank
waits for a missing batch.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch
from torchdata.stateful_dataloader import StatefulDataLoader

from poprok.training.dataset import WindowDataset, collate

BARS = 2


def make_loader(
    path: str, split: str = "train", batch_size: int = 8, workers: int = 0, dtype: str | None = None, **dataset_kwargs
) -> StatefulDataLoader:
    """A resumable DataLoader over this rank's 2-bar windows of ``split`` of the copy at ``path``.

    No workers: a reader thread two batches ahead, float32. Workers: int16 unless ``dtype`` says (see above).
    """
    if dtype is None:
        dtype = "int16" if workers else "float32"
    prefetch = 0 if workers else 2 * batch_size
    windows = WindowDataset(path, split, bars=BARS, dtype=dtype, prefetch=prefetch, **dataset_kwargs)
    return StatefulDataLoader(
        windows,
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=collate,
        pin_memory=torch.cuda.is_available(),
    )


def run_epoch(loader: StatefulDataLoader, epoch: int = 0) -> dict:
    """Iterate the loader once: batches, seconds and the (name, window) of every window it gave."""
    loader.dataset.set_epoch(epoch)
    start = time.perf_counter()
    batches, seen = 0, []
    for batch in loader:  # a training step on batch["audio"], batch["lengths"] and batch["target"] goes here
        batches += 1
        seen += zip(batch["name"], batch["window"].tolist())
    return {"batches": batches, "windows": seen, "seconds": time.perf_counter() - start}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path", help="a Parquet copy: its folder, or a Hub repo id")
    parser.add_argument("--split", default="train", help="train, validation, test, or a sum like train+validation")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes (0: a reader thread)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epoch", type=int, default=0, help="which epoch's shuffle to run")
    parser.add_argument(
        "--dtype", choices=["float32", "int16"], help="the audio's (default: float32, int16 with --workers)"
    )
    parser.add_argument("--windows-out", help="write the (name, window) pairs read, as JSON, here ({rank}: the rank)")
    args = parser.parse_args(argv)
    launched = "WORLD_SIZE" in os.environ and not torch.distributed.is_initialized()
    if launched:  # by torchrun, which sets the rendezvous variables but leaves initialising to the script (a GPU
        # training script would pick "nccl"; the loader itself sends nothing between ranks)
        torch.distributed.init_process_group("gloo")
    loader = make_loader(args.path, args.split, args.batch_size, args.workers, args.dtype, seed=args.seed)
    summary = run_epoch(loader, args.epoch)
    rank = ""
    if torch.distributed.is_initialized():
        rank = f"rank {torch.distributed.get_rank()} of {torch.distributed.get_world_size()}, "
    if args.windows_out:
        with open(args.windows_out.format(rank=loader.dataset.rank), "w") as out:
            json.dump(summary["windows"], out)
    print(
        f"{rank}{args.split}: {summary['batches']} batches, {len(summary['windows'])} {BARS}-bar windows, "
        f"{summary['seconds']:.2f} s with {loader.num_workers} worker(s)"
    )
    if launched:
        torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
