"""Pattern ids: which drums play on which steps, whatever the kit, swaps, tempo, room or level; and their fold.

An id is a pure function of one loop's step strengths (no clustering over the corpus), so it is the same on
every machine, in any order and while streaming: the strengths folded over bars, cut at a fraction of each
band's strongest step into one bit per step, written as hex per band. A key users can group on (the
folds hash the track number: see the README).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from poprok.grid import STEPS_PER_BAR


@dataclass(frozen=True)
class Coarseness:
    """How finely ids tell patterns apart: fewer bands, a higher threshold or a 1-bar fold merge more.

    ``threshold``: a step is on when its folded strength reaches this fraction of the band's strongest step.
    ``bars``: the fold length (1: one bar repeated; 2: a two-bar phrase).
    """

    bands: tuple[str, ...] = ("low", "mid", "high")
    threshold: float = 0.5
    bars: int = 1


# Measured on the render corpus (tests/test_analysis.py): the lowest leak of the three-band settings.
SHIPPED = Coarseness(threshold=0.4, bars=2)


def pattern_id(strengths: dict[str, np.ndarray], coarseness: Coarseness = SHIPPED) -> str:
    """The id of the step pattern ``strengths`` (band -> a strength per 16th step) play: ``l80808080-m0808...``.

    Steps past the last whole fold are left out, so a loop of 8 bars and one of 4 playing the same bar agree.
    """
    parts = []
    for band in coarseness.bands:
        steps = coarseness.bars * STEPS_PER_BAR
        values = np.asarray(strengths[band], np.float32)
        folded = values[: len(values) // steps * steps].reshape(-1, steps).mean(axis=0)
        top = folded.max()
        bits = folded >= coarseness.threshold * top if top > 0 else np.zeros(steps, bool)
        number = int("".join("1" if bit else "0" for bit in bits), 2)
        parts.append(f"{band[0]}{number:0{steps // 4}x}")
    return "-".join(parts)


def unplaced_id(digest: str) -> str:
    """The id of a loop the analysis cannot place on a grid (silent, too short, off its grid): its own."""
    return f"unplaced-{digest[:12]}"
