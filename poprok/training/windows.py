"""A loop's bar windows as PCM, straight from its stored bytes (``poprok.archives.pcm``), never re-encoded.

Window k of ``bars`` bars spans the samples ``poprok.grid.bar_edges`` gives, the same as ``pop_rok.bar_windows``
cuts, bit for bit; a training loader needs those samples, not a WAV file of them to decode again.
"""

from __future__ import annotations

import numpy as np

from poprok.archives.pcm import PcmError, read_pcm16
from poprok.grid import bar_edges
from poprok.record import BITS_PER_SAMPLE, CHANNELS, SAMPLE_RATE

DTYPES = ("float32", "int16")


class WindowError(ValueError):
    """A loop whose audio or bars cannot give its windows: the message names the loop."""


def window_edges(name: str, bpm: float, num_bars: int, bars: int) -> list[int]:
    """The sample edges of a loop's ``bars``-bar windows; a window that does not fit the loop's bars is an error."""
    if not bpm or bpm <= 0:
        raise WindowError(f"loop {name!r} has no tempo (bpm={bpm!r}): windows are cut from the tempo")
    if bars < 1 or not num_bars or num_bars % bars:
        raise WindowError(f"loop {name!r} has {num_bars} bars, which {bars}-bar windows do not divide")
    return bar_edges(bpm, num_bars, bars, SAMPLE_RATE)


def loop_pcm(data, name: str) -> np.ndarray:
    """A loop's int16 samples, (frames, 2), from its WAV (a view of ``data``, no copy) or FLAC bytes."""
    try:
        pcm = read_pcm16(data)
    except PcmError as error:
        raise WindowError(f"loop {name!r}: {error}") from error
    if (pcm.sample_rate, pcm.channels) != (SAMPLE_RATE, CHANNELS):
        raise WindowError(
            f"loop {name!r}: {pcm.kind} of {pcm.sample_rate} Hz, {pcm.channels} channel(s); "
            f"POP-ROK is {SAMPLE_RATE} Hz, {CHANNELS} channels, {BITS_PER_SAMPLE} bit"
        )
    return pcm.samples


def cut(pcm: np.ndarray, edges: list[int], k: int, name: str, dtype: str = "float32") -> np.ndarray:
    """Window k as a new (2, T) array: int16 as stored, or float32 in [-1, 1) (int16 / 32768, exact)."""
    if edges[-1] > len(pcm):
        raise WindowError(
            f"loop {name!r} holds {len(pcm)} samples, fewer than the {edges[-1]} its bars span: the file is cut short"
        )
    window = pcm[edges[k] : edges[k + 1]].T
    if dtype == "int16":
        return np.ascontiguousarray(window)
    out = np.empty(window.shape, dtype=np.float32)
    np.multiply(window, np.float32(1 / 32768), out=out)
    return out
