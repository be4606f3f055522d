"""poprok.archives.pcm: 16-bit samples as stored, from WAV and FLAC files that libsndfile wrote (not this project)."""

from __future__ import annotations

import io

import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings

from poprok.archives.pcm import PcmError, read_pcm16

pcm_arrays = st.tuples(st.integers(1, 2000), st.integers(1, 3)).flatmap(
    lambda shape: hnp.arrays(np.int16, shape, elements=st.integers(-32768, 32767))
)


def written(samples, rate: int, kind: str, subtype: str = "PCM_16") -> bytes:
    out = io.BytesIO()
    sf.write(out, samples, rate, format=kind, subtype=subtype)
    return out.getvalue()


@settings(max_examples=40, deadline=None)
@given(samples=pcm_arrays, rate=st.sampled_from([8000, 22050, 44100, 48000]), kind=st.sampled_from(["WAV", "FLAC"]))
def test_samples_come_back_as_stored(samples, rate, kind):
    pcm = read_pcm16(written(samples, rate, kind))
    assert (pcm.kind, pcm.sample_rate, pcm.channels) == (kind, rate, samples.shape[1])
    assert pcm.samples.dtype == np.int16
    np.testing.assert_array_equal(pcm.samples, samples)


def test_a_wav_is_read_in_place():
    data = bytearray(written(np.arange(200, dtype=np.int16).reshape(100, 2), 44100, "WAV"))
    pcm = read_pcm16(data)
    data[-2:] = (7).to_bytes(2, "little")  # the last sample, changed in the file's bytes
    assert pcm.samples[-1, -1] == 7


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (written(np.zeros((100, 2)), 44100, "WAV", "PCM_24"), "24-bit samples: only 16-bit"),
        (written(np.zeros((100, 2)), 44100, "WAV", "FLOAT"), "not PCM"),
        (written(np.zeros((100, 2)), 44100, "FLAC", "PCM_24"), "FLAC of PCM_24 samples: only 16-bit"),
        (written(np.zeros((4000, 2), np.int16), 44100, "WAV")[:-100], "truncated"),
        (b"ID3\x04" + bytes(100), "neither WAV nor FLAC"),
        (b"fLaC" + bytes(100), "corrupt or unreadable FLAC"),
    ],
    ids=["wav-24-bit", "wav-float", "flac-24-bit", "wav-truncated", "mp3", "flac-garbage"],
)
def test_other_samples_and_broken_files_are_refused_by_name(data, message):
    with pytest.raises(PcmError, match=message):
        read_pcm16(data)
