"""Pattern ids: which drums play on which steps, whatever the kit, swaps, tempo, room or level; and their fold.

An id is a pure function of one loop's pattern evidence (no clustering over the corpus), so it is the same on
every machine, in any order and while streaming: per band, the median of each step over the bars cut at a
fraction of the strongest, one bit per step, written as hex per band. A key users
can group on (the folds hash the track number: see the README).
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
    half of them.
    """

    bands: tuple[str, ...] = ("low", "mid", "high")
    threshold: float | tuple[float, ...] = 0.5
    bars: int = 1
    fold: str = "mean"


# Measured on the render corpus (benchmarks/pattern_curve.py): the lowest leak of the settings tried.
SHIPPED = Coarseness(threshold=(0.45, 0.5, 0.3), bars=1, fold="median")


def pattern_id(strengths: dict[str, np.ndarray], coarseness: Coarseness = SHIPPED) -> str:
    """The id of the step pattern ``strengths`` (band -> a strength per 16th step) play: ``l8080-m808-haaaa``.

    Steps past the last whole fold are left out, so a loop of 8 bars and one of 4 playing the same bar agree.
    """
    thresholds = coarseness.threshold
    if not isinstance(thresholds, tuple):
        thresholds = (thresholds,) * len(coarseness.bands)
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


def unplaced_id(digest: str) -> str:
    """The id of a loop the analysis cannot place on a grid (silent, too short, off its grid): its own."""
    return f"unplaced-{digest[:12]}"
