"""A loop's bar windows as PCM, straight from its stored bytes: WAV read in place, FLAC decoded once, never re-encoded.

Window k of ``bars`` bars spans the samples ``poprok.grid.bar_edges`` gives, the same as ``pop_rok.bar_windows``
cuts, bit for bit; a training loader needs those samples, not a WAV file of them to decode again.
"""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf

from poprok.archives.wav import WavError, read_wav_info
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
    head = bytes(data[:4])
    if head == b"RIFF":
        return _wav_pcm(memoryview(data), name)
    if head == b"fLaC":
        return _flac_pcm(data, name)
    raise WindowError(f"loop {name!r}: its audio is neither WAV nor FLAC (it starts with {head!r})")


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


def _wav_pcm(data: memoryview, name: str) -> np.ndarray:
    try:
        info = read_wav_info(data)
    except WavError as error:
        raise WindowError(f"loop {name!r}: unreadable WAV: {error}") from error
    _check_format(name, "WAV", info.sample_rate, info.channels, info.bits_per_sample)
    return info.samples(data)


def _flac_pcm(data, name: str) -> np.ndarray:
    """Decoded by libFLAC (soundfile), which checks every frame's CRC: the fastest bit-exact decoder measured."""
    try:
        with sf.SoundFile(io.BytesIO(data)) as flac:
            _check_format(
                name, "FLAC", flac.samplerate, flac.channels, 16 if flac.subtype == "PCM_16" else flac.subtype
            )
            declared = flac.frames
            pcm = flac.read(dtype="int16", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as error:
        raise WindowError(f"loop {name!r}: corrupt or unreadable FLAC: {error}") from error
    if len(pcm) != declared:
        raise WindowError(f"loop {name!r}: corrupt FLAC: decoded {len(pcm)} of the {declared} samples it declares")
    return pcm


def _check_format(name: str, kind: str, rate: int, channels: int, bits) -> None:
    if (rate, channels, bits) != (SAMPLE_RATE, CHANNELS, BITS_PER_SAMPLE):
        raise WindowError(
            f"loop {name!r}: {kind} of {rate} Hz, {channels} channel(s), {bits} bit; "
            f"POP-ROK is {SAMPLE_RATE} Hz, {CHANNELS} channels, {BITS_PER_SAMPLE} bit"
        )
