"""A Parquet copy shared out by `datasets.distributed.split_dataset_by_node`: every rank of 2, 4, 8 and 16 gets
whole shards, and the ranks' rows are disjoint and together complete. Generic data, no project code but the copy."""

from __future__ import annotations

import io

import datasets
import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf
from datasets.distributed import split_dataset_by_node

from poprok.publish.parquet_copy import write_parquet_copy

# 70 training rows: more than 16, and no multiple of any world size, so only the shard count makes it even.
SPLIT_ROWS = {"train": 70, "validation": 9, "test": 9}
WORLD_SIZES = (2, 4, 8, 16)
# Shards may hold 3.5 rows' bytes: at least 24 shards (70 / 3), a count that 16 does not divide. The copy
# writes the next multiple of 16, 32 shards of 2 or 3 rows.
ROWS_PER_SHARD_LIMIT = 3.5
TRAIN_SHARDS = 32


def tiny_wav(row_id: int) -> bytes:
    """A real 16-bit stereo WAV of 100 samples, different for every row."""
    samples = np.random.default_rng(row_id).integers(-2000, 2000, size=(100, 2)).astype(np.int16)
    data = io.BytesIO()
    sf.write(data, samples, 44100, format="WAV", subtype="PCM_16")
    return data.getvalue()


def generic_splits(split_rows: dict[str, int] = SPLIT_ROWS) -> datasets.DatasetDict:
    """A DatasetDict with an ``id`` column (unique across splits) and an Audio column of tiny WAVs."""
    features = datasets.Features({"id": datasets.Value("int32"), "audio": datasets.Audio(sampling_rate=44100)})
    splits, first = {}, 0
    for split, rows in split_rows.items():
        ids = list(range(first, first + rows))
        audio = [{"bytes": tiny_wav(i), "path": f"{i}.wav"} for i in ids]
        splits[split] = datasets.Dataset.from_dict({"id": ids, "audio": audio}, features=features)
        first += rows
    return datasets.DatasetDict(splits)


def shard_ids(folder, split: str) -> list[set[int]]:
    """The ids each of the split's shard files holds, read with pyarrow alone."""
    paths = sorted((folder / "data" / "default").glob(f"{split}-*.parquet"))
    return [set(pq.read_table(path, columns=["id"]).column("id").to_pylist()) for path in paths]


@pytest.fixture(scope="module")
def copy(tmp_path_factory):
    folder = tmp_path_factory.mktemp("generic_copy")
    splits = generic_splits()
    row_bytes = splits["train"].data.nbytes / splits["train"].num_rows
    limit = int(ROWS_PER_SHARD_LIMIT * row_bytes)
    write_parquet_copy(folder, {"default": splits}, card_body="", card_metadata={}, max_shard_bytes=limit)
    return folder


def test_the_training_split_has_a_multiple_of_sixteen_shards(copy):
    shards = shard_ids(copy, "train")
    assert len(shards) == TRAIN_SHARDS
    assert sorted(len(ids) for ids in shards) == [2] * 26 + [3] * 6  # 70 rows spread evenly
    # Fewer rows than 16: one row a shard, as min_shards asks.
    assert [len(ids) for ids in shard_ids(copy, "validation")] == [1] * SPLIT_ROWS["validation"]


@pytest.mark.parametrize("world_size", WORLD_SIZES)
def test_every_rank_streams_whole_shards_and_the_ranks_cover_every_row_once(copy, world_size):
    stream = datasets.load_dataset(str(copy), split="train", streaming=True)
    assert stream.num_shards == TRAIN_SHARDS
    shards = shard_ids(copy, "train")
    seen: list[int] = []
    for rank in range(world_size):
        node = split_dataset_by_node(stream, rank=rank, world_size=world_size)
        assert node.num_shards == TRAIN_SHARDS // world_size
        ids = [row["id"] for row in node.select_columns(["id"])]
        assert len(ids) == len(set(ids))
        # Whole shards: every shard file is either all this rank's or none of it.
        held = [shard for shard in shards if shard & set(ids)]
        assert all(shard <= set(ids) for shard in held)
        assert len(held) == TRAIN_SHARDS // world_size
        seen.extend(ids)
    assert sorted(seen) == list(range(SPLIT_ROWS["train"]))


def test_a_count_no_world_size_divides_falls_back_to_every_node_reading_everything(tmp_path):
    """The failure the multiple of 16 avoids: with 24 shards, 16 ranks each read every shard and keep 1 row in 16."""
    write_parquet_copy(tmp_path, {"default": generic_splits()}, card_body="", card_metadata={}, num_shards=24)
    stream = datasets.load_dataset(str(tmp_path), split="train", streaming=True)
    node = split_dataset_by_node(stream, rank=0, world_size=16)
    assert node.num_shards == 24
    ids = {row["id"] for row in node.select_columns(["id"])}
    assert sorted(ids) == list(range(0, SPLIT_ROWS["train"], 16))
    assert any(shard & ids and not shard <= ids for shard in shard_ids(tmp_path, "train"))  # not whole shards
