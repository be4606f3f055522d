"""Bar-aligned windows: a ``datasets.map`` function cutting each loop into its 1-, 2-, 4- or 8-bar windows."""

from __future__ import annotations

from pathlib import Path

import datasets
import numpy as np

from poprok.archives.pcm import PcmError, read_pcm16
from poprok.archives.wav import wav_bytes
from poprok.grid import bar_edges, beat_grid
from poprok.record import BARS_PER_LOOP, SAMPLE_RATE
from poprok.rows import float32

WINDOW_BARS = (1, 2, 4, 8)
# Columns that describe the whole loop: each window has its own.
_LOOP_ONLY_COLUMNS = ("audio", "duration", "num_bars", "beats", "downbeats")


def bar_windows(batch: dict, bars: int = 2) -> dict:
    """Cut each loop of a batch into its consecutive ``bars``-bar windows: a batched ``map`` function.

        windows = ds.map(pop_rok.bar_windows, batched=True, fn_kwargs={"bars": 2}, remove_columns=ds.column_names)

    Window k spans samples ``round(k * bars * 4 * 60 / bpm * 44100)`` up to the next boundary: its audio is
    the loop's 16-bit stereo samples there, as WAV, bit for bit (a loop's windows concatenate to its first
    ``num_bars`` bars). Each window keeps the loop's label columns and gets ``window`` (k), ``start``
    (seconds), ``num_bars`` (``bars``), ``duration`` and its own ``beats`` and ``downbeats``, relative to its
    start. Works on prepared, Parquet and streamed POP-ROK, decoded or not. A loop shorter than its bars
    gives only its whole windows: nothing is padded.
    """
    if bars not in WINDOW_BARS:
        raise ValueError(f"bars must be one of {WINDOW_BARS}, got {bars!r}")
    kept = [column for column in batch if column not in _LOOP_ONLY_COLUMNS]
    out: dict[str, list] = {
        column: [] for column in ("audio", *kept, "window", "start", "num_bars", "duration", "beats", "downbeats")
    }
    for index in range(len(batch["name"])):
        name = batch["name"][index]
        bpm = batch["bpm"][index] if "bpm" in batch else None
        if not bpm:
            raise ValueError(f"bar_windows: row {name!r} has no 'bpm': windows are cut from the tempo")
        loop_bars = batch["num_bars"][index] if "num_bars" in batch else BARS_PER_LOOP
        if loop_bars % bars:
            raise ValueError(f"bar_windows: row {name!r} has {loop_bars} bars, which {bars}-bar windows do not divide")
        samples = _pcm16(batch["audio"][index], name)
        edges = bar_edges(bpm, loop_bars, bars, SAMPLE_RATE)
        whole = [k for k in range(loop_bars // bars) if edges[k + 1] <= len(samples)]
        beats, downbeats = beat_grid(bpm, bars)
        for k in whole:
            out["audio"].append(
                {
                    "bytes": wav_bytes(samples[edges[k] : edges[k + 1]], SAMPLE_RATE),
                    "path": f"{name}_{bars}bar_{k}.wav",
                }
            )
            for column in kept:
                out[column].append(batch[column][index])
            out["window"].append(k)
            out["start"].append(edges[k] / SAMPLE_RATE)
            out["num_bars"].append(bars)
            out["duration"].append((edges[k + 1] - edges[k]) / SAMPLE_RATE)
            out["beats"].append(beats)
            out["downbeats"].append(downbeats)
    out["window"] = np.asarray(out["window"], dtype=np.int32)  # a new column: int32 as the others, not inferred int64
    for column in ("duration", "beats", "downbeats"):
        out[column] = float32(out[column])
    return out


def window_features(features: datasets.Features) -> datasets.Features:
    """The features of ``bar_windows``' rows from a loop's: a stream loses them in a map (a prepared or Parquet
    dataset keeps them), so cast it back: ``stream.map(bar_windows, ...).cast(window_features(stream.features))``."""
    return datasets.Features({**features, "window": datasets.Value("int32"), "start": datasets.Value("float64")})


def _pcm16(cell, name: str) -> np.ndarray:
    """A loop's samples as int16 (frames, channels), from its stored bytes (WAV or FLAC), never re-quantised."""
    if cell is not None and not isinstance(cell, dict):  # a decoder from a decoding Audio column
        from datasets.features.audio import encode_torchcodec_audio

        cell = encode_torchcodec_audio(cell)
    if not cell or (cell.get("bytes") is None and not cell.get("path")):
        raise ValueError(f"bar_windows: row {name!r} has no audio")
    data = cell["bytes"] if cell.get("bytes") is not None else Path(cell["path"]).read_bytes()
    try:
        return read_pcm16(data).samples
    except PcmError as error:
        raise ValueError(f"bar_windows: row {name!r}: {error}") from error
