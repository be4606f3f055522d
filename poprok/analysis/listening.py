"""One entry point that listens to a loop, and the facts a report prints about many listened loops."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass

import numpy as np

from poprok.analysis.facts import CLIPPED_AT_LEAST, SILENT_LUFS, digest, frames_loudness, levels, loudness_steps
from poprok.analysis.frames import read_frames
from poprok.analysis.onsets import BANDS, OFF_GRID_FIT, decimation, frames_mono, mono_onsets
from poprok.analysis.patterns import UNPLACED, pattern_id, unplaced_id
from poprok.grid import STEPS_PER_BAR, STEPS_PER_BEAT, frame_at


class ListenError(ValueError):
    """The loop cannot be listened to as given (its PCM or its named grid is not a loop's)."""


@dataclass(frozen=True, eq=False)  # equal by identity: the onsets are arrays (compare facts() for the rest)
class Listening:
    """What listening to one loop found: onsets per band on its 16th steps, its grid fit, pattern and audio facts."""

    onsets: dict[str, np.ndarray]  # float32
    grid_fit: float
    pattern: str
    peak_dbfs: float | None
    loudness_lufs: float | None
    clipped_samples: int
    digest: str

    def facts(self) -> dict:
        """Everything but the onsets, as JSON: what a report needs of a loop, small enough to hand between jobs."""
        return {key: value for key, value in self.__dict__.items() if key != "onsets"}

    @classmethod
    def from_facts(cls, facts: dict) -> Listening:
        """A Listening from ``facts()``, without its onsets."""
        return cls(onsets={}, **facts)

    def columns(self) -> dict:
        """The six row columns, floats rounded to float32 as the table stores them (the onsets are float32 arrays)."""

        def f32(value: float) -> float:
            return float(np.float32(value))

        return {
            "onsets": self.onsets,
            "grid_fit": f32(self.grid_fit),
            "pattern": self.pattern,
            "peak_dbfs": None if self.peak_dbfs is None else f32(self.peak_dbfs),
            "loudness_lufs": None if self.loudness_lufs is None else f32(self.loudness_lufs),
            "clipped_samples": self.clipped_samples,
        }


def _check(pcm, bpm, num_bars, sample_rate) -> None:
    if not isinstance(pcm, np.ndarray) or pcm.dtype != np.int16:
        raise ListenError(f"PCM must be an int16 numpy array, not {getattr(pcm, 'dtype', type(pcm).__name__)}")
    if pcm.ndim != 2 or pcm.shape[1] < 1:
        raise ListenError(f"PCM must be 2-D (frames, channels), not of shape {pcm.shape}")
    if not (isinstance(sample_rate, int | np.integer) and sample_rate > 0):
        raise ListenError(f"sample_rate must be a positive integer, not {sample_rate!r}")
    if not (isinstance(bpm, int | float | np.number) and math.isfinite(bpm) and bpm > 0):
        raise ListenError(f"bpm must be a finite number > 0, not {bpm!r}")
    if not (isinstance(num_bars, int | np.integer) and num_bars >= 1):
        raise ListenError(f"num_bars must be an integer >= 1, not {num_bars!r}")
    bar = frame_at(STEPS_PER_BAR / STEPS_PER_BEAT, bpm, sample_rate)
    if pcm.shape[0] < bar:
        raise ListenError(f"the loop has {pcm.shape[0]} frames, less than one bar at {bpm} BPM ({bar} frames)")


def listen(pcm: np.ndarray, bpm: float, num_bars: int, sample_rate: int = 44100) -> Listening:
    """Listen to an int16 ``(frames, channels)`` loop named as ``num_bars`` bars of 4/4 at ``bpm``.

    A silent loop (no loudness, or below ``SILENT_LUFS``), one shorter than its bars by more than a 16th,
    or one off its grid gets its own ``unplaced-`` pattern id: its steps say nothing about a pattern.
    """
    _check(pcm, bpm, num_bars, sample_rate)
    frames = read_frames(pcm, decimation(sample_rate), *loudness_steps(sample_rate))  # one pass, for every measure
    loudness = frames_loudness(frames, sample_rate)
    pcm_digest = digest(pcm)
    steps = num_bars * STEPS_PER_BAR
    if loudness is None:
        strengths, fit, evidence = np.zeros((len(BANDS), steps), np.float32), 0.0, None
    else:
        strengths, fit, evidence = mono_onsets(
            frames_mono(frames, pcm.shape[1], sample_rate), bpm, num_bars, sample_rate
        )
    by_band = dict(zip(BANDS, strengths.astype(np.float32)))
    short = pcm.shape[0] < frame_at((steps - 1) / STEPS_PER_BEAT, bpm, sample_rate)
    if loudness is None or loudness < SILENT_LUFS or short or fit < OFF_GRID_FIT:
        pattern = unplaced_id(pcm_digest)
    else:
        pattern = pattern_id(dict(zip(BANDS, evidence)))
    peak, clipped = levels(pcm, frames)
    return Listening(
        onsets=by_band,
        grid_fit=fit,
        pattern=pattern,
        peak_dbfs=peak,
        loudness_lufs=loudness,
        clipped_samples=clipped,
        digest=pcm_digest,
    )


def find_facts(listenings: dict[str, Listening]) -> dict:
    """What a report prints about many loops: duplicate groups, clipped, silent and off-grid names, the names of those
    the analysis could not place (each its own pattern group: silent, off its grid, or short of its bars), pattern
    groups."""
    by_digest = defaultdict(list)
    for name, listening in listenings.items():
        by_digest[listening.digest].append(name)
    sizes = sorted(Counter(listening.pattern for listening in listenings.values()).values(), reverse=True)
    facts = {
        "duplicates": sorted(sorted(names) for names in by_digest.values() if len(names) > 1),
        "clipped": sorted(name for name, item in listenings.items() if item.clipped_samples >= CLIPPED_AT_LEAST),
        "silent": sorted(
            name for name, item in listenings.items() if item.loudness_lufs is None or item.loudness_lufs < SILENT_LUFS
        ),
        "off_grid": sorted(
            name
            for name, item in listenings.items()
            if item.grid_fit < OFF_GRID_FIT and item.loudness_lufs is not None and item.loudness_lufs >= SILENT_LUFS
        ),
        "unplaced": sorted(name for name, item in listenings.items() if item.pattern.startswith(UNPLACED)),
        "patterns": {"count": len(sizes), "sizes": sizes, "largest": sizes[0] if sizes else 0},
    }
    return facts
