"""Any subset of POP-ROK, written by hand: the same rows through the builder, the Parquet copy and load_dataset.

Archives here are written with ``TarGzWriter`` and ``wav_bytes`` (never ``make_sample``): 1-12 loops with
arbitrary track numbers (sometimes all in one fold), in both layouts, read in both configs. The splits a
build declares must be exactly those the loops' folds fill; an absent split is a PopRokError listing the
present ones, and bad subsets are PopRokErrors naming what is missing, never an error from datasets' internals.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

import datasets
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from split_helpers import filled_splits

import pop_rok
from poprok.archives.tar_writer import TarGzWriter
from poprok.archives.wav import wav_bytes
from poprok.publish import pop_rok_copy
from poprok.sample.drum_synth import render_loop
from poprok.splits import FOLD_SPLITS, track_fold

WAV, JSON = pop_rok.ARCHIVES["wav"], pop_rok.ARCHIVES["json"]
TRACKS_BY_FOLD = {fold: [t for t in range(1, 3000) if track_fold(t) == fold] for fold in range(10)}
SETTINGS = settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def loop_name(track: int, bpm: int) -> str:
    return f"{bpm}bpm_pop_rok_drm_id_001_{track:04d}"


def loop_audio(name: str, pitch: list[int], seed: int) -> bytes:
    """One bar of rendered drums at the name's tempo (the builder listens to a loop: it must hold a bar)."""
    audio, _ = render_loop(sorted(set(pitch)), int(name.split("bpm")[0]), bars=1, sample_rate=44100, seed=seed)
    return wav_bytes(audio, 44100)


def write_subset(folder: Path, loops: list[dict], layout: str, wavs_for=None) -> Path:
    """The two archives for ``loops`` (name, pitch, bpm); ``wavs_for``: the names given a WAV (default: all)."""
    folder.mkdir(parents=True, exist_ok=True)
    per_loop = layout == "per-loop"
    wav_names = [loop["name"] for loop in loops] if wavs_for is None else wavs_for
    pitches = {loop["name"]: loop["pitch"] for loop in loops}
    with TarGzWriter(folder / WAV, compresslevel=1) as tar:
        for i, name in enumerate(wav_names):
            audio = loop_audio(name, pitches.get(name, [36, 38, 42]), i)
            tar.add(f"pop_rok_drm_id_001_wav/{name}.wav" if per_loop else f"{name}.wav", audio)
    with TarGzWriter(folder / JSON, compresslevel=1) as tar:
        labels = {loop["name"]: {"pitch": loop["pitch"], "bpm": loop["bpm"]} for loop in loops}
        if per_loop:
            for name, label in labels.items():
                tar.add(f"pop_rok_drm_id_001_json/json/{name}.json", json.dumps({name: label}).encode())
        elif labels:
            tar.add("pop_rok_drm_id_001.json", json.dumps(labels).encode())
    return folder


def expected_row(loop: dict) -> dict:
    track = int(loop["name"][-4:])
    return {
        "name": loop["name"],
        "track": track,
        "fold": track_fold(track),
        "bpm": loop["bpm"],
        "genre": "pop",
        "subgenre": "rock",
        "pitch": loop["pitch"],
        "notes": sorted(set(loop["pitch"])),
    }


def undecoded_rows(dataset) -> list[dict]:
    if "audio" in dataset.features:
        dataset = dataset.cast_column("audio", datasets.Audio(sampling_rate=44100, decode=False))
    return sorted(dataset, key=lambda row: row["name"])


any_tracks = st.lists(st.integers(1, 9999), min_size=1, max_size=12, unique=True)
one_fold_tracks = st.sampled_from(range(10)).flatmap(
    lambda fold: st.lists(st.sampled_from(TRACKS_BY_FOLD[fold]), min_size=1, max_size=12, unique=True)
)


@st.composite
def subsets(draw):
    tracks = draw(st.one_of(any_tracks, one_fold_tracks))
    loops = []
    for track in tracks:
        bpm = draw(st.integers(100, 130))
        pitch = draw(st.lists(st.sampled_from(sorted(pop_rok.KEY_MAP)), min_size=1, max_size=5))
        loops.append({"name": loop_name(track, bpm), "pitch": pitch, "bpm": bpm})
    return loops


@SETTINGS
@given(loops=subsets(), layout=st.sampled_from(["per-loop", "aggregated"]))
def test_any_subset_gives_the_same_rows_every_way(loops, layout):
    present = filled_splits(int(loop["name"][-4:]) for loop in loops)
    expected = {split: [] for split in present}
    for loop in sorted(loops, key=lambda loop: loop["name"]):
        expected[FOLD_SPLITS[track_fold(int(loop["name"][-4:]))]].append(expected_row(loop))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = write_subset(tmp / "data", loops, layout)
        source = dict(data_dir=str(data), cache_dir=str(tmp / "cache"))
        pop_rok_copy.export(tmp / "copy", config="all", **source)
        for config in ("default", "labels"):
            builder = pop_rok.PopRok(config_name=config, **source)
            builder.download_and_prepare()
            assert list(builder.info.splits) == present
            assert sum(split.num_examples for split in builder.info.splits.values()) == len(loops)
            assert datasets.get_dataset_split_names(str(tmp / "copy"), config) == present
            copied = datasets.load_dataset(str(tmp / "copy"), config)
            assert list(copied) == present
            for split in present:
                built = undecoded_rows(builder.as_dataset(split=split))
                assert [{k: row[k] for k in expected_row(loops[0])} for row in built] == expected[split]
                assert undecoded_rows(copied[split]) == built, (config, split)
                if config == "default":
                    assert all(row["audio"]["bytes"][:4] == b"RIFF" for row in built)
                else:
                    assert "audio" not in built[0]
            for split in [s for s in ("train", "validation", "test") if s not in present]:
                assert_absent_split(split, present, config, source)


def assert_absent_split(split: str, present: list[str], config: str, source: dict) -> None:
    """An absent split is a PopRokError naming it and listing the present ones, every way it is asked for."""
    listing = rf"split\(s\) {split} hold no loop.*the splits that exist: {', '.join(present)}"
    with pytest.raises(pop_rok.PopRokError, match=listing):
        pop_rok.PopRok(config_name=config, **source).as_dataset(split=split)
    with pytest.raises(pop_rok.PopRokError, match=listing):
        pop_rok.load_pop_rok(split=split, config=config, **source)
    with pytest.raises(pop_rok.PopRokError, match=listing):
        pop_rok.PopRok(config_name=config, data_dir=source["data_dir"]).as_streaming_dataset(split=split)


# ------------------------------------------------------------------------------------------- bad subsets


def raised_by(call) -> pop_rok.PopRokError:
    """The PopRokError ``call`` raises (a plain ValueError from datasets' internals fails the test)."""
    try:
        call()
    except pop_rok.PopRokError as err:
        return err
    except Exception as err:  # noqa: BLE001 - anything else is the bug under test
        pytest.fail(f"expected a PopRokError, got {type(err).__name__}: {err}")
    pytest.fail("expected a PopRokError, nothing was raised")


@pytest.mark.parametrize("layout", ["per-loop", "aggregated"])
@pytest.mark.parametrize("config", ["default", "labels"])
def test_an_empty_label_archive_names_it(layout, config, tmp_path):
    data = write_subset(tmp_path / "data", [], layout, wavs_for=[loop_name(1, 120)])
    for on_error in ("raise", "skip"):
        err = raised_by(
            lambda on_error=on_error: pop_rok.load_pop_rok(
                config=config, data_dir=str(data), cache_dir=str(tmp_path / on_error), on_error=on_error
            )
        )
        assert JSON in str(err), str(err)


@pytest.mark.parametrize("layout", ["per-loop", "aggregated"])
def test_an_empty_wav_archive_names_it(layout, tmp_path):
    loops = [{"name": loop_name(1, 120), "pitch": [36], "bpm": 120}]
    data = write_subset(tmp_path / "data", loops, layout, wavs_for=[])
    for on_error in ("raise", "skip"):
        err = raised_by(
            lambda on_error=on_error: pop_rok.load_pop_rok(
                data_dir=str(data), cache_dir=str(tmp_path / on_error), on_error=on_error
            )
        )
        assert WAV in str(err), str(err)


@pytest.mark.parametrize("layout", ["per-loop", "aggregated"])
def test_labels_that_match_no_wav(layout, tmp_path):
    loops = [{"name": loop_name(t, 110), "pitch": [36, 38], "bpm": 110} for t in (1, 2, 3)]
    data = write_subset(tmp_path / "data", loops, layout, wavs_for=[loop_name(t, 110) for t in (7, 8)])
    err = raised_by(lambda: pop_rok.load_pop_rok(data_dir=str(data), cache_dir=str(tmp_path / "raise")))
    for t in (1, 2, 3):
        assert f"label '{loop_name(t, 110)}' has no WAV in the audio archive" in str(err), str(err)
    for t in (7, 8):
        assert f"loop '{loop_name(t, 110)}' has no label in the label archive" in str(err), str(err)
    err = raised_by(
        lambda: pop_rok.load_pop_rok(data_dir=str(data), cache_dir=str(tmp_path / "skip"), on_error="skip")
    )
    assert "left out every loop" in str(err), str(err)


@pytest.mark.parametrize("layout", ["per-loop", "aggregated"])
@pytest.mark.parametrize("config", ["default", "labels"])
def test_one_loop(layout, config, tmp_path):
    track = TRACKS_BY_FOLD[8][0]  # validation: train and test are absent
    loop = {"name": loop_name(track, 127), "pitch": [42, 36, 42], "bpm": 127}
    data = write_subset(tmp_path / "data", [loop], layout)
    source = dict(data_dir=str(data), cache_dir=str(tmp_path / "cache"))
    loaded = pop_rok.load_pop_rok(config=config, **source)
    assert list(loaded) == ["validation"]
    [row] = undecoded_rows(loaded["validation"])
    assert {k: row[k] for k in expected_row(loop)} == expected_row(loop)
    for split in ("train", "test"):
        assert_absent_split(split, ["validation"], config, source)


@pytest.mark.parametrize("layout", ["per-loop", "aggregated"])
def test_a_split_only_skip_empties(layout, tmp_path, caplog):
    """Train has two loops; test's one label has no WAV: strict, that is the error; skipped, test is dropped."""
    train = [TRACKS_BY_FOLD[0][0], TRACKS_BY_FOLD[3][0]]
    orphan = loop_name(TRACKS_BY_FOLD[9][0], 115)
    loops = [{"name": loop_name(t, 105), "pitch": [36], "bpm": 105} for t in train]
    loops.append({"name": orphan, "pitch": [36, 38], "bpm": 115})
    data = write_subset(tmp_path / "data", loops, layout, wavs_for=[loop_name(t, 105) for t in train])
    err = raised_by(lambda: pop_rok.load_pop_rok(data_dir=str(data), cache_dir=str(tmp_path / "raise")))
    assert f"label '{orphan}' has no WAV in the audio archive" in str(err) and "1 problem(s)" in str(err), str(err)
    source = dict(data_dir=str(data), cache_dir=str(tmp_path / "skip"), on_error="skip")
    with caplog.at_level(logging.WARNING, logger="pop_rok"):
        builder = pop_rok.PopRok(**source)
        builder.download_and_prepare()
    assert list(builder.info.splits) == ["train"]
    warned = [r.getMessage() for r in caplog.records if r.name == "pop_rok" and r.levelno == logging.WARNING]
    assert any("split(s) test: every loop left out" in w for w in warned), warned
    assert sorted(builder.as_dataset(split="train")["name"]) == sorted(loop_name(t, 105) for t in train)
    listing = r"split\(s\) test hold no loop.*the splits that exist: train"
    with pytest.raises(pop_rok.PopRokError, match=listing):
        builder.as_dataset(split="test")
    with pytest.raises(pop_rok.PopRokError, match=listing):
        pop_rok.load_pop_rok(split="test", **source)
    assert list(pop_rok.load_pop_rok(**source)) == ["train"]


@pytest.mark.parametrize("config", ["default", "labels"])
def test_streaming_a_split_that_skip_empties_yields_nothing(config, tmp_path, caplog):
    """Test's one label disagrees with its file name's tempo: skipped, streaming test yields no row and says why, while
    train still streams; only a dataset with no loop left at all is an error."""
    train = loop_name(TRACKS_BY_FOLD[0][0], 105)
    bad = loop_name(TRACKS_BY_FOLD[9][0], 115)
    loops = [{"name": train, "pitch": [36], "bpm": 105}, {"name": bad, "pitch": [36, 38], "bpm": 125}]
    data = write_subset(tmp_path / "data", loops, "aggregated", wavs_for=[train, bad])
    source = dict(data_dir=str(data), on_error="skip", config=config)
    with caplog.at_level(logging.WARNING, logger="pop_rok"):
        assert list(pop_rok.load_pop_rok(split="test", streaming=True, **source)) == []
    warned = [r.getMessage() for r in caplog.records if r.name == "pop_rok" and r.levelno == logging.WARNING]
    assert len(warned) == 1 and "1 problem(s)" in warned[0] and "says 125" in warned[0], warned
    assert [row["name"] for row in pop_rok.load_pop_rok(split="train", streaming=True, **source)] == [train]
