"""The Parquet copy against the builder: what `load_dataset` reads back from the folder, with nothing but
`datasets`, must be the builder's rows and features in every split; shards, row groups and the card must hold
the limits; the export shows one progress bar per stage, none per shard."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf
from conftest import REAL_EXAMPLES
from datasets.info import DatasetInfosDict
from datasets.utils.metadata import MetadataConfigs
from huggingface_hub import DatasetCard
from test_distributed_shards import SPLIT_ROWS, generic_splits

import pop_rok
from poprok.archives.wav import wav_bytes
from poprok.publish import pop_rok_copy
from poprok.publish.parquet_copy import encode_flac, size_category, write_parquet_copy
from poprok.publish.stats_figure import plot_label_stats
from poprok.sample import archives as sample_archives
from tests.hub_server import HubServer, client_env

CONFIGS = ("default", "labels")
LIMITS = dict(min_shards=3, max_shard_bytes=8_000_000, max_row_group_bytes=6_000_000, max_row_group_rows=256)
CARD_METADATA = {
    "license": "cc-by-4.0",
    "pretty_name": "POP-ROK",
    "task_categories": ["audio-classification"],
    "tags": ["audio", "music", "drums"],
}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, datasets.DatasetDict]:
    """Both configs as the builder makes them from six generated loops, in its splits."""
    folder = tmp_path_factory.mktemp("pop_rok")
    sample_archives.make_sample(folder / "archives", loops=6, seed=5)
    source = dict(data_dir=str(folder / "archives"), cache_dir=str(folder / "cache"))
    return {config: pop_rok.load_pop_rok(split=None, config=config, **source) for config in CONFIGS}


@pytest.fixture(scope="module")
def labels_in_one_split(built) -> dict[str, datasets.DatasetDict]:
    """The six loops' labels as one split, for tests about how one split is cut."""
    return {"labels": datasets.DatasetDict(train=datasets.concatenate_datasets(list(built["labels"].values())))}


@pytest.fixture(scope="module", params=["wav", "flac"])
def exported(request, built, tmp_path_factory):
    """(audio format, folder, summary) of a Parquet copy of both configs."""
    audio_format = request.param
    out = tmp_path_factory.mktemp(f"copy_{audio_format}")
    body = pop_rok_copy.card_body(built["default"], audio_format, "waivops/pop-rok")
    summary = write_parquet_copy(
        out, built, card_body=body, card_metadata=CARD_METADATA, audio_format=audio_format, **LIMITS
    )
    return audio_format, out, summary


def undecoded_rows(dataset) -> list[dict]:
    if "audio" in dataset.features:
        dataset = dataset.cast_column("audio", datasets.Audio(sampling_rate=44100, decode=False))
    return list(dataset)


def int16_samples(data: bytes) -> tuple[np.ndarray, int]:
    return sf.read(io.BytesIO(data), dtype="int16")


def assert_same_rows(copied: list[dict], original: list[dict], audio_format: str) -> None:
    """Same rows in the same order; audio stored unchanged (wav) or as the same samples (flac)."""
    assert len(copied) == len(original) > 0
    for got, want in zip(copied, original):
        if "audio" in want:
            got, want = dict(got), dict(want)
            got_audio, want_audio = got.pop("audio"), want.pop("audio")
            if audio_format == "wav":
                assert got_audio == want_audio
            else:
                assert got_audio["path"] == want_audio["path"].removesuffix(".wav") + ".flac"
                got_samples, got_rate = int16_samples(got_audio["bytes"])
                want_samples, want_rate = int16_samples(want_audio["bytes"])
                assert got_rate == want_rate == 44100
                np.testing.assert_array_equal(got_samples, want_samples)
        assert got == want


def test_the_builder_gives_the_copy_several_splits(built):
    for splits in built.values():
        assert len(splits) > 1 and sum(map(len, splits.values())) == 6


@pytest.mark.parametrize("config", CONFIGS)
def test_load_dataset_reads_the_builders_rows(exported, built, config, tmp_path):
    audio_format, out, _ = exported
    for split, original in built[config].items():
        loaded = datasets.load_dataset(str(out), config, split=split, cache_dir=str(tmp_path))
        assert loaded.features == original.features
        assert_same_rows(undecoded_rows(loaded), undecoded_rows(original), audio_format)


@pytest.mark.parametrize("config", CONFIGS)
def test_streaming_reads_the_builders_rows(exported, built, config):
    audio_format, out, _ = exported
    for split, original in built[config].items():
        stream = datasets.load_dataset(str(out), config, split=split, streaming=True)
        assert stream.features == original.features
        assert_same_rows(undecoded_rows(stream), undecoded_rows(original), audio_format)


def test_default_config_loads_without_a_name(exported, tmp_path):
    _, out, _ = exported
    loaded = datasets.load_dataset(str(out), split="train", cache_dir=str(tmp_path))
    assert "audio" in loaded.features


@pytest.mark.parametrize("config", CONFIGS)
def test_shards_and_row_groups_stay_within_the_limits(exported, built, config):
    _, out, summary = exported
    assert list(summary[config]) == list(built[config])
    files = [file for split in summary[config].values() for file in split]
    for split, split_files in summary[config].items():
        # Rows of about 3 MB: two fit a shard of 8 MB; min_shards asks for three, or one a row in a smaller split.
        rows = len(built[config][split])
        count = min(rows, LIMITS["min_shards"])
        assert [file["path"] for file in split_files] == [
            f"data/{config}/{split}-{i:05d}-of-{count:05d}.parquet" for i in range(count)
        ]
        assert sum(file["rows"] for file in split_files) == rows
    on_disk = sorted(path.relative_to(out).as_posix() for path in out.glob(f"data/{config}/*"))
    assert on_disk == sorted(file["path"] for file in files)
    for file in files:
        path = out / file["path"]
        assert file["bytes"] == path.stat().st_size <= LIMITS["max_shard_bytes"]
        metadata = pq.ParquetFile(path).metadata
        assert metadata.num_rows == file["rows"]
        for index in range(metadata.num_row_groups):
            group = metadata.row_group(index)
            assert group.total_byte_size <= LIMITS["max_row_group_bytes"]
            assert group.num_rows <= LIMITS["max_row_group_rows"]


@pytest.mark.parametrize("config", CONFIGS)
def test_every_column_but_the_audio_bytes_has_statistics(exported, built, config):
    """Readers prune row groups on min and max: every label and analysis column keeps them; the audio's bytes,
    whose min and max pyarrow would drop anyway, have none."""
    _, out, summary = exported
    names = set(built[config][next(iter(built[config]))].column_names)
    for file in (file for split in summary[config].values() for file in split):
        metadata = pq.ParquetFile(out / file["path"]).metadata
        for index in range(metadata.num_row_groups):
            group = metadata.row_group(index)
            columns = {group.column(i).path_in_schema: group.column(i) for i in range(group.num_columns)}
            assert {path.split(".")[0] for path in columns} == names
            for path, column in columns.items():
                assert column.is_stats_set == (path != "audio.bytes"), path
                if column.is_stats_set and column.statistics.physical_type != "BYTE_ARRAY":
                    assert column.statistics.has_min_max, path


def test_row_groups_hold_at_most_max_row_group_rows(labels_in_one_split, tmp_path):
    write_parquet_copy(
        tmp_path, labels_in_one_split, card_body="", card_metadata={}, min_shards=1, max_row_group_rows=4
    )
    (shard,) = (tmp_path / "data" / "labels").glob("*.parquet")
    metadata = pq.ParquetFile(shard).metadata
    assert [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)] == [4, 2]


def test_a_new_copy_replaces_the_old_shards(labels_in_one_split, tmp_path):
    labels = labels_in_one_split
    write_parquet_copy(tmp_path, labels, card_body="", card_metadata={}, num_shards=3)
    summary = write_parquet_copy(tmp_path, labels, card_body="", card_metadata={}, num_shards=2)
    shards = sorted(path.name for path in (tmp_path / "data" / "labels").iterdir())
    assert shards == ["train-00000-of-00002.parquet", "train-00001-of-00002.parquet"]
    assert [file["rows"] for file in summary["labels"]["train"]] == [3, 3]
    loaded = datasets.load_dataset(str(tmp_path), "labels", split="train", cache_dir=str(tmp_path / "cache"))
    assert loaded.num_rows == 6


def test_card_declares_configs_features_and_sizes(exported, built):
    _, out, summary = exported
    card = DatasetCard.load(out / "README.md")
    data = card.data.to_dict()
    for key, value in CARD_METADATA.items():
        assert data[key] == value
    assert data["size_categories"] == "n<1K"

    splits = list(built["default"])
    assert list(built["labels"]) == splits
    assert data["configs"] == [
        {
            "config_name": "default",
            "data_files": [{"split": split, "path": f"data/default/{split}-*"} for split in splits],
            "default": True,
        },
        {
            "config_name": "labels",
            "data_files": [{"split": split, "path": f"data/labels/{split}-*"} for split in splits],
        },
    ]
    assert MetadataConfigs.from_dataset_card_data(card.data).get_default_config_name() == "default"

    yaml_features = {f["name"]: f for f in data["dataset_info"][0]["features"]}
    assert yaml_features["audio"]["dtype"] == {"audio": {"sampling_rate": 44100}}
    names = yaml_features["instruments"]["list"]["class_label"]["names"]
    assert list(names.values()) == list(pop_rok.KEY_MAP.values())

    infos = DatasetInfosDict.from_dataset_card_data(card.data)
    assert list(infos) == list(CONFIGS)
    for config, info in infos.items():
        assert info.features == built[config]["train"].features
        assert {split: info.splits[split].num_examples for split in info.splits} == {
            split: len(dataset) for split, dataset in built[config].items()
        }
        assert sum(split.num_bytes for split in info.splits.values()) == info.dataset_size > 0
        assert info.download_size == sum(file["bytes"] for files in summary[config].values() for file in files)

    assert pop_rok.CITATION.strip() in card.text
    assert "10.5281/zenodo.14038284" in card.text
    assert "{{" not in card.text


def test_flac_copy_is_smaller(built, tmp_path_factory):
    """On the generated sample: its white noise floor (drum_synth) keeps FLAC above half, see the real-audio test."""
    sizes = {}
    for audio_format in ("wav", "flac"):
        out = tmp_path_factory.mktemp(f"size_{audio_format}")
        summary = write_parquet_copy(
            out, {"default": built["default"]}, card_body="", card_metadata={}, audio_format=audio_format, num_shards=1
        )
        sizes[audio_format] = summary["default"]["train"][0]["bytes"]
    assert sizes["flac"] <= 0.75 * sizes["wav"]


@pytest.mark.skipif(not REAL_EXAMPLES.is_dir(), reason="no real POP-ROK examples on this machine")
def test_flac_halves_real_drums_bit_for_bit():
    """Real loops (decoded from their MP3 previews to 16-bit WAV): FLAC keeps every sample in < 0.6 of the bytes."""
    wav_total = flac_total = 0
    for mp3 in sorted(REAL_EXAMPLES.glob("*.mp3")):
        samples, rate = sf.read(mp3, dtype="int16")
        wav = wav_bytes(samples, rate)
        flac = encode_flac(wav)
        decoded, decoded_rate = int16_samples(flac)
        assert decoded_rate == rate == 44100
        np.testing.assert_array_equal(decoded, samples)
        wav_total, flac_total = wav_total + len(wav), flac_total + len(flac)
    assert wav_total and flac_total <= 0.6 * wav_total


def test_encode_flac_keeps_24_bit_and_refuses_lossy_input():
    samples = (np.random.default_rng(0).integers(-(2**23), 2**23, size=(4410, 2)) << 8).astype(np.int32)
    wav = io.BytesIO()
    sf.write(wav, samples, 44100, format="WAV", subtype="PCM_24")
    decoded, _ = sf.read(io.BytesIO(encode_flac(wav.getvalue())), dtype="int32")
    np.testing.assert_array_equal(decoded, samples)

    floats = io.BytesIO()
    sf.write(floats, samples / 2**31, 44100, format="WAV", subtype="FLOAT")
    with pytest.raises(ValueError, match="FLOAT"):
        encode_flac(floats.getvalue())


@pytest.mark.parametrize("audio_format", ["wav", "flac"])
def test_audio_that_points_to_files_is_embedded(audio_format, tmp_path):
    loops = []
    for index in range(2):
        samples = np.random.default_rng(index).integers(-3000, 3000, size=(2000, 2)).astype(np.int16)
        path = tmp_path / f"loop{index}.wav"
        path.write_bytes(wav_bytes(samples, 44100))
        loops.append((path, samples))
    dataset = datasets.Dataset.from_dict({"audio": [str(path) for path, _ in loops]})
    dataset = dataset.cast_column("audio", datasets.Audio(sampling_rate=44100))
    out = tmp_path / "copy"
    configs = {"default": datasets.DatasetDict(train=dataset)}
    write_parquet_copy(out, configs, card_body="", card_metadata={}, audio_format=audio_format)
    for path, _ in loops:
        path.unlink()  # the copy must stand alone
    rows = undecoded_rows(datasets.load_dataset(str(out), split="train", cache_dir=str(tmp_path / "cache")))
    for row, (path, samples) in zip(rows, loops):
        assert row["audio"]["path"] == f"{path.stem}.{audio_format}"
        np.testing.assert_array_equal(int16_samples(row["audio"]["bytes"])[0], samples)


def test_a_flac_copy_names_the_audio_it_cannot_encode(tmp_path):
    """Cells are encoded several at a time; the one that cannot be is named, wherever it is among them."""
    cells = []
    for index in range(7):
        samples = np.random.default_rng(index).integers(-3000, 3000, size=(2000, 2)).astype(np.int16)
        cells.append({"bytes": wav_bytes(samples, 44100), "path": f"loop{index}.wav"})
    float_wav = io.BytesIO()
    sf.write(float_wav, np.zeros((2000, 2)), 44100, format="WAV", subtype="FLOAT")
    cells[5] = {"bytes": float_wav.getvalue(), "path": "floats.wav"}
    dataset = datasets.Dataset.from_dict({"audio": cells}, features=datasets.Features({"audio": datasets.Audio()}))
    configs = {"default": datasets.DatasetDict(train=dataset)}
    with pytest.raises(ValueError, match=r"audio 'floats.wav': WAV/FLOAT audio cannot be re-encoded losslessly"):
        write_parquet_copy(tmp_path / "copy", configs, card_body="", card_metadata={}, audio_format="flac")


def test_bad_input_is_refused_before_any_work(built, tmp_path):
    labels = {"labels": built["labels"]}
    mixed = datasets.DatasetDict(train=built["labels"]["train"], test=built["default"]["train"])
    cases = [
        (dict(configs=labels, audio_format="mp3"), "audio_format"),
        (dict(configs={}), "empty"),
        (dict(configs={"labels": datasets.DatasetDict()}), "no split"),
        (dict(configs={"labels": datasets.DatasetDict(train=built["labels"]["train"].select([]))}), "no rows"),
        (dict(configs=labels, num_shards=0), "num_shards"),
        (dict(configs=labels, num_shards={"labels": 0}), "num_shards"),
        (dict(configs=labels, num_shards={"labels": 1.5}), "num_shards"),
        (dict(configs=labels, shard_multiple=0), "shard_multiple"),
        (dict(configs=labels, max_row_group_rows=0), "max_row_group_rows"),
        (dict(configs=labels, card_metadata={"configs": []}), "configs"),
        (dict(configs={"labels": mixed}), "different features"),
        (dict(configs={"labels": datasets.DatasetDict({"train-1": built["labels"]["train"]})}), "split"),
    ]
    for kwargs, message in cases:
        kwargs = {"card_body": "", "card_metadata": {}, **kwargs}
        with pytest.raises(ValueError, match=message):
            write_parquet_copy(tmp_path, **kwargs)
    assert not any(tmp_path.iterdir())


# ------------------------------------------------------------------- shard counts, splits, progress


def fixed_rows(num_rows: int, row_bytes: int = 1000) -> datasets.DatasetDict:
    """One split of rows holding ``row_bytes`` bytes of binary each (plus an id and an offset: 12 bytes)."""
    blob = [bytes([i % 256]) * row_bytes for i in range(num_rows)]
    return datasets.DatasetDict(train=datasets.Dataset.from_dict({"id": list(range(num_rows)), "blob": blob}))


def shard_counts(summary) -> dict[str, dict[str, int]]:
    return {config: {split: len(files) for split, files in splits.items()} for config, splits in summary.items()}


@pytest.mark.parametrize(
    ("num_rows", "limits", "shards"),
    [
        (70, {}, 16),  # min_shards, already a multiple
        (70, {"min_shards": 3}, 16),  # rounded up to the multiple
        (70, {"max_shard_bytes": 3000}, 48),  # two rows a shard fit 3,000 bytes, three do not: 35 at least
        (70, {"max_shard_bytes": 3000, "shard_multiple": 1}, 35),  # the fewest that fit, without the rule
        (70, {"min_shards": 3, "shard_multiple": 32}, 32),
        (10, {}, 10),  # fewer rows than the multiple: one a row, as min_shards asks
        (10, {"min_shards": 3}, 3),
    ],
)
def test_shard_count_is_a_multiple_of_shard_multiple(tmp_path, num_rows, limits, shards):
    summary = write_parquet_copy(tmp_path, {"default": fixed_rows(num_rows)}, card_body="", card_metadata={}, **limits)
    files = summary["default"]["train"]
    assert len(files) == shards
    assert max(file["rows"] for file in files) - min(file["rows"] for file in files) <= 1
    assert sum(file["rows"] for file in files) == num_rows


def test_rows_too_large_for_any_multiple_keep_the_size_limit_and_say_so(tmp_path):
    """20 rows of 1 KB under a 1,500-byte limit: 16 shards would hold two rows in some; only 20 fit."""
    with pytest.warns(UserWarning, match="shard_multiple=16"):
        summary = write_parquet_copy(
            tmp_path, {"default": fixed_rows(20)}, card_body="", card_metadata={}, max_shard_bytes=1500
        )
    assert [file["rows"] for file in summary["default"]["train"]] == [1] * 20


def test_num_shards_per_config(tmp_path):
    configs = {"default": generic_splits(), "labels": datasets.DatasetDict(train=fixed_rows(40)["train"])}
    summary = write_parquet_copy(tmp_path, configs, card_body="", card_metadata={}, num_shards={"labels": 1})
    assert shard_counts(summary) == {"default": {"train": 16, "validation": 9, "test": 9}, "labels": {"train": 1}}
    # A policy for configs that may not be written: exporting the audio config alone.
    summary = write_parquet_copy(
        tmp_path, {"default": configs["default"]}, card_body="", card_metadata={}, num_shards={"labels": 1}
    )
    assert shard_counts(summary) == {"default": {"train": 16, "validation": 9, "test": 9}}
    summary = write_parquet_copy(tmp_path, configs, card_body="", card_metadata={}, num_shards=2)
    assert shard_counts(summary) == {"default": {"train": 2, "validation": 2, "test": 2}, "labels": {"train": 2}}


def test_every_split_is_in_the_card_and_loads_alone_or_added(tmp_path):
    write_parquet_copy(tmp_path, {"default": generic_splits()}, card_body="", card_metadata={})
    card = DatasetCard.load(tmp_path / "README.md").data.to_dict()
    assert card["configs"] == [
        {
            "config_name": "default",
            "data_files": [{"split": split, "path": f"data/default/{split}-*"} for split in SPLIT_ROWS],
            "default": True,
        }
    ]
    info = card["dataset_info"]  # one config: its entry, not a list
    assert [(split["name"], split["num_examples"]) for split in info["splits"]] == list(SPLIT_ROWS.items())

    def ids(split: str) -> list[int]:
        return datasets.load_dataset(str(tmp_path), split=split, cache_dir=str(tmp_path / "cache"))["id"]

    first = 0
    for split, rows in SPLIT_ROWS.items():
        assert ids(split) == list(range(first, first + rows))
        first += rows
    assert ids("train+validation+test") == list(range(first))
    assert ids("validation+test") == list(range(SPLIT_ROWS["train"], first))


def progress_bars(stderr: str) -> list[tuple[str, str]]:
    """(description, final state) of each tqdm bar: a bar redraws its line after ``\r`` and ends it with ``\n``."""
    bars = []
    for line in stderr.split("\n"):
        final = line.split("\r")[-1]
        match = re.match(r"(?P<desc>[^:\r]+): +(?P<state>\d+%\|.*)", final)
        if match:
            bars.append((match["desc"], match["state"]))
    return bars


@pytest.mark.skipif(
    datasets.config.HF_DATASETS_DISABLE_PROGRESS_BARS is not None, reason="bars set by the environment"
)
@pytest.mark.parametrize("audio_format", ["wav", "flac"])
def test_export_shows_one_bar_per_stage_and_none_per_shard(audio_format, tmp_path, capsys):
    splits = generic_splits()
    configs = {
        "default": splits,
        "labels": datasets.DatasetDict({k: v.remove_columns("audio") for k, v in splits.items()}),
    }
    capsys.readouterr()
    summary = write_parquet_copy(tmp_path, configs, card_body="", card_metadata={}, audio_format=audio_format)
    stderr = capsys.readouterr().err
    assert sum(shard_counts(summary)["default"].values()) == 16 + 9 + 9
    assert "Creating parquet" not in stderr
    expected = ["Writing data/default", "Writing data/labels"]
    if audio_format == "flac":
        expected.insert(0, "Encoding default audio as FLAC")
    bars = progress_bars(stderr)
    assert [desc for desc, _ in bars] == expected
    assert all(state.startswith("100%|") for _, state in bars)
    assert not datasets.utils.are_progress_bars_disabled(), "datasets' bars are back as they were"

    datasets.utils.disable_progress_bars()
    try:
        write_parquet_copy(tmp_path, configs, card_body="", card_metadata={}, audio_format=audio_format)
        assert progress_bars(capsys.readouterr().err) == [], "a user who turned bars off sees none"
        assert datasets.utils.are_progress_bars_disabled()
    finally:
        datasets.utils.enable_progress_bars()


PUBLISH = """
import json, sys
from poprok.publish.hub import publish_folder
print(publish_folder(sys.argv[1], sys.argv[2], ["default"], **json.loads(sys.argv[3])).oid)
"""
PUBLISH_TOKEN, PUBLISH_REPO = "hf_PublishLoopbackToken0123456789", "user/generic"


def publish(hub, home, folder, **options) -> str:
    """publish_folder in a client process pointed at the loopback Hub; returns its stderr."""
    result = subprocess.run(
        [sys.executable, "-c", PUBLISH, str(folder), PUBLISH_REPO, json.dumps(options)],
        cwd=Path(__file__).resolve().parents[1],
        env=client_env(hub.url, home, PUBLISH_TOKEN),
        capture_output=True,  # bytes: text mode would turn the bars' \r into \n
        timeout=300,
    )
    stderr = result.stderr.decode()
    assert result.returncode == 0, stderr[-3000:]
    return stderr


@pytest.fixture
def hub(tmp_path):
    with HubServer(tmp_path / "hub", token=PUBLISH_TOKEN) as server:
        yield server


def test_publishing_shows_one_upload_bar(hub, tmp_path):
    """huggingface_hub draws a bar per file uploaded: publish_folder shows one over all the bytes, in one commit."""
    folder = tmp_path / "copy"
    summary = write_parquet_copy(folder, {"default": generic_splits()}, card_body="", card_metadata={})
    num_files = sum(map(len, summary["default"].values()))
    for attempt in ("first", "again"):
        commits = len(hub.commits(PUBLISH_REPO)) if attempt == "again" else 0
        stderr = publish(hub, tmp_path / "home", folder)
        bars = progress_bars(stderr)
        assert [desc for desc, _ in bars] == [f"Uploading to {PUBLISH_REPO}"], stderr[-3000:]
        assert bars[0][1].startswith("100%|")
        assert "train-00000" not in stderr and "LFS files" not in stderr
        if attempt == "first":
            files = hub.list_files(PUBLISH_REPO)
            assert sum(path.startswith("data/default/") for path in files) == num_files
        else:
            assert len(hub.commits(PUBLISH_REPO)) == commits, "the same folder again makes no commit"


def test_a_pull_request_against_a_branch_replaces_the_configs_shards(hub, tmp_path):
    folder = tmp_path / "copy"
    write_parquet_copy(folder, {"default": generic_splits()}, card_body="", card_metadata={})
    publish(hub, tmp_path / "home", folder)
    on_main = hub.list_files(PUBLISH_REPO)
    summary = write_parquet_copy(folder, {"default": generic_splits()}, card_body="", card_metadata={}, num_shards=2)
    publish(hub, tmp_path / "home", folder, revision="dev", create_pr=True)
    assert hub.list_files(PUBLISH_REPO) == on_main
    assert hub.list_files(PUBLISH_REPO, "dev") == on_main, "the branch was made from main; the PR holds the change"
    shards = {path for path in hub.list_files(PUBLISH_REPO, "refs/pr/1") if path.startswith("data/")}
    assert shards == {file["path"] for files in summary["default"].values() for file in files}


def test_size_categories():
    rows = (0, 999, 1000, 5378, 10_000, 2 * 10**12)
    assert [size_category(n) for n in rows] == ["n<1K", "n<1K", "1K<n<10K", "1K<n<10K", "10K<n<100K", "n>1T"]


def test_stats_figure_is_a_png(built, tmp_path):
    rows = built["default"]["train"].select_columns(["bpm", "instruments", "duration"])
    names = rows.features["instruments"].feature.names
    instruments = [[names[i] for i in row] for row in rows["instruments"]]
    path = plot_label_stats(tmp_path / "stats.png", list(rows["bpm"]), instruments, names, list(rows["duration"]))
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and data.endswith(b"IEND\xaeB`\x82")
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (1400, 1100)
