"""The one beat-grid arithmetic: its array form rounds as its scalar form, for any tempo, rate and beats."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from poprok.grid import frame_at, frames_at


@given(
    bpm=st.floats(30, 300, allow_nan=False),
    rate=st.sampled_from([22050, 22050.0, 44100, 48000]),
    steps=st.lists(st.integers(0, 4096), min_size=1, max_size=64),
)
def test_frames_at_is_frame_at_for_each_beat(bpm, rate, steps):
    beats = np.asarray(steps) / 4
    assert frames_at(beats, bpm, rate).tolist() == [frame_at(b, bpm, rate) for b in beats]
