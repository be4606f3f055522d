"""Sums over runs of frames: the one decimation the analysis uses, shared by the loudness meter and the onsets."""

from __future__ import annotations

import functools

import numpy as np


def as_floats(pcm: np.ndarray) -> np.ndarray:
    """int16 ``(frames, channels)`` PCM as float32 of the same values (full scale 32768); float32 is kept as is.

    Listening converts once and hands the floats to every measure: the conversion is a pass over the loop.
    """
    return pcm if pcm.dtype == np.float32 else pcm.astype(np.float32)


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
