"""Pattern ids from hand-written step strengths: the kick's bleed into the snare band is taken out, a snare stays."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from poprok.analysis import SHIPPED, Coarseness, pattern_id

BARS = 8


def _strengths(kicks: tuple[int, ...], snares: tuple[int, ...], bleed: float, hats: tuple[int, ...]) -> dict:
    """Step strengths of ``BARS`` bars: the kick at 1 and ``bleed`` of it in mid, the snare adding 1 there."""
    low, mid, high = (np.zeros(16) for _ in range(3))
    low[list(kicks)] = 1.0
    mid[list(kicks)] = bleed
    mid[list(snares)] += 1.0
    high[list(hats)] = 1.0
    bands = zip(("low", "mid", "high"), (low, mid, high))
    return {band: np.tile(values / max(values.max(), 1.0), BARS) for band, values in bands}


def _hex(steps: tuple[int, ...]) -> str:
    return f"{sum(1 << (15 - step) for step in steps):04x}"


@given(
    kicks=st.sampled_from([(0, 8), (0, 6, 8), (0, 4, 8, 12), (0, 3, 8, 10), (0, 10)]),
    snares=st.sampled_from([(4, 12), (8,), (4, 12, 15)]),
    bleed=st.floats(0.0, 0.9),
    hats=st.sampled_from([tuple(range(0, 16, 2)), tuple(range(16)), (0, 4, 8, 12)]),
)
def test_the_snare_band_holds_the_snare_steps_whatever_the_kick_bleeds_into_it(kicks, snares, bleed, hats):
    """Most kick steps carry no snare in these beats (the quantile's premise); the bleed is any share of the kick."""
    assert pattern_id(_strengths(kicks, snares, bleed, hats)) == f"l{_hex(kicks)}-m{_hex(snares)}-h{_hex(hats)}"


def test_without_the_bleed_taken_out_a_loud_bleed_turns_the_kick_steps_on_in_the_snare_band():
    strengths = _strengths((0, 8), (4, 12), 0.6, tuple(range(0, 16, 2)))
    before = Coarseness(threshold=SHIPPED.threshold, fold=SHIPPED.fold)
    assert pattern_id(strengths, before).split("-")[1] == f"m{_hex((0, 4, 8, 12))}"
    assert pattern_id(strengths).split("-")[1] == f"m{_hex((4, 12))}"


def test_a_loop_without_a_kick_keeps_its_snare_band_as_it_is():
    strengths = _strengths((), (4, 12), 0.0, (0, 4, 8, 12))
    assert pattern_id(strengths) == f"l0000-m{_hex((4, 12))}-h{_hex((0, 4, 8, 12))}"
