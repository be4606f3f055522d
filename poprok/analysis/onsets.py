"""Onset strength of a loop's kick, snare and cymbal bands at each 16th-note step of the grid of its named tempo.

Works on a mono downmix at half the sample rate (22.05 kHz keeps the cymbals' 5-11 kHz), one 23 ms FFT frame
per 11.6 ms hop: the 16th step of a 130 BPM loop is ten hops, a 32nd five, so a late start stands out.
"""

from __future__ import annotations

import functools
import itertools

import numpy as np
import scipy.fft

from poprok.analysis.frames import Frames, read_frames
from poprok.grid import STEPS_PER_BAR, STEPS_PER_BEAT, frame_at, frames_at

BANDS = ("low", "mid", "high")
# Kick below 150 Hz; snare and rimshot body and crack 150 Hz-2 kHz; hats, ride and crash above 5 kHz.
# 2-5 kHz is left out: every drum has some of it, so it tells them apart worst.
BAND_HZ = {"low": (30.0, 150.0), "mid": (150.0, 2000.0), "high": (5000.0, 11025.0)}
SUB_BANDS = 4  # log-spaced sub-bands per band, so one loud partial does not own its band's flux
N_FFT = 512
HOP = 256
ONSET_RATE = 22050
# A step's strength is the flux peak within these hops of the step (the flux of a centred frame peaks
# at the hit's hop or the one after it); the grid fit counts the flux peaks as near.
NEAR_HOPS = (-1, 1)
# Below this, a loop's onsets are not on the grid of its named tempo (measured: see the report in the tests).
OFF_GRID_FIT = 0.6
PEAK_FLOOR = 0.1


def decimation(sample_rate: int) -> int:
    """The whole factor that brings ``sample_rate`` nearest to ``ONSET_RATE`` (2 for 44.1 kHz)."""
    return max(1, round(sample_rate / ONSET_RATE))


def downmix(pcm: np.ndarray, sample_rate: int) -> np.ndarray:
    """Mono float32 at ``sample_rate / decimation`` of int16 ``(frames, channels)`` PCM: the mean of each run of
    frames over all channels.

    The mean of two frames is the cheapest anti-alias filter there is (a null at the Nyquist of the new rate);
    what it folds down from above 11 kHz is cymbal energy landing in the cymbal band.
    """
    return frames_mono(read_frames(pcm, decimation(sample_rate)), pcm.shape[1], sample_rate)


def frames_mono(frames: Frames, channels: int, sample_rate: int) -> np.ndarray:
    """``downmix`` from the loop's ``read_frames(pcm, decimation(sample_rate), ...)``."""
    return frames.mono_sums * np.float32(1 / (decimation(sample_rate) * channels * 32768))


@functools.cache
def band_matrix(rate: float) -> tuple[np.ndarray, list[int]]:
    """The sub-band summing matrix and the sub-band rows where each band starts.

    The matrix maps an FFT frame's squared real and imaginary parts, side by side as a float32 view of the
    complex spectrum lays them, to sub-band powers: no separate array for the real and the imaginary parts.
    """
    bin_hz = rate / N_FFT
    rows, starts = [], []
    for band in BANDS:
        low, high = BAND_HZ[band]
        edges = np.unique(np.round(np.geomspace(low, min(high, rate / 2), SUB_BANDS + 1) / bin_hz).astype(int))
        starts.append(len(rows))
        for lo, hi in itertools.pairwise(edges):
            row = np.zeros(N_FFT // 2 + 1, np.float32)
            row[max(lo, 1) : max(hi, lo + 1)] = 1.0
            rows.append(row)
    return np.repeat(np.array(rows).T, 2, axis=0), [*starts, len(rows)]


CHUNK_HOPS = 256  # FFT frames at a time: their windowed samples and spectrum (1 MB) stay in the core's cache


@functools.cache
def _window() -> np.ndarray:
    return np.hanning(N_FFT).astype(np.float32)


def band_power(mono: np.ndarray, rate: float) -> np.ndarray:
    """The power of each sub-band in each hop: ``(sub-bands, hops)`` float32.

    ``CHUNK_HOPS`` frames are windowed, transformed and summed at a time. Loop-wide, the windowed frames and
    their spectrum were two fresh 2.9 MB arrays a loop, and this took 2.5-2.9 times as long alone (measured
    here; ``listen`` as a whole got 1.055x faster).
    """
    matrix = band_matrix(rate)[0]
    frames = np.lib.stride_tricks.sliding_window_view(np.pad(mono, N_FFT // 2), N_FFT)[::HOP]
    power = np.empty((len(frames), matrix.shape[1]), np.float32)
    windowed = np.empty((min(CHUNK_HOPS, len(frames)), N_FFT), np.float32)
    for start in range(0, len(frames), CHUNK_HOPS):
        part = windowed[: min(CHUNK_HOPS, len(frames) - start)]
        np.multiply(frames[start : start + len(part)], _window(), out=part)
        spectrum = scipy.fft.rfft(part, axis=-1, workers=1).view(np.float32)
        np.matmul(np.square(spectrum, out=spectrum), matrix, out=power[start : start + len(part)])
    return power.T


def band_flux(power: np.ndarray, rate: float) -> np.ndarray:
    """Per band, the spectral flux (rise in dB, mean over its sub-bands) of each hop: ``(3, hops)`` float32.

    In dB a quiet hit rises as far as a loud one, so every hit of the band stands out (the onset columns).
    """
    decibels = 10 * np.log10(np.maximum(power, np.float32(1e-10)))
    decibels = np.maximum(decibels, decibels.max() - np.float32(80.0))
    rise = np.maximum(decibels[:, 1:] - decibels[:, :-1], 0)
    _, starts = band_matrix(rate)
    flux = np.zeros((len(BANDS), power.shape[1]), np.float32)
    for band, (first, end) in enumerate(itertools.pairwise(starts)):
        flux[band, 1:] = rise[first:end].mean(axis=0)
    return flux


def pattern_evidence(power: np.ndarray, rate: float) -> np.ndarray:
    """Per band, the rise in linear power of the sub-bands that tell its drum apart best: ``(3, hops)`` float32.

    Unlike the dB flux, a bleed (a kick's body in the snare band, a snare's noise in the cymbals') rises far less
    than the drum itself here. Low: all its sub-bands; mid: its top one (the snare's crack above the kick's
    body, 1-2 kHz); high: its top one (9-11 kHz), square-rooted so quieter 16ths stay above the cut. Measured
    on the render corpus: benchmarks/pattern_curve.py.
    """
    _, starts = band_matrix(rate)
    rise = np.maximum(power[:, 1:] - power[:, :-1], 0)
    evidence = np.zeros((len(BANDS), power.shape[1]), np.float32)
    evidence[0, 1:] = rise[starts[0] : starts[1]].sum(axis=0)
    evidence[1, 1:] = rise[starts[2] - 1]
    evidence[2, 1:] = np.sqrt(rise[starts[3] - 1])
    return evidence


def step_hops(bpm: float, num_bars: int, rate: float) -> np.ndarray:
    """The hop nearest each 16th step of ``num_bars`` bars at ``bpm``."""
    frames = frames_at(np.arange(num_bars * STEPS_PER_BAR) / STEPS_PER_BEAT, bpm, rate)
    return np.round(frames / HOP).astype(int)


def step_strengths(flux: np.ndarray, bpm: float, num_bars: int, rate: float) -> np.ndarray:
    """Per band, the flux peak near each step, scaled so the band's strongest step is 1: ``(3, steps)``."""
    hops = step_hops(bpm, num_bars, rate)
    short = max(0, hops[-1] + 1 - flux.shape[1])  # steps past a short loop's end have no onset
    padded = np.pad(flux, [(0, 0), (-NEAR_HOPS[0], NEAR_HOPS[1] + short)])
    near = np.stack([padded[:, hops + offset] for offset in range(NEAR_HOPS[1] - NEAR_HOPS[0] + 1)]).max(axis=0)
    peak = near.max(axis=1, keepdims=True)
    return np.divide(near, peak, out=np.zeros_like(near), where=peak > 0)


def grid_fit(flux: np.ndarray, bpm: float, num_bars: int, rate: float) -> float:
    """The share of the loop's onset peaks (weighted by height) that fall near a 16th step of its grid.

    Only the named bars count: a reverb tail or MP3 padding past them is not off the grid. Peaks under
    ``PEAK_FLOOR`` of the loudest are left out: a room's echoes and a sample's decay ripple are not hits.
    """
    hops = step_hops(bpm, num_bars, rate)
    end = min(flux.shape[1], frame_at(num_bars * STEPS_PER_BAR / STEPS_PER_BEAT, bpm, rate) // HOP)
    total = flux[:, :end].sum(axis=0)
    peaks = np.flatnonzero((total[1:-1] >= total[:-2]) & (total[1:-1] > total[2:])) + 1
    if peaks.size == 0 or total[peaks].max() <= 0:
        return 0.0
    peaks = peaks[total[peaks] >= PEAK_FLOOR * total[peaks].max()]
    weight = total[peaks]
    nearest = np.searchsorted(hops, peaks).clip(1, len(hops) - 1)
    before, after = peaks - hops[nearest - 1], peaks - hops[nearest]
    offset = np.where(np.abs(before) <= np.abs(after), before, after)
    near = (offset >= NEAR_HOPS[0]) & (offset <= NEAR_HOPS[1])
    return float(weight[near].sum() / weight.sum())


def onsets(pcm: np.ndarray, bpm: float, num_bars: int, sample_rate: int) -> tuple[np.ndarray, float, np.ndarray]:
    """Of an int16 ``(frames, channels)`` loop: per-band step strengths, grid fit and pattern evidence per step.

    Strengths and evidence are ``(3, num_bars * 16)``: the dB flux near each step (the onset columns) and
    ``pattern_evidence`` near each step (what pattern ids are cut from).
    """
    return mono_onsets(downmix(pcm, sample_rate), bpm, num_bars, sample_rate)


def mono_onsets(mono: np.ndarray, bpm: float, num_bars: int, sample_rate: int) -> tuple[np.ndarray, float, np.ndarray]:
    """``onsets`` from the loop's ``downmix``."""
    rate = sample_rate / decimation(sample_rate)
    power = band_power(mono, rate)
    flux = band_flux(power, rate)
    evidence = step_strengths(pattern_evidence(power, rate), bpm, num_bars, rate)
    return step_strengths(flux, bpm, num_bars, rate), grid_fit(flux, bpm, num_bars, rate), evidence
