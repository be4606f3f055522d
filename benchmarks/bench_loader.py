"""Benchmark: the training loader (poprok.training) against a raw one-core read of the same Parquet copy.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_loader.py [--loops 100] [--work-dir DIR] [--repeat 3]

Makes WAV and FLAC Parquet copies of ``--loops`` generated loops with ``pop_rok.py sample`` and ``export``
(kept in ``--work-dir`` for reruns), then times every 2-bar window of all three splits:

  raw      pyarrow.parquet.read_table of each file + np.frombuffer of the WAV bytes (FLAC: soundfile), slice,
           float32, on one core: the floor any loader pays
  loader   WindowDataset through a StatefulDataLoader (batch 8, collate), whole epochs from iter() to
           StopIteration, worker start included; best of ``--repeat``; float32, and int16 once. Configurations:
           ``0w`` (all on the loop's thread), ``0w_thread`` (0 workers, ``prefetch=16``: one reader thread),
           ``1w`` and ``2w`` (process workers). One extra core each: ``0w_thread`` and ``1w``; ``loader_ratio``
           = the better of them / raw (``loader_ratio_1w``: the process worker's), ``loader_vs_naive`` = the same
           over naive. raw, naive and the configurations run in turn, ``--repeat`` rounds: all see the same load
  shm      making as many batches in shared memory (what any DataLoader worker does to hand one over), filled,
           with nothing read: the ceiling of a worker's throughput on this machine
  naive    datasets.load_dataset(copy, streaming=True), row["audio"].get_all_samples(), slice 2 bars, one core
  stall    per configuration, the longest time from the dataset giving its last window (in whichever worker; to
           the loop's thread with a reader thread) to the loader's StopIteration; and the same for datasets' own
           streamed + shuffled loader in 2 workers (the old example's), which sleeps 5 s as a Parquet stream ends
  flac     loops decoded per second by soundfile (libFLAC) and torchcodec (FFmpeg), each checked bit-exact

Prints a table with the targets and the 1-minute load average as each figure was taken (``os.getloadavg``; the
machine is shared) and, last, one JSON line. Ratios are within this run: the load moves every figure, less their
ratios.
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import datasets
import numpy as np
import pyarrow.parquet as pq
import soundfile as sf
import torch
from torch.utils.data import DataLoader, IterableDataset
from torchcodec.decoders import AudioDecoder
from torchdata.stateful_dataloader import StatefulDataLoader

import pop_rok
from poprok.archives.wav import read_wav_info
from poprok.grid import BEATS_PER_BAR, bar_edges, frame_at
from poprok.training.dataset import WindowDataset, collate

ROOT = Path(__file__).resolve().parents[1]
SPLIT = "train+validation+test"
BARS = 2
BATCH = 8
TARGETS = {"loader_ratio": (">=", 0.7), "loader_vs_naive": (">=", 5.0), "epoch_stall_s": ("<=", 0.5)}
PREFETCH = 16  # windows the reader thread keeps ready: two batches
CONFIGS = {"0w": (0, 0), "0w_thread": (0, PREFETCH), "1w": (1, 0), "2w": (2, 0)}  # name: (workers, prefetch)
ONE_EXTRA_CORE = ("0w_thread", "1w")


def make_copies(work: Path, loops: int) -> dict[str, Path]:
    """WAV and FLAC Parquet copies of the same generated loops, made by the project's own commands."""
    archives, copies = work / "archives", {"wav": work / "wav", "flac": work / "flac"}
    run = [sys.executable, str(ROOT / "pop_rok.py")]
    if not archives.exists():
        subprocess.run([*run, "sample", str(archives), "--loops", str(loops), "--seed", "0"], check=True)
    for audio, out in copies.items():
        if not out.exists():
            export = ["export", str(out), "--data-dir", str(archives), "--cache-dir", str(work / f"cache-{audio}")]
            subprocess.run([*run, *export, "--config", "default", "--audio-format", audio], check=True)
    return copies


def files(copy: Path) -> list[Path]:
    return sorted((copy / "data" / "default").glob("*.parquet"))


def raw_read(copy: Path) -> tuple[int, float]:
    """Every window as float32, the plainest way: read_table, frombuffer (or soundfile for FLAC), slice."""
    start, windows = time.perf_counter(), 0
    for file in files(copy):
        table = pq.read_table(file, columns=["audio", "bpm", "num_bars"], use_threads=False)
        for cell, bpm, num_bars in zip(*(table.column(c).to_pylist() for c in ("audio", "bpm", "num_bars"))):
            data = cell["bytes"]
            if data[:4] == b"RIFF":
                frames = read_wav_info(data).num_frames
                pcm = np.frombuffer(data, dtype="<i2", offset=len(data) - frames * 4).reshape(-1, 2)
            else:
                pcm = sf.read(io.BytesIO(data), dtype="int16", always_2d=True)[0]
            edges = bar_edges(bpm, num_bars, BARS, pop_rok.SAMPLE_RATE)
            for a, b in itertools.pairwise(edges):
                pcm[a:b].T.astype(np.float32) / 32768
                windows += 1
    return windows, time.perf_counter() - start


class Timed(IterableDataset):
    """The loader's windows, each stamped with the wall-clock time the dataset yielded it (across processes)."""

    def __init__(self, windows: WindowDataset):
        self.windows = windows

    def __iter__(self):
        for item in self.windows:
            item["yielded_at"] = time.time()
            yield item


def timed_collate(items: list[dict]) -> dict:
    return {**collate(items), "yielded_at": max(item["yielded_at"] for item in items)}


def loader_epoch(copy: Path, workers: int, prefetch: int = 0, dtype: str = "float32") -> tuple[int, float, float]:
    """Windows, seconds from iter() to StopIteration, and the stall: the last window yielded to StopIteration."""
    windows = Timed(WindowDataset(str(copy), SPLIT, bars=BARS, seed=0, dtype=dtype, prefetch=prefetch))
    loader = StatefulDataLoader(windows, batch_size=BATCH, num_workers=workers, collate_fn=timed_collate)
    start, count, last = time.perf_counter(), 0, 0.0
    for batch in loader:
        count += len(batch["name"])
        last = max(last, batch["yielded_at"])
    return count, time.perf_counter() - start, time.time() - last


def naive(copy: Path) -> tuple[int, float]:
    """The recipe a user writes first: a streamed load_dataset, every loop decoded, 2-bar slices."""
    start, windows = time.perf_counter(), 0
    for part in SPLIT.split("+"):
        for row in datasets.load_dataset(str(copy), "default", split=part, streaming=True):
            samples = row["audio"].get_all_samples().data
            edges = bar_edges(row["bpm"], row["num_bars"], BARS, pop_rok.SAMPLE_RATE)
            for a, b in itertools.pairwise(edges):
                samples[:, a:b].contiguous()
                windows += 1
    return windows, time.perf_counter() - start


def datasets_stall(copy: Path) -> float:
    """datasets' streamed, shuffled loader in 2 workers (the old example's): the last row made to StopIteration."""
    stream = datasets.load_dataset(str(copy), "default", split="train", streaming=True)
    stream = stream.map(lambda _: {"made_at": time.time()}).select_columns(["made_at"])
    last = 0.0
    for batch in DataLoader(stream.shuffle(seed=0, buffer_size=8), batch_size=BATCH, num_workers=2):
        last = max(last, float(batch["made_at"].max()))
    return time.time() - last


def shared_memory_floor(windows: int) -> float:
    """Windows per second of only making the batches a worker hands over: shared memory, filled (no reading)."""
    longest = frame_at(BARS * BEATS_PER_BAR, 100, pop_rok.SAMPLE_RATE)  # at 100 BPM, the slowest tempo
    window = np.ones((2, longest), dtype=np.float32)
    start = time.perf_counter()
    for _ in range(windows // BATCH):
        batch = torch.empty((BATCH, *window.shape)).share_memory_()
        batch.numpy()[:] = window
    return windows // BATCH * BATCH / (time.perf_counter() - start)


def flac_decoders(wav: Path, flac: Path, loops: int = 12) -> dict[str, tuple[float, bool]]:
    """Loops per second of each FLAC decoder on one thread, and whether every sample matched the WAV's."""
    cells = [pq.read_table(file, columns=["audio"]).column("audio").to_pylist() for file in files(flac)]
    data = [cell["bytes"] for rows in cells for cell in rows][:loops]
    wav_cells = [pq.read_table(file, columns=["audio"]).column("audio").to_pylist() for file in files(wav)]
    wavs = [cell["bytes"] for rows in wav_cells for cell in rows][:loops]
    truth = [
        np.frombuffer(w, dtype="<i2", offset=len(w) - read_wav_info(w).num_frames * 4).reshape(-1, 2) for w in wavs
    ]

    def libflac(b):
        return sf.read(io.BytesIO(b), dtype="int16", always_2d=True)[0]

    def ffmpeg(b):
        return (AudioDecoder(b).get_all_samples().data * 32768).round().to(torch.int16).numpy().T

    results = {}
    for name, decode in (("soundfile", libflac), ("torchcodec", ffmpeg)):
        decode(data[0])  # loads the decoder
        start = time.perf_counter()
        decoded = [decode(b) for b in data]
        seconds = time.perf_counter() - start
        results[name] = (len(data) / seconds, all(np.array_equal(d, t) for d, t in zip(decoded, truth)))
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loops", type=int, default=100)
    parser.add_argument("--work-dir", help="keep the copies here (default: a temporary folder)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each timing; the best is kept")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as temporary:
        copies = make_copies(Path(args.work_dir or temporary), args.loops)
        figures, loads, notes = {}, {}, {}

        def record(key: str, value: float, load: float | None = None) -> None:
            """``value``, with the load it was measured under (default: now)."""
            figures[key], loads[key] = value, os.getloadavg()[0] if load is None else load

        for audio, copy in copies.items():
            windows, _ = raw_read(copy)
            runs_of = {name: (*config, "float32") for name, config in CONFIGS.items()}
            if audio == "wav":  # int16 batches: half the bytes to move; a GPU converts them in microseconds
                runs_of["1w_int16"] = (1, 0, "int16")
            runs: dict[str, list] = {name: [] for name in ("raw", "naive", *runs_of)}
            load: dict[str, list] = {name: [] for name in runs}
            for _ in range(args.repeat):  # round-robin: each configuration sees the same spells of the load
                for name, read in (("raw", raw_read), ("naive", naive)):
                    runs[name].append(read(copy))
                    load[name].append(os.getloadavg()[0])
                for name, (workers, prefetch, dtype) in runs_of.items():
                    runs[name].append(loader_epoch(copy, workers, prefetch, dtype))
                    load[name].append(os.getloadavg()[0])
                    assert runs[name][-1][0] == windows, f"{name} gave {runs[name][-1][0]} of {windows} windows"
            for name, timed in runs.items():
                key = (
                    f"{name}_windows_per_s_{audio}"
                    if name in ("raw", "naive")
                    else f"loader_windows_per_s_{audio}_{name}"
                )
                best = min(range(len(timed)), key=lambda run: timed[run][1])
                record(key, timed[best][0] / timed[best][1], load[name][best])
                if name in runs_of:
                    record(f"epoch_stall_s_{audio}_{name}", max(run[2] for run in timed), max(load[name]))
            if audio == "wav":
                record("shm_floor_windows_per_s", shared_memory_floor(windows))
            raw = figures[f"raw_windows_per_s_{audio}"]
            best = max(ONE_EXTRA_CORE, key=lambda name: figures[f"loader_windows_per_s_{audio}_{name}"])
            notes[f"loader_ratio_{audio}_config"] = best
            record(f"loader_ratio_{audio}", figures[f"loader_windows_per_s_{audio}_{best}"] / raw)
            record(f"loader_ratio_{audio}_1w", figures[f"loader_windows_per_s_{audio}_1w"] / raw)
            record(
                f"loader_vs_naive_{audio}",
                figures[f"loader_windows_per_s_{audio}_{best}"] / figures[f"naive_windows_per_s_{audio}"],
            )
        record("loader_ratio", figures["loader_ratio_wav"])
        record("loader_ratio_1w", figures["loader_ratio_wav_1w"])
        record("loader_vs_naive", figures["loader_vs_naive_wav"])
        notes["loader_ratio_config"] = notes["loader_ratio_wav_config"]
        record("epoch_stall_s", max(value for key, value in figures.items() if key.startswith("epoch_stall_s_")))
        record("datasets_stream_stall_s", datasets_stall(copies["wav"]))
        for name, (rate, exact) in flac_decoders(copies["wav"], copies["flac"]).items():
            record(f"flac_decode_loops_per_s_{name}", rate)
            notes[f"flac_bit_exact_{name}"] = exact
        notes["windows"] = windows
    print(f"{'figure':<40} {'value':>10}  {'load':>5}  target")
    for key, value in figures.items():
        sign, target = TARGETS.get(key, ("", ""))
        met = "" if not sign else ("  ok" if (value >= target if sign == ">=" else value <= target) else "  MISSED")
        print(f"{key:<40} {value:>10.3f}  {loads[key]:>5.2f}  {sign} {target}{met}")
    for key, value in notes.items():
        print(f"{key:<40} {value!s:>10}")
    print(json.dumps({**{key: round(value, 4) for key, value in figures.items()}, **notes, "load": loads}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
