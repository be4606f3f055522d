"""Pattern ids: which drums play on which steps, whatever the kit, swaps, tempo, room or level.

An id is a pure function of one loop's pattern evidence (no clustering over the corpus), so it is the same on
every machine, in any order and while streaming: the kick's bleed taken out of the snare band, then per band the
median of each step over the bars cut at a fraction of the strongest, one bit per step, written as hex per band. A
key users can group on (the folds hash the track number: see the README).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from poprok.grid import STEPS_PER_BAR


@dataclass(frozen=True)
class Coarseness:
    """How finely ids tell patterns apart: fewer bands, a higher threshold or a 1-bar fold merge more.

    ``threshold``: a step is on when its strength reaches this fraction of the strongest step (one for every
    band, or one per band of ``bands``). ``bars``: the fold length (1: one bar repeated; 2: a two-bar phrase).
    ``fold``: ``"mean"`` cuts the mean over the folds, ``"median"`` their median (a crash or a fill in one bar
    does not move it); ``"vote"`` cuts each fold at its own strongest step and keeps the steps on in more than
    half of them. ``kick_bleed``: if set, this quantile of mid / low over the steps where the low band is on
    is taken as the kick's share in the mid band, and that share of the low band is taken out of the mid band
    first (a kick's click in a snare band turns its steps on there in some kits; a snare on a kick step stays).
    """

    bands: tuple[str, ...] = ("low", "mid", "high")
    threshold: float | tuple[float, ...] = 0.5
    bars: int = 1
    fold: str = "mean"
    kick_bleed: float | None = None


# Measured on the render corpus (benchmarks/pattern_curve.py): the lowest leak of the settings tried, with a mid
# cut of .4 as low (within 0.01 on each of six draws) but with larger groups.
SHIPPED = Coarseness(threshold=(0.45, 0.5, 0.3), bars=1, fold="median", kick_bleed=0.25)


def _without_kick_bleed(strengths: dict[str, np.ndarray], low_threshold: float, quantile: float) -> dict:
    """``strengths`` with the mid band's kick bleed taken out (see ``Coarseness.kick_bleed``), mid scaled to 1."""
    low, mid = (np.asarray(strengths[band], np.float64) for band in ("low", "mid"))
    if low.max() <= 0:
        return strengths
    on = (low > 0) & (low >= low_threshold * low.max())
    rest = np.maximum(mid - np.quantile(mid[on] / low[on], quantile) * low, 0)
    return {**strengths, "mid": rest / rest.max() if rest.max() > 0 else rest}


def pattern_id(strengths: dict[str, np.ndarray], coarseness: Coarseness = SHIPPED) -> str:
    """The id of the step pattern ``strengths`` (band -> a strength per 16th step) play: ``l8080-m808-haaaa``.

    Steps past the last whole fold are left out, so a loop of 8 bars and one of 4 playing the same bar agree.
    """
    thresholds = coarseness.threshold
    if not isinstance(thresholds, tuple):
        thresholds = (thresholds,) * len(coarseness.bands)
    if coarseness.kick_bleed is not None:
        strengths = _without_kick_bleed(strengths, thresholds[coarseness.bands.index("low")], coarseness.kick_bleed)
    steps = coarseness.bars * STEPS_PER_BAR
    parts = []
    for band, threshold in zip(coarseness.bands, thresholds, strict=True):
        values = np.asarray(strengths[band], np.float32)
        folds = values[: len(values) // steps * steps].reshape(-1, steps)
        if coarseness.fold == "vote":
            top = folds.max(axis=1, keepdims=True)
            bits = ((folds >= threshold * top) & (top > 0)).mean(axis=0) > 0.5
        else:
            folded = np.median(folds, axis=0) if coarseness.fold == "median" else folds.mean(axis=0)
            bits = folded >= threshold * folded.max() if folded.max() > 0 else np.zeros(steps, bool)
        number = int("".join("1" if bit else "0" for bit in bits), 2)
        parts.append(f"{band[0]}{number:0{steps // 4}x}")
    return "-".join(parts)


UNPLACED = "unplaced-"  # the prefix of the ids of loops the analysis cannot place


def unplaced_id(digest: str) -> str:
    """The id of a loop the analysis cannot place on a grid (silent, too short, off its grid): its own."""
    return f"{UNPLACED}{digest[:12]}"
