"""The analysis' one decimation (run sums of frames) and the sample levels, on PCM drawn with hypothesis."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from poprok.analysis.facts import levels
from poprok.analysis.frames import read_frames, run_sums

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
    per_channel = run_sums(rows.astype(np.float32), factor)
    mono = run_sums(rows.astype(np.float32), factor, mono=True)
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


@settings(max_examples=60, deadline=None)
@given(
    pcm=st.tuples(st.integers(1, 3000), st.integers(1, 3)).flatmap(
        lambda shape: hnp.arrays(np.int16, shape, elements=st.integers(-32768, 32767))
    ),
    mono_factor=st.one_of(st.none(), st.integers(1, 4)),
    step=st.one_of(st.none(), st.integers(5, 60)),
    step_factor=st.integers(1, 4),
)
def test_read_frames_chunk_by_chunk_gives_what_whole_loop_sums_give(pcm, mono_factor, step, step_factor):
    """Chunks of CHUNK_STEPS steps: a draw of up to 3,000 frames spans several of them."""
    frames = read_frames(pcm, mono_factor, step, step_factor)
    wide, channels = pcm.astype(np.int64), pcm.shape[1]
    step_frames = step or 0
    steps = len(pcm) // step if step else 0
    runs = step_frames // step_factor
    in_steps = wide[: steps * step_frames].reshape(steps, step_frames, channels)
    # float32 sums of squares above 2^24 round: the energy is a float32 estimate, within a sum's rounding bound
    # (one float32 rounding per term), the sums below are exact
    bound = max(1, step_frames * channels) * 2.0**-24
    np.testing.assert_allclose(frames.step_energy, (in_steps**2).sum(axis=(1, 2)), rtol=bound)
    expected = in_steps[:, : runs * step_factor].reshape(steps, runs, step_factor, channels).sum(axis=2)
    np.testing.assert_array_equal(frames.step_sums, expected)
    mono_runs, run = (len(pcm) // mono_factor, mono_factor) if mono_factor else (0, 1)
    expected_mono = wide[: mono_runs * run].reshape(mono_runs, run * channels).sum(axis=1)
    np.testing.assert_array_equal(frames.mono_sums, expected_mono)
    assert (frames.low, frames.high) == (min(0, int(wide.min())), max(0, int(wide.max())))
