"""Grouped folds and train/validation/test, bar-aligned windows, and stereo: what a researcher reaches for first."""

from __future__ import annotations

import hashlib
import io
import json
import os

import datasets
import numpy as np
import pytest
import soundfile as sf
from split_helpers import filled_splits, names_by_split
from test_label_shapes import loop_wav, write_archives

import pop_rok
from poprok.sample.drum_synth import render_loop
from poprok.splits import track_fold

LAYOUTS = ["per_loop_sample", "aggregated_sample", "extracted_sample"]


def fold_by_formula(name: str) -> int:
    """The README's formula, written out again: sha256 of the name's four track digits, mod 10."""
    return int(hashlib.sha256(name[-4:].encode()).hexdigest(), 16) % 10


def undecoded(dataset):
    return dataset.cast_column("audio", datasets.Audio(decode=False)) if "audio" in dataset.features else dataset


# ------------------------------------------------------------------------------------------------- folds


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("config", ["default", "labels"])
def test_splits_hold_their_folds_and_every_loop_once(layout, config, request, tmp_path):
    folder, manifest = request.getfixturevalue(layout)
    splits = pop_rok.load_pop_rok(config=config, data_dir=str(folder), cache_dir=str(tmp_path))
    assert list(splits) == filled_splits(loop.track for loop in manifest)  # exactly the splits the folds fill
    assert {split: sorted(ds["name"]) for split, ds in splits.items()} == names_by_split(manifest)
    names = [name for split in splits.values() for name in split["name"]]
    assert sorted(names) == sorted(loop.name for loop in manifest)  # disjoint and complete
    for split, dataset in splits.items():
        assert dataset.num_rows > 0
        for name, fold in zip(dataset["name"], dataset["fold"]):
            assert fold == fold_by_formula(name)
            assert fold in {"train": range(8), "validation": [8], "test": [9]}[split]
    everything = pop_rok.load_pop_rok(
        split=pop_rok.ALL_SPLITS, config=config, data_dir=str(folder), cache_dir=str(tmp_path)
    )
    assert sorted(everything["name"]) == sorted(names)


def test_one_track_at_two_tempos_shares_its_fold_and_split(tmp_path):
    same_track = ["100bpm_pop_rok_drm_id_001_0777", "125bpm_pop_rok_drm_id_001_0777"]
    others = [f"110bpm_pop_rok_drm_id_001_{track:04d}" for track in range(1, 21)]
    names = [*same_track, *others]
    labels = [("all.json", json.dumps({name: {"pitch": [36]} for name in names}))]
    folder = write_archives(tmp_path / "data", labels, {name: loop_wav(name) for name in names})
    splits = pop_rok.load_pop_rok(config="labels", data_dir=str(folder), cache_dir=str(tmp_path / "cache"))
    where = {name: (split, fold) for split, ds in splits.items() for name, fold in zip(ds["name"], ds["fold"])}
    assert where[same_track[0]] == where[same_track[1]]
    assert len({fold for _, fold in where.values()}) > 3  # 21 tracks are not all in one fold


def test_folds_do_not_depend_on_which_loops_are_present(tmp_path):
    """A subset of the data (other loops, other order) gives each loop the same fold."""
    names = [f"{100 + t % 30}bpm_pop_rok_drm_id_001_{t:04d}" for t in range(40, 60)]
    subsets = {"all": names, "some": names[::-3]}
    folds = {}
    for tag, subset in subsets.items():
        labels = [("all.json", json.dumps({name: {"pitch": [36]} for name in subset}))]
        folder = write_archives(tmp_path / tag, labels, {name: loop_wav(name) for name in subset})
        ds = pop_rok.load_pop_rok(
            split=pop_rok.ALL_SPLITS, config="labels", data_dir=str(folder), cache_dir=str(tmp_path / f"c{tag}")
        )
        folds[tag] = dict(zip(ds["name"], ds["fold"]))
    assert all(folds["all"][name] == fold for name, fold in folds["some"].items())
    assert folds["all"] == {name: track_fold(int(name[-4:])) for name in names}


def bytes_read() -> int:
    """What this process has read through read() calls, all its threads (the kernel's ``rchar``)."""
    with open("/proc/self/io") as counters:
        return next(int(line.split()[1]) for line in counters if line.startswith("rchar:"))


@pytest.mark.skipif(not os.path.exists("/proc/self/io"), reason="needs Linux's per-process I/O counters")
def test_default_config_reads_the_wav_archive_once(aggregated_sample, tmp_path):
    """Three splits, one pass: preparing reads as many bytes as the WAV archive holds, not twice as many.

    A first build, into another cache, does the imports and fills the caches that a first build reads.
    """
    folder, manifest = aggregated_sample
    pop_rok.load_pop_rok(data_dir=str(folder), cache_dir=str(tmp_path / "first"))
    size = (folder / pop_rok.ARCHIVES["wav"]).stat().st_size
    before = bytes_read()
    splits = pop_rok.load_pop_rok(data_dir=str(folder), cache_dir=str(tmp_path / "second"))
    read = bytes_read() - before
    assert sum(split.num_rows for split in splits.values()) == len(manifest)
    assert size <= read < 1.5 * size, f"{read:,} bytes read for a {size:,}-byte archive"


@pytest.mark.parametrize("layout", ["per_loop_sample", "aggregated_sample"])
def test_streaming_a_split_gives_that_split(layout, request, tmp_path):
    """Each split that exists streams its prepared rows; a split the loops leave empty is a PopRokError."""
    folder, manifest = request.getfixturevalue(layout)
    prepared = pop_rok.load_pop_rok(data_dir=str(folder), cache_dir=str(tmp_path))
    present = filled_splits(loop.track for loop in manifest)
    assert list(prepared) == present
    for split in present:
        stream = pop_rok.PopRok(data_dir=str(folder)).as_streaming_dataset(split=split)
        assert list(undecoded(stream)) == list(undecoded(prepared[split]))
    for split in [s for s in ("train", "validation", "test") if s not in present]:
        with pytest.raises(pop_rok.PopRokError, match=rf"{split}.*the splits that exist: {', '.join(present)}"):
            pop_rok.PopRok(data_dir=str(folder)).as_streaming_dataset(split=split)


# ----------------------------------------------------------------------------------------------- windows


def _windows(dataset, bars):
    return dataset.map(
        pop_rok.bar_windows, batched=True, fn_kwargs={"bars": bars}, remove_columns=dataset.column_names
    )


@pytest.mark.parametrize("bars", [1, 2, 4, 8])
def test_bar_windows_are_bit_exact_and_hold_their_hits(bars, aggregated_sample, tmp_path):
    folder, manifest = aggregated_sample
    loops = pop_rok.load_pop_rok(split=pop_rok.ALL_SPLITS, data_dir=str(folder), cache_dir=str(tmp_path))
    windows = _windows(loops, bars)
    assert windows.features["audio"] == datasets.Audio(sampling_rate=44100)
    assert windows.num_rows == len(manifest) * 8 // bars
    rows = list(undecoded(windows))
    for loop in manifest:
        rendered, hits = render_loop(list(loop.notes), loop.bpm, bars=8, sample_rate=44100, seed=loop.seed)
        mine = sorted((r for r in rows if r["name"] == loop.name), key=lambda r: r["window"])
        assert [r["window"] for r in mine] == list(range(8 // bars))
        edges = [round(k * bars * 4 * 60 / loop.bpm * 44100) for k in range(8 // bars + 1)]
        for row, start, end in zip(mine, edges, edges[1:]):
            samples, rate = sf.read(io.BytesIO(row["audio"]["bytes"]), dtype="int16")
            assert rate == 44100 and samples.shape == (end - start, 2)
            assert np.array_equal(samples, rendered[start:end])  # bit-exact
            assert row["start"] == pytest.approx(start / 44100)
            assert (row["bpm"], row["fold"], row["notes"], row["num_bars"]) == (
                loop.bpm,
                track_fold(loop.track),
                list(loop.notes),
                bars,
            )
            assert row["beats"] == pytest.approx([i * 60 / loop.bpm for i in range(bars * 4)], abs=1e-5)
            assert row["downbeats"] == pytest.approx(row["beats"][::4], abs=1e-9)
            inside = [(t, note) for t, note in hits if start <= round(t * 44100) < end]
            assert inside, "every window of a drum loop holds hits"
            for t, _ in inside:  # each hit lands where the window's own grid puts it
                offset = round(t * 44100) - start
                assert np.abs(samples[offset : offset + 64].astype(int)).max() > 1000
        assert np.array_equal(
            np.concatenate([sf.read(io.BytesIO(r["audio"]["bytes"]), dtype="int16")[0] for r in mine]),
            rendered[: edges[-1]],
        )


def test_bar_windows_on_a_stream_and_on_decoded_rows(per_loop_sample, tmp_path):
    folder, _ = per_loop_sample
    prepared = _windows(pop_rok.load_pop_rok(split="train", data_dir=str(folder), cache_dir=str(tmp_path)), 2)
    stream = pop_rok.load_pop_rok(split="train", streaming=True, data_dir=str(folder))
    streamed = stream.map(
        pop_rok.bar_windows, batched=True, fn_kwargs={"bars": 2}, remove_columns=list(stream.features)
    )
    streamed = streamed.cast(pop_rok.window_features(stream.features))
    assert list(undecoded(streamed)) == list(undecoded(prepared))
    decoded = next(iter(streamed))["audio"].get_all_samples()
    assert decoded.data.shape[0] == 2 and decoded.sample_rate == 44100


def test_bar_windows_on_the_parquet_copy_equal_the_builders(per_loop_sample, tmp_path):
    """The script-free copy, read by load_dataset alone (FLAC-encoded here): the same windows, bit for bit."""
    from poprok.publish import pop_rok_copy

    folder, _ = per_loop_sample
    source = dict(data_dir=str(folder), cache_dir=str(tmp_path / "cache"))
    pop_rok_copy.export(tmp_path / "copy", config="default", audio_format="flac", **source)
    present = list(pop_rok.load_pop_rok(**source))
    assert datasets.get_dataset_split_names(str(tmp_path / "copy"), "default") == present
    for split in present:
        copied = datasets.load_dataset(str(tmp_path / "copy"), "default", split=split)
        prepared = pop_rok.load_pop_rok(split=split, **source)
        mine, theirs = list(undecoded(_windows(copied, 4))), list(undecoded(_windows(prepared, 4)))
        assert prepared.num_rows > 0
        assert len(mine) == len(theirs) == 2 * prepared.num_rows
        for a, b in zip(mine, theirs):
            assert np.array_equal(
                sf.read(io.BytesIO(a.pop("audio")["bytes"]))[0], sf.read(io.BytesIO(b.pop("audio")["bytes"]))[0]
            )
            assert a == b


def test_bar_windows_bad_input_names_the_row(aggregated_sample, tmp_path):
    folder, _ = aggregated_sample
    loops = undecoded(pop_rok.load_pop_rok(split="train", data_dir=str(folder), cache_dir=str(tmp_path)))
    batch = loops[:1]
    name = batch["name"][0]
    with pytest.raises(ValueError, match=f"{name}.*bpm"):
        pop_rok.bar_windows({k: v for k, v in batch.items() if k != "bpm"}, bars=2)
    with pytest.raises(ValueError, match=f"{name}.*3 bars.*2-bar"):
        pop_rok.bar_windows(dict(batch, num_bars=[3]), bars=2)
    with pytest.raises(ValueError, match="bars must be one of"):
        pop_rok.bar_windows(batch, bars=3)
    # 24-bit audio is refused by name, not cut down to 16 bits.
    deep = io.BytesIO()
    sf.write(deep, np.zeros((44100 * 8, 2)), 44100, format="WAV", subtype="PCM_24")
    with pytest.raises(ValueError, match=f"{name}.*24-bit samples: only 16-bit"):
        pop_rok.bar_windows(dict(batch, audio=[{"bytes": deep.getvalue(), "path": "deep.wav"}]), bars=2)
    # A loop shorter than its bars: only its whole windows, nothing padded.
    samples, _ = sf.read(io.BytesIO(batch["audio"][0]["bytes"]), dtype="int16")
    short = io.BytesIO()
    sf.write(short, samples[: len(samples) * 5 // 8], 44100, format="WAV", subtype="PCM_16")
    out = pop_rok.bar_windows(dict(batch, audio=[{"bytes": short.getvalue(), "path": "x.wav"}]), bars=2)
    assert list(out["window"]) == [0, 1]
    edges = [round(k * 2 * 4 * 60 / batch["bpm"][0] * 44100) for k in range(3)]
    assert edges[-1] <= len(samples) * 5 // 8 < edges[-1] + edges[1]  # two whole windows, not a third
    assert list(out["start"]) == pytest.approx([edges[0] / 44100, edges[1] / 44100], abs=1e-6)
    assert list(out["duration"]) == pytest.approx([(b - a) / 44100 for a, b in zip(edges, edges[1:])], abs=1e-6)
    for window, (a, b) in zip(out["audio"], zip(edges, edges[1:])):
        assert np.array_equal(sf.read(io.BytesIO(window["bytes"]), dtype="int16")[0], samples[a:b])


# ----------------------------------------------------------------------------------------------- stereo


def test_stereo_and_resampled_mono_as_the_readme_shows(aggregated_sample, tmp_path):
    folder, manifest = aggregated_sample
    ds = pop_rok.load_pop_rok(split="train", data_dir=str(folder), cache_dir=str(tmp_path))
    row = ds[0]
    loop = next(loop for loop in manifest if loop.name == row["name"])
    rendered, _ = render_loop(list(loop.notes), loop.bpm, bars=8, sample_rate=44100, seed=loop.seed)
    stereo = row["audio"].get_all_samples().data  # (2, n): both channels
    assert tuple(stereo.shape) == (2, len(rendered))
    np.testing.assert_array_equal(stereo.numpy().T, rendered / 32768.0)
    assert row["audio"]["array"].shape == (len(rendered),)  # datasets 5 averages the channels: mono
    np.testing.assert_allclose(row["audio"]["array"], rendered.mean(axis=1) / 32768.0, atol=1e-6)
    model_input = ds.cast_column("audio", datasets.Audio(sampling_rate=16000, num_channels=1))
    resampled = model_input[0]["audio"].get_all_samples()
    assert resampled.sample_rate == 16000 and resampled.data.shape[0] == 1
    assert abs(resampled.data.shape[1] - len(rendered) * 16000 / 44100) <= 2
