"""The builder against generated archives: every field of every row checked against what was rendered."""

from __future__ import annotations

import io
import os
from pathlib import Path

import datasets
import numpy as np
import pytest
import soundfile as sf
from file_server import FileServer
from split_helpers import filled_splits, names_by_split

import pop_rok
from poprok.archives.wav import wav_bytes
from poprok.sample import archives as sample_archives
from poprok.sample.drum_synth import render_loop
from poprok.splits import FOLD_SPLITS, SPLIT_FOLDS, track_fold

LAYOUTS = ["per_loop_sample", "aggregated_sample", "extracted_sample"]
INSTRUMENT_NAMES = list(pop_rok.KEY_MAP.values())


def expected_label_fields(loop: sample_archives.SampleLoop) -> dict:
    return {
        "name": loop.name,
        "track": loop.track,
        "bpm": loop.bpm,
        "genre": "pop",
        "subgenre": "rock",
        "notes": list(loop.notes),
        "instruments": [INSTRUMENT_NAMES.index(pop_rok.KEY_MAP[n]) for n in loop.notes],
    }


def assert_rows_match(rows: list[dict], manifest: list[sample_archives.SampleLoop], with_audio: bool) -> None:
    """Every generated loop is a row, and every field is what the generator rendered."""
    assert sorted(row["name"] for row in rows) == sorted(loop.name for loop in manifest)
    by_name = {row["name"]: row for row in rows}
    for loop in manifest:
        row = by_name[loop.name]
        assert {k: row[k] for k in expected_label_fields(loop)} == expected_label_fields(loop)
        if not with_audio:
            assert "audio" not in row and "beats" not in row
            continue
        audio, hits = render_loop(list(loop.notes), loop.bpm, bars=8, sample_rate=44100, seed=loop.seed)
        assert row["audio"]["bytes"] == wav_bytes(audio, 44100)  # stored unchanged
        assert row["audio"]["path"] == f"{loop.name}.wav"
        samples, rate = sf.read(io.BytesIO(row["audio"]["bytes"]), dtype="int16")
        assert rate == 44100 and samples.shape == audio.shape == (len(audio), 2)
        assert row["duration"] == pytest.approx(len(audio) / 44100, abs=1e-5)
        assert row["num_bars"] == 8
        period = 60 / loop.bpm
        assert row["beats"] == pytest.approx([i * period for i in range(32)], abs=1e-5)
        assert row["downbeats"] == pytest.approx(row["beats"][::4], abs=1e-9)
        hit_times = np.array(sorted({t for t, _ in hits}))
        for beat in row["beats"]:  # the derived grid lands on rendered hits
            assert np.min(np.abs(hit_times - beat)) < 1 / 44100 + 1e-5


def rows_without_decoding(dataset) -> list[dict]:
    if "audio" in dataset.features:
        dataset = dataset.cast_column("audio", datasets.Audio(sampling_rate=44100, decode=False))
    return list(dataset)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("config", ["default", "labels"])
def test_build_from_data_dir(layout, config, request, tmp_path):
    folder, manifest = request.getfixturevalue(layout)
    dataset = pop_rok.load_pop_rok(
        split=pop_rok.ALL_SPLITS, config=config, data_dir=str(folder), cache_dir=str(tmp_path)
    )
    assert dataset.num_rows == len(manifest)
    assert dataset.info.license == "cc-by-4.0"
    assert dataset.features["instruments"].feature.names == INSTRUMENT_NAMES
    assert_rows_match(rows_without_decoding(dataset), manifest, with_audio=config == "default")


@pytest.mark.parametrize("layout", ["per_loop_sample", "aggregated_sample"])
def test_build_from_base_url(layout, request, tmp_path):
    folder, manifest = request.getfixturevalue(layout)
    with FileServer(folder) as server:
        labels = pop_rok.load_pop_rok(
            split=pop_rok.ALL_SPLITS, config="labels", base_url=server.url, cache_dir=str(tmp_path / "l")
        )
        labels_requests = list(server.requests)
        dataset = pop_rok.load_pop_rok(split=pop_rok.ALL_SPLITS, base_url=server.url, cache_dir=str(tmp_path / "d"))
    assert_rows_match(rows_without_decoding(dataset), manifest, with_audio=True)
    assert_rows_match(list(labels), manifest, with_audio=False)
    assert server.bytes_sent["pop_rok_drm_id_001_wav.tar.gz"] >= os.path.getsize(
        folder / "pop_rok_drm_id_001_wav.tar.gz"
    )
    assert labels_requests and {name for _, name, _ in labels_requests} == {"pop_rok_drm_id_001_json.tar.gz"}


def test_base_url_from_environment(per_loop_sample, tmp_path, monkeypatch):
    folder, manifest = per_loop_sample
    with FileServer(folder) as server:
        monkeypatch.setenv("POP_ROK_BASE_URL", server.url)
        labels = pop_rok.load_pop_rok(split=pop_rok.ALL_SPLITS, config="labels", cache_dir=str(tmp_path))
    assert_rows_match(list(labels), manifest, with_audio=False)
    assert server.requests, "the environment's base URL was not used"


def test_audio_decodes_to_rendered_samples(aggregated_sample, tmp_path):
    """Through datasets' own decoder (torchcodec): stereo, 44.1 kHz, the rendered samples."""
    folder, manifest = aggregated_sample
    dataset = pop_rok.load_pop_rok(split=pop_rok.ALL_SPLITS, data_dir=str(folder), cache_dir=str(tmp_path))
    for row in dataset:
        loop = next(loop for loop in manifest if loop.name == row["name"])
        rendered, _ = render_loop(list(loop.notes), loop.bpm, bars=8, sample_rate=44100, seed=loop.seed)
        decoded = row["audio"].get_all_samples()
        assert decoded.sample_rate == 44100
        assert decoded.data.shape == (2, len(rendered))
        np.testing.assert_allclose(decoded.data.numpy().T, rendered / 32768.0, atol=1e-6)


def test_streaming_reads_only_the_start_of_the_archive(tmp_path):
    """The first example arrives before the server has sent the WAV archive's last byte, and all rows match.

    Observed through the server (an event set when an answer sends a file's last byte), not timed: with the
    kernel's send buffer capped, the server can only get ahead of the reader by what the buffers hold.
    """
    manifest = sample_archives.make_sample(
        tmp_path / "archives", loops=24, seed=3, layout="aggregated", compresslevel=1
    )
    wav = pop_rok.ARCHIVES["wav"]
    split = FOLD_SPLITS[track_fold(manifest[0].track)]  # the archive's first loop is this split's first
    with FileServer(tmp_path / "archives", send_buffer=128 * 1024) as server:
        stream = pop_rok.load_pop_rok(split=split, streaming=True, base_url=server.url)
        stream = stream.cast_column("audio", datasets.Audio(sampling_rate=44100, decode=False))
        rows = iter(stream)
        first = next(rows)
        whole_archive_sent_at_first_row = server.last_byte_sent(wav).is_set()
        rest = list(rows)
        assert server.last_byte_sent(wav).wait(timeout=60), "reading every row never fetched the archive's end"
    assert not whole_archive_sent_at_first_row, "the first row waited for the whole archive"
    in_split = [loop for loop in manifest if FOLD_SPLITS[track_fold(loop.track)] == split]
    assert_rows_match([first, *rest], in_split, with_audio=True)


def test_streaming_yields_the_prepared_rows(per_loop_sample, tmp_path):
    folder, _ = per_loop_sample
    prepared = pop_rok.load_pop_rok(split=pop_rok.ALL_SPLITS, data_dir=str(folder), cache_dir=str(tmp_path))
    streamed = pop_rok.load_pop_rok(split=pop_rok.ALL_SPLITS, streaming=True, data_dir=str(folder))
    assert isinstance(streamed, datasets.IterableDataset)
    assert streamed.features == prepared.features
    assert rows_without_decoding(streamed) == rows_without_decoding(prepared)


def test_load_pop_rok_without_split_returns_a_dataset_dict(aggregated_sample, tmp_path):
    """Only the splits the loops' folds fill: the aggregated sample has no test loop, so no "test" split."""
    folder, manifest = aggregated_sample
    loaded = pop_rok.load_pop_rok(config="labels", data_dir=str(folder), cache_dir=str(tmp_path))
    assert isinstance(loaded, datasets.DatasetDict)
    assert list(loaded) == filled_splits(loop.track for loop in manifest)
    assert {split: sorted(ds["name"]) for split, ds in loaded.items()} == names_by_split(manifest)
    for split, dataset in loaded.items():
        assert dataset.num_rows > 0
        assert all(fold in SPLIT_FOLDS[split] for fold in dataset["fold"])


@pytest.mark.parametrize("keyword, value", [("on_error", "ignore"), ("connections", 0), ("connections", "4")])
def test_bad_config_keywords_are_clear_errors(keyword, value, aggregated_sample, tmp_path):
    folder, _ = aggregated_sample
    with pytest.raises(pop_rok.PopRokError, match=keyword):
        pop_rok.PopRok(data_dir=str(folder), cache_dir=str(tmp_path), **{keyword: value})


def test_connections_do_not_change_the_cache(aggregated_sample, tmp_path):
    """How the archives are fetched is not what they hold: one prepared cache serves any connection count."""
    folder, _ = aggregated_sample
    first = pop_rok.PopRok(data_dir=str(folder), cache_dir=str(tmp_path), connections=1)
    assert first.cache_dir == pop_rok.PopRok(data_dir=str(folder), cache_dir=str(tmp_path), connections=8).cache_dir
    assert first.cache_dir != pop_rok.PopRok(data_dir=str(folder), cache_dir=str(tmp_path), on_error="skip").cache_dir


def test_the_cache_id_covers_every_module_the_builder_runs_on():
    """A fresh process's ``import pop_rok`` loads the code that makes the rows: each module must be in ROWS_CODE,
    so a change to it never reuses a stale cache (the package docstring and the progress bars are not rows)."""
    import subprocess
    import sys

    root = Path(pop_rok.__file__).resolve().parent
    script = (
        "import sys, pop_rok\n"
        "print(*(m.__file__ for n, m in sys.modules.items() if n.split('.')[0] == 'poprok'), sep='\\n')"
    )
    loaded = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True, cwd=root)
    files = {Path(line).resolve().relative_to(root) for line in loaded.stdout.splitlines()}
    covered = {file for file in files if any(file.is_relative_to(entry) for entry in pop_rok.ROWS_CODE)}
    assert files - covered == {Path("poprok/__init__.py"), Path("poprok/progress.py")}
    assert len(covered) >= 20  # the analysis, archives and labels packages among them


@pytest.mark.parametrize("inflater", ["zlib", "isal", "rapidgzip"])
def test_build_says_which_inflater_read_the_archive(inflater, aggregated_sample, tmp_path):
    import subprocess
    import sys

    folder, manifest = aggregated_sample
    result = subprocess.run(
        [
            sys.executable,
            str(Path(pop_rok.__file__)),
            "build",
            "--data-dir",
            str(folder),
            "--cache-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "POP_ROK_INFLATER": inflater},
    )
    assert result.returncode == 0, result.stderr
    assert f"inflated {pop_rok.ARCHIVES['wav']} with {inflater}" in result.stderr
    assert f"rows: {len(manifest)} " in result.stdout
