"""One pass over a loop's PCM, chunk by chunk, for every measure: the loudness steps' energies and run sums of frames
(the one decimation the analysis uses), the onsets' mono run sums and the extreme samples.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np


@functools.cache
def _weights(factor: int, channels: int, mono: bool) -> np.ndarray:
    weights = np.zeros((factor * channels, 1 if mono else channels), np.float32)
    for term in range(factor * channels):
        weights[term, 0 if mono else term % channels] = 1.0
    return weights


def run_sums(floats: np.ndarray, factor: int, mono: bool = False) -> np.ndarray:
    """The sums of each run of ``factor`` frames of float32 ``(..., frames, channels)``: per channel,
    ``(..., frames // factor, channels)``, or over all channels (``mono``), ``(..., frames // factor)``.

    Frames past the last whole run are left out. One matrix product reads the loop once (numpy's sum over a
    short axis is ten times slower); sums of int16 values stay whole numbers below 2^24, so they are exact.
    """
    *lead, frames, channels = floats.shape
    runs = frames // factor
    grouped = floats[..., : runs * factor, :].reshape(*lead, runs, factor * channels)
    sums = grouped @ _weights(factor, channels, mono)
    return sums[..., 0] if mono else sums


CHUNK_STEPS = 16  # steps converted to float at a time: ~0.6 MB of float32 at 44.1 kHz stereo, within a core's cache


@dataclass(frozen=True)
class Frames:
    """What one pass over a loop's int16 PCM gives the measures: its loudness steps' energies and run sums, its
    mono run sums and its extreme samples (int16 units, unscaled)."""

    step_energy: np.ndarray  # (steps,) float32: the sum of squares of each step's samples over every channel
    step_sums: np.ndarray  # (steps, step // step_factor, channels): run sums within each step
    mono_sums: np.ndarray  # (frames // mono_factor,): run sums over all channels
    low: int  # the lowest sample, or 0 if none is below it
    high: int  # the highest sample, or 0 if none is above it


def read_frames(pcm: np.ndarray, mono_factor: int | None, step: int | None = None, step_factor: int = 1) -> Frames:
    """``Frames`` of int16 ``(frames, channels)`` PCM: steps of ``step`` frames (none without it), runs of
    ``step_factor`` frames within them, mono runs of ``mono_factor`` (none without it).

    A chunk of ``CHUNK_STEPS`` steps is converted to float and measured while it sits in the core's cache: done
    loop-wide, each measure was a pass over the loop from memory, and all of them a quarter slower here.
    """
    frames, channels = pcm.shape
    steps = frames // step if step else 0
    energy = np.empty(steps, np.float32)
    step_sums = np.empty((steps, step // step_factor if step else 0, channels), np.float32)
    mono = np.empty(frames // mono_factor if mono_factor else 0, np.float32)
    chunk = CHUNK_STEPS * (mono_factor or 1) * (step or 4096)  # whole steps and mono runs (4096 frames if no step)
    buffer = np.empty((min(chunk, frames), channels), np.float32)
    low = high = 0
    for start in range(0, frames, chunk):
        part = pcm[start : start + chunk]
        floats = buffer[: len(part)]
        np.copyto(floats, part)
        low, high = min(low, int(part.min())), max(high, int(part.max()))
        first, last = (start // step, min(steps, (start + len(part)) // step)) if step else (0, 0)
        if last > first:
            rows = floats[: (last - first) * step]
            energy[first:last] = np.einsum("ij,ij->i", *[rows.reshape(last - first, -1)] * 2)
            step_sums[first:last] = run_sums(rows.reshape(last - first, step, channels), step_factor)
        if mono_factor:
            mono[start // mono_factor : (start + len(part)) // mono_factor] = run_sums(floats, mono_factor, mono=True)
    return Frames(energy, step_sums, mono, low, high)
