import io
import itertools
import struct
import zlib

import librosa
import numpy as np
import pytest
import soundfile as sf

from poprok.archives.wav import wav_bytes
from poprok.sample import drum_synth as ds

SR = ds.SAMPLE_RATE
KIT = {36, 38, 42, 46, 49}
ALL = set(ds.NOTES)
BPMS = [100, 107, 115, 122.5, 130]


@pytest.fixture(scope="module")
def loop():
    return ds.render_loop(KIT, 115, seed=7)


def beat_hit_count(hits, bpm, bars=8):
    """How many beats have a hit on the sample nearest the beat's exact time."""
    positions = np.array([t * SR for t, _ in hits])
    exact = np.arange(bars * 4) * 60 / bpm * SR
    return int(sum(np.any(np.abs(positions - e) <= 0.5 + 1e-6) for e in exact))


def test_voices_cover_the_gm_notes_as_float32():
    assert set(ds.VOICES) == ALL
    for note, voice in ds.VOICES.items():
        assert voice.dtype == np.float32 and voice.ndim == 1, note
        assert 0 < np.abs(voice).max() <= 1, note
    assert ds.voices(SR) is ds.VOICES  # cached, not re-synthesised


@pytest.mark.parametrize("bpm", BPMS)
def test_duration_shape_dtype_are_exact(bpm):
    audio, hits = ds.render_loop(KIT, bpm, seed=1)
    assert audio.dtype == np.int16
    assert audio.shape == (round(8 * 4 * 60 / bpm * SR), 2)
    assert all(0 <= t * SR < len(audio) for t, _ in hits)


@pytest.mark.parametrize("bpm", BPMS)
@pytest.mark.parametrize("notes", [KIT, ALL, {36, 38}, {51}, {38, 49, 53}])
def test_plays_exactly_the_notes_and_every_beat(notes, bpm):
    audio, hits = ds.render_loop(notes, bpm, seed=3)
    assert {n for _, n in hits} == notes
    assert beat_hit_count(hits, bpm) == 32
    positions = [t * SR for t, _ in hits]
    assert np.allclose(positions, np.round(positions), atol=1e-6)  # integer samples
    assert min(t for t, _ in hits) == 0.0


def test_pattern_invariants_for_every_subset_of_notes():
    """Every non-empty note set: exactly those notes, every beat hit, valid velocities."""
    for i, notes in enumerate(set(c) for r in range(1, len(ALL) + 1) for c in itertools.combinations(sorted(ALL), r)):
        steps = ds.pattern(notes, rng=np.random.default_rng(i))
        assert {n for _, n, _ in steps} == notes
        assert set(range(0, 8 * 16, 4)) <= {s for s, _, _ in steps}
        assert all(1 <= v <= 127 for *_, v in steps)
        assert steps == sorted(steps)


def test_single_note_plays_every_beat_only():
    steps = ds.pattern({42}, bars=2)
    assert [s for s, _, _ in steps] == list(range(0, 32, 4))


def test_pattern_rejects_unknown_or_empty_notes():
    with pytest.raises(ValueError):
        ds.pattern({36, 99})
    with pytest.raises(ValueError):
        ds.pattern(set())


def test_loop_starts_with_a_hit_on_the_downbeat(loop):
    audio, hits = loop
    assert hits[0][0] == 0.0
    assert np.abs(audio[:64].astype(np.int32)).max() > 1000


def test_deterministic_per_seed():
    a = wav_bytes(ds.render_loop(KIT, 111, seed=5)[0], ds.SAMPLE_RATE)
    assert a == wav_bytes(ds.render_loop(KIT, 111, seed=5)[0], ds.SAMPLE_RATE)
    assert a != wav_bytes(ds.render_loop(KIT, 111, seed=6)[0], ds.SAMPLE_RATE)


def test_stereo_channels_differ(loop):
    audio, _ = loop
    left, right = audio.T.astype(np.float64)
    assert not np.array_equal(left, right)
    assert np.corrcoef(left, right)[0, 1] < 0.99


def test_peak_is_near_minus_one_dbfs_without_clipping(loop):
    audio, _ = loop
    peak = np.abs(audio.astype(np.int32)).max()
    assert peak < 32767
    assert -1.5 < 20 * np.log10(peak / 32768) < -0.5


def test_compresses_like_a_recording_not_like_silence_or_noise(loop):
    wav = wav_bytes(loop[0], ds.SAMPLE_RATE)
    assert 0.75 < len(zlib.compress(wav, 6)) / len(wav) < 0.95


def test_wav_bytes_round_trip(loop):
    audio, _ = loop
    wav = wav_bytes(audio, ds.SAMPLE_RATE)
    assert len(wav) == 44 + audio.nbytes
    assert wav[:4] == b"RIFF" and wav[8:16] == b"WAVEfmt " and wav[36:40] == b"data"
    assert struct.unpack("<HHI", wav[20:28]) == (1, 2, SR)
    back, sr = sf.read(io.BytesIO(wav), dtype="int16")
    assert sr == SR
    np.testing.assert_array_equal(back, audio)


def test_wav_bytes_mono_and_rejects_float():
    mono = np.arange(-5, 5, dtype=np.int16)
    back, _ = sf.read(io.BytesIO(wav_bytes(mono, 22050)), dtype="int16")
    np.testing.assert_array_equal(back, mono)
    with pytest.raises(TypeError):
        wav_bytes(mono.astype(np.float32), 22050)


@pytest.mark.parametrize("notes, bpm, seed", [(KIT, 100, 0), (ALL, 130, 1)])
def test_detected_onsets_lie_on_the_sixteenth_grid(notes, bpm, seed):
    audio, hits = ds.render_loop(notes, bpm, seed=seed)
    mono = audio.mean(axis=1, dtype=np.float32) / 32768
    onsets = librosa.onset.onset_detect(y=mono, sr=SR, units="time")
    step = 60 / bpm / 4
    assert len(onsets) >= 32  # at least as many as there are beats
    assert np.abs(onsets - np.round(onsets / step) * step).max() < 0.030
    hit_times = np.array([t for t, _ in hits])
    assert all(np.abs(hit_times - t).min() < 0.030 for t in onsets)
