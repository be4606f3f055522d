"""The analysis' one decimation (run sums of frames) and the sample levels, on PCM drawn with hypothesis."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from poprok.analysis.facts import levels
from poprok.analysis.frames import as_floats, run_sums

pcm_arrays = st.tuples(st.integers(1, 400), st.integers(1, 3)).flatmap(
    lambda shape: hnp.arrays(np.int16, shape, elements=st.integers(-32768, 32767))
)


@settings(max_examples=60, deadline=None)
@given(pcm=pcm_arrays, factor=st.integers(1, 8), lead=st.integers(1, 3))
def test_run_sums_are_the_exact_integer_sums_of_each_whole_run(pcm, factor, lead):
    frames = pcm.shape[0] // lead * lead
    rows = pcm[:frames].reshape(lead, frames // lead, pcm.shape[1])  # a leading axis, as the loudness steps
    runs = rows.shape[1] // factor
    expected = rows[:, : runs * factor].astype(np.int64).reshape(lead, runs, factor, pcm.shape[1]).sum(axis=2)
    per_channel = run_sums(as_floats(rows), factor)
    mono = run_sums(as_floats(rows), factor, mono=True)
    assert per_channel.dtype == mono.dtype == np.float32
    np.testing.assert_array_equal(per_channel, expected)
    np.testing.assert_array_equal(mono, expected.sum(axis=-1))


@settings(max_examples=60, deadline=None)
@given(pcm=pcm_arrays)
def test_levels_give_the_sample_peak_and_the_samples_at_full_scale(pcm):
    peak, clipped = levels(pcm)
    wide = pcm.astype(np.int64)
    assert clipped == int(np.sum((wide == 32767) | (wide == -32768)))
    top = int(np.abs(wide).max())
    if top == 0:
        assert peak is None
    else:
        assert math.isclose(peak, 20 * math.log10(top / 32768), abs_tol=1e-9)
