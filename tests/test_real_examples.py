"""The real POP-ROK example loops (../shared/real-examples, CC BY 4.0 MP3 previews), packed as the archives hold them.

The previews are MP3s; the archives hold 16-bit WAV. Converting undoes what MP3 encoding added (about
25 ms of leading encoder delay and some end padding, per ATTRIBUTION.md) so the WAV is the 8-bar loop.
"""

from __future__ import annotations

import io
import json

import librosa
import numpy as np
import pytest
import soundfile as sf
from conftest import REAL_EXAMPLES

import pop_rok
from poprok.archives.tar_writer import TarGzWriter
from poprok.labels.names import parse_loop_name
from poprok.validation import validate

pytestmark = pytest.mark.skipif(not REAL_EXAMPLES.is_dir(), reason="../shared/real-examples is absent")


def mp3_to_loop_wav(path, bpm: int) -> tuple[np.ndarray, bytes]:
    """Decode, drop the encoder delay before the first hit, cut to 8 bars; 16-bit stereo WAV bytes."""
    samples, rate = sf.read(path, dtype="int16")
    assert rate == 44100 and samples.shape[1] == 2
    start = int(np.argmax(np.abs(samples).max(axis=1) > 0.01 * 32768))
    samples = samples[start : start + round(8 * 4 * 60 / bpm * rate)]
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format="WAV", subtype="PCM_16")
    return samples, buffer.getvalue()


@pytest.fixture(scope="module")
def real_archives(tmp_path_factory):
    folder = tmp_path_factory.mktemp("real")
    loops = {}
    with TarGzWriter(folder / pop_rok.ARCHIVES["wav"]) as tar:
        for mp3 in sorted(REAL_EXAMPLES.glob("*.mp3")):
            loop = parse_loop_name(mp3.stem)
            samples, wav = mp3_to_loop_wav(mp3, loop.bpm)
            tar.add(f"wav/{mp3.stem}.wav", wav)
            loops[mp3.stem] = samples
    with TarGzWriter(folder / pop_rok.ARCHIVES["json"]) as tar:
        labels = {name: {"pitch": [36, 38, 42], "bpm": parse_loop_name(name).bpm} for name in loops}
        tar.add("json/labels.json", json.dumps(labels).encode())
    return folder, loops


def test_real_loops_build_with_a_beat_grid_that_matches_their_onsets(real_archives, tmp_path):
    folder, loops = real_archives
    assert len(loops) >= 3
    dataset = pop_rok.load_pop_rok(split=pop_rok.ALL_SPLITS, data_dir=str(folder), cache_dir=str(tmp_path))
    assert sorted(dataset["name"]) == sorted(loops)
    for row in dataset:
        bpm = int(row["name"].split("bpm")[0])
        assert row["bpm"] == bpm
        assert row["duration"] == pytest.approx(8 * 4 * 60 / bpm, abs=1e-4)
        assert row["num_bars"] == 8
        assert len(row["beats"]) == 32 and row["downbeats"] == row["beats"][::4]
        mono = loops[row["name"]].astype(np.float32).mean(axis=1) / 32768
        onsets = librosa.onset.onset_detect(y=mono, sr=44100, units="time", hop_length=256)
        grid = np.concatenate([np.array(row["beats"])[:, None] + np.arange(4) * 15 / bpm]).ravel()
        distance_to_grid = np.abs(onsets[:, None] - grid[None, :]).min(axis=1)
        assert distance_to_grid.max() < 0.030, f"{row['name']}: an onset lies {distance_to_grid.max():.3f} s off the grid"
        beats_with_onset = np.abs(np.array(row["beats"])[:, None] - onsets[None, :]).min(axis=1) < 0.030
        assert beats_with_onset.mean() >= 0.9, f"{row['name']}: only {beats_with_onset.mean():.0%} of beats have an onset"
        decoded = row["audio"].get_all_samples()
        assert decoded.sample_rate == 44100 and decoded.data.shape == (2, len(loops[row["name"]]))


def test_real_previews_as_decoded_run_past_8_bars_and_keep_32_beats(tmp_path):
    """Untrimmed, the MP3 previews run 50-80 ms past their 8 bars: still 8 bars, 32 beats, and the report says so."""
    folder = tmp_path / "untrimmed"
    folder.mkdir()
    overhang = {}
    with TarGzWriter(folder / pop_rok.ARCHIVES["wav"]) as tar:
        for mp3 in sorted(REAL_EXAMPLES.glob("*.mp3")):
            samples, rate = sf.read(mp3, dtype="int16")
            bpm = parse_loop_name(mp3.stem).bpm
            overhang[mp3.stem] = len(samples) - round(8 * 4 * 60 / bpm * rate)
            buffer = io.BytesIO()
            sf.write(buffer, samples, rate, format="WAV", subtype="PCM_16")
            tar.add(f"wav/{mp3.stem}.wav", buffer.getvalue())
    with TarGzWriter(folder / pop_rok.ARCHIVES["json"]) as tar:
        labels = {name: {"pitch": [36, 38, 42], "bpm": parse_loop_name(name).bpm} for name in overhang}
        tar.add("json/labels.json", json.dumps(labels).encode())
    assert all(0.045 * 44100 < extra < 0.090 * 44100 for extra in overhang.values()), overhang
    dataset = pop_rok.load_pop_rok(split=pop_rok.ALL_SPLITS, data_dir=str(folder), cache_dir=str(tmp_path / "cache"))
    for row in dataset.select_columns(["name", "bpm", "num_bars", "beats", "downbeats"]):
        assert row["num_bars"] == 8
        assert row["beats"] == pytest.approx([k * 60 / row["bpm"] for k in range(32)], abs=1e-5)
        assert row["downbeats"] == row["beats"][::4]
    durations = validate(data_dir=str(folder)).to_json()["first_contact"]["durations_vs_8_bars"]
    assert durations["longer"] == len(overhang) and durations["exact"] == durations["shorter"] == 0
    assert durations["longest_overhang_ms"] == pytest.approx(max(overhang.values()) / 44.1, abs=0.01)
