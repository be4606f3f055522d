"""The beat grid of a grid-quantised loop: where beat, bar and 16th-note step k fall, in seconds and samples.

Every module that cuts, renders or listens to a loop on its grid uses these, so one arithmetic (and one
rounding) holds everywhere: window k of ``bars`` bars starts at ``frame_at(k * bars * BEATS_PER_BAR, ...)``.
"""

from __future__ import annotations

import numpy as np

BEATS_PER_BAR = 4  # 4/4
STEPS_PER_BEAT = 4  # 16th notes
STEPS_PER_BAR = BEATS_PER_BAR * STEPS_PER_BEAT


def seconds_at(beats: float, bpm: float) -> float:
    """The time of beat ``beats`` (a float: 0.25 is the second 16th) from the loop's start."""
    return beats * 60 / bpm


def frame_at(beats: float, bpm: float, sample_rate: int) -> int:
    """The sample index of beat ``beats``, rounded to the nearest sample."""
    return round(beats * 60 / bpm * sample_rate)


def frames_at(beats: np.ndarray, bpm: float, sample_rate: float) -> np.ndarray:
    """``frame_at`` of each of an array of beats, with the same rounding (to nearest, halves to even)."""
    return np.rint(np.asarray(beats) * 60 / bpm * sample_rate).astype(np.int64)


def bars_in(frames: int, bpm: float, sample_rate: int) -> int:
    """The whole number of bars nearest to ``frames`` samples at ``bpm``."""
    return round(frames / sample_rate * bpm / 60 / BEATS_PER_BAR)


def bar_edges(bpm: float, num_bars: int, bars: int, sample_rate: int) -> list[int]:
    """The sample boundaries of the consecutive ``bars``-bar windows of ``num_bars`` bars (one more than windows)."""
    return [frame_at(k * bars * BEATS_PER_BAR, bpm, sample_rate) for k in range(num_bars // bars + 1)]


def beat_grid(bpm: float, num_bars: int) -> tuple[list[float], list[float]]:
    """Beats and downbeats (seconds) of ``num_bars`` bars of 4/4 that start on the downbeat.

    From the bars, not from the file's end: a file running some milliseconds past its bars (a reverb tail,
    MP3 padding) has no extra beat.
    """
    beats = [seconds_at(i, bpm) for i in range(num_bars * BEATS_PER_BAR)]
    return beats, beats[::BEATS_PER_BAR]
