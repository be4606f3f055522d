"""Listening inside builds: the analysis columns, the audio facts report and captions, on archives written by hand.

The loops are rendered here (a numpy kit of decaying sines and filtered noise, not the sample generator's), with
faults whose truth is known: an exact duplicate, a clipped loop, a silent loop and one named at a wrong tempo.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import tarfile
from pathlib import Path

import datasets
import numpy as np
import pytest

import pop_rok
from poprok.analysis import CLIPPED_AT_LEAST, OFF_GRID_FIT, SILENT_LUFS
from poprok.archives.tar_writer import TarGzWriter
from poprok.archives.wav import wav_bytes
from poprok.publish.pop_rok_copy import export

ROOT = Path(__file__).resolve().parents[1]
RATE = 44100
LISTENING = ("onsets", "grid_fit", "pattern", "peak_dbfs", "loudness_lufs", "clipped_samples")


def render(bpm: float, bars: int = 8, gain: float = 0.5, seed: int = 0) -> np.ndarray:
    """Kick on 1 and 3, snare on 2 and 4, closed hat on 8ths: int16 stereo, exactly ``bars`` bars long."""
    rng = np.random.default_rng(seed)
    frames = round(bars * 4 * 60 / bpm * RATE)
    t = np.arange(int(0.25 * RATE)) / RATE
    kick = np.sin(2 * np.pi * 55 * t) * np.exp(-t / 0.08)
    snare = rng.standard_normal(t.size) * np.exp(-t / 0.05) * 0.6
    hat = np.diff(rng.standard_normal(t.size + 1)) * np.exp(-t / 0.015) * 0.2
    mix = np.zeros(frames)
    for eighth in range(bars * 8):
        start = round(eighth / 2 * 60 / bpm * RATE)
        voices = [hat] + ([kick] if eighth % 4 == 0 else []) + ([snare] if eighth % 4 == 2 else [])
        for voice in voices:
            part = voice[: frames - start]
            mix[start : start + part.size] += part
    mix *= gain / np.abs(mix).max()
    pcm = np.clip(np.round(mix * 32767), -32768, 32767).astype(np.int16)
    return np.stack([pcm, pcm], axis=1)


def loop_name(bpm: int, track: int) -> str:
    return f"{bpm}bpm_pop_rok_drm_id_001_{track:04d}"


GOOD = loop_name(120, 11)
DUPLICATE = loop_name(120, 12)
CLIPPED = loop_name(120, 13)
SILENT = loop_name(120, 14)
WRONG_TEMPO = loop_name(120, 15)  # played at 112


def faulty_loops() -> dict[str, np.ndarray]:
    good = render(120)
    loud = np.clip(good.astype(np.int32) * 8, -32768, 32767).astype(np.int16)
    return {
        GOOD: good,
        DUPLICATE: good.copy(),
        CLIPPED: loud,
        SILENT: np.zeros_like(good),
        WRONG_TEMPO: render(112, bars=9)[: len(good)],  # 8 bars' worth of samples at the named 120 BPM
    }


def write_archives(folder: Path, loops: dict[str, np.ndarray]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    with TarGzWriter(folder / pop_rok.ARCHIVES["wav"], 1) as tar:
        for name, pcm in loops.items():
            tar.add(f"{name}.wav", wav_bytes(pcm, RATE))
    labels = {name: {"pitch": [36, 38, 42], "bpm": int(name[:3])} for name in loops}
    with TarGzWriter(folder / pop_rok.ARCHIVES["json"], 1) as tar:
        tar.add("pop_rok_drm_id_001.json", json.dumps(labels).encode())
    return folder


@pytest.fixture(scope="module")
def faulty(tmp_path_factory):
    folder = write_archives(tmp_path_factory.mktemp("faulty"), faulty_loops())
    cache = str(tmp_path_factory.mktemp("cache"))
    builder = pop_rok.PopRok(data_dir=str(folder), cache_dir=cache)
    builder.download_and_prepare()
    dataset = builder.as_dataset(split=pop_rok.ALL_SPLITS)
    rows = {row["name"]: row for row in dataset.remove_columns("audio")}
    return folder, builder, dataset, rows, cache


def test_a_strict_build_keeps_every_faulty_loop(faulty):
    _, _, _, rows, _ = faulty
    assert sorted(rows) == sorted(faulty_loops()), "audio facts are reported, never fatal"


def test_every_row_carries_finite_listening_columns(faulty):
    _, _, _, rows, _ = faulty
    for name, row in rows.items():
        assert set(LISTENING) <= set(row), name
        assert set(row["onsets"]) == {"low", "mid", "high"}
        for values in row["onsets"].values():
            assert len(values) == row["num_bars"] * 16
            assert all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in values), name
        assert math.isfinite(row["grid_fit"]) and 0.0 <= row["grid_fit"] <= 1.0
        assert (row["peak_dbfs"] is None) == (name == SILENT), "digital silence has no peak level"
        assert row["peak_dbfs"] is None or math.isfinite(row["peak_dbfs"])


def test_the_columns_say_what_the_faults_are(faulty):
    _, _, _, rows, _ = faulty
    assert rows[SILENT]["loudness_lufs"] is None and rows[SILENT]["clipped_samples"] == 0
    assert rows[SILENT]["pattern"].startswith("unplaced-")
    assert rows[CLIPPED]["clipped_samples"] >= CLIPPED_AT_LEAST and rows[CLIPPED]["peak_dbfs"] == 0.0
    assert rows[GOOD]["clipped_samples"] == 0
    assert rows[GOOD]["peak_dbfs"] == pytest.approx(20 * math.log10(0.5), abs=0.01)
    assert rows[GOOD]["grid_fit"] >= OFF_GRID_FIT > rows[WRONG_TEMPO]["grid_fit"]
    assert rows[GOOD]["loudness_lufs"] > SILENT_LUFS
    duplicate = rows[DUPLICATE]
    assert {k: duplicate[k] for k in LISTENING} == {k: rows[GOOD][k] for k in LISTENING}


def test_the_report_lists_each_fault_under_its_kind(faulty):
    folder, builder, _, rows, _ = faulty
    result = subprocess.run(
        [sys.executable, str(ROOT / "pop_rok.py"), "validate", "--data-dir", str(folder), "--json"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr  # facts are not problems
    facts = json.loads(result.stdout)["first_contact"]["audio_facts"]
    assert facts["duplicates"] == [sorted([GOOD, DUPLICATE])]
    assert facts["clipped"] == [CLIPPED]
    assert facts["silent"] == [SILENT]
    assert facts["off_grid"] == [WRONG_TEMPO]
    assert facts["unplaced"] == sorted([SILENT, WRONG_TEMPO])
    patterns = [row["pattern"] for row in rows.values()]
    assert facts["patterns"]["count"] == len(set(patterns))
    assert facts["patterns"]["largest"] == max(patterns.count(p) for p in patterns) >= 2  # the duplicates'
    description = builder.info.description
    for name in (GOOD, DUPLICATE, CLIPPED, SILENT, WRONG_TEMPO):
        assert name in description, name


def test_captions_come_from_the_labels(faulty):
    _, _, _, rows, _ = faulty
    expected = "pop rock drum loop, 120 BPM, 8 bars of 4/4: kick, snare, closed hat"
    assert {row["caption"] for row in rows.values()} == {expected}


def test_the_parquet_copy_carries_the_same_columns(faulty, tmp_path):
    folder, _, _, rows, cache = faulty
    out = tmp_path / "copy"
    export(out, "default", data_dir=str(folder), cache_dir=cache)
    # Its own datasets cache: datasets keys a local folder's cache on the card's dataset_info and the folder's name,
    # so another copy named "copy" with the same byte sizes would be read back from a stale cache.
    copy = datasets.load_dataset(str(out), "default", split="all", cache_dir=str(tmp_path / "hf"))
    copy = copy.remove_columns("audio")
    assert {row["name"]: row for row in copy} == rows


def test_listening_is_the_same_with_num_proc(tmp_path):
    """Extracted files over two processes give the rows one process gives: listening is per loop."""
    loops = {loop_name(100 + 3 * i, 40 + i): render(100 + 3 * i, seed=i) for i in range(4)}
    archives = write_archives(tmp_path / "archives", loops)
    extracted = tmp_path / "extracted"
    for name in pop_rok.ARCHIVES.values():
        with tarfile.open(archives / name) as tar:
            tar.extractall(extracted, filter="data")
    results = []
    for num_proc in (1, 2):
        builder = pop_rok.PopRok(data_dir=str(extracted), cache_dir=str(tmp_path / f"cache{num_proc}"))
        builder.download_and_prepare(num_proc=num_proc)
        dataset = builder.as_dataset(split=pop_rok.ALL_SPLITS).remove_columns("audio")
        results.append({row["name"]: row for row in dataset})
    assert results[0] == results[1]
    assert sorted(results[0]) == sorted(loops)


def test_the_readme_filter_recipe_keeps_the_clean_loops(faulty):
    _, _, dataset, _, _ = faulty

    def keep(clipped, lufs, fit):
        return clipped < 10 and lufs is not None and lufs >= -50 and fit >= 0.6

    clean = dataset.filter(keep, input_columns=["clipped_samples", "loudness_lufs", "grid_fit"])
    assert sorted(clean["name"]) == sorted([GOOD, DUPLICATE])
