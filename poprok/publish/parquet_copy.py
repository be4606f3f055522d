"""Write a Parquet copy of datasets, with its dataset card, that the Hugging Face Hub serves as it is.

`datasets` 5 runs no loading scripts: what ``load_dataset("<org>/<name>")``, streaming and the Hub viewer
read is Parquet shards plus a README whose YAML declares the configs and features. This module writes
that folder from one ``DatasetDict`` per config, knowing nothing about any particular dataset:

    write_parquet_copy("out/hub", {"default": full, "labels": labels}, card_body=body,
                       card_metadata={"license": "cc-by-4.0", "pretty_name": "..."}, audio_format="flac")

    out/hub/README.md                                    YAML (configs, dataset_info, ...) + card_body
    out/hub/data/{config}/{split}-00000-of-00016.parquet  every split of every config

Shards and row groups are sized from each row's real bytes, so uneven rows (long and short audio) never
push a shard past ``max_shard_bytes`` or a row group past ``max_row_group_bytes`` (the viewer reads one
row group at a time, 300 MB at most). A split's shard count is a multiple of ``shard_multiple`` (16), so
``datasets.distributed.split_dataset_by_node`` gives each of 2, 4, 8 or 16 nodes (or nodes x DataLoader
workers) whole shards; with any other count every node reads every row and keeps 1 in N.

Progress: one bar per config for writing (and one for FLAC encoding), none per shard; ``datasets``' own
per-file bars are silenced while this module drives ``to_parquet``.
"""

from __future__ import annotations

import io
import math
import os
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import soundfile as sf
from datasets.features.features import require_storage_embed
from datasets.info import DatasetInfosDict
from datasets.table import embed_table_storage
from datasets.utils import tqdm as hf_tqdm
from datasets.utils.metadata import MetadataConfigs
from huggingface_hub import DatasetCard, DatasetCardData

from poprok.parallel import ordered_map
from poprok.progress import datasets_bars_silenced

AUDIO_FORMATS = ("wav", "flac")

# libFLAC level for the "flac" copy. Measured on POP-ROK-like drum loops (one core): levels 0-3 run at
# ~1,100x realtime and keep 0.53-0.55 of the WAV bytes, 4 runs at ~1,000x and keeps 0.52, 5-8 save under
# half a point more at 850x down to 340x. 4 is the knee: fast, and within 1% of the best ratio.
FLAC_COMPRESSION_LEVEL = 4
# Cells encoded at a time, one per core this process may use: libFLAC runs without the GIL, and two threads
# encoded 1.65x as fast as one on a 2-core machine (measured on the benchmark's loops).
FLAC_ENCODERS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
# The PCM sample types FLAC holds losslessly, and the integer type that reads each without scaling loss.
_FLAC_SAMPLE_TYPES = {"PCM_16": "int16", "PCM_24": "int32"}

# Parquet's uncompressed sizes run slightly over Arrow's (page headers and statistics: ~0.02% for rows of
# audio, plus a few KB of footer per file): plan shards and row groups against 99% of each limit.
_HEADROOM = 0.99
SHARD_WRITERS = 2  # shards written at once (threads)
# Rows held in memory at once while embedding or encoding: about this many bytes of them.
_BATCH_BYTES = 16_000_000
_PROBE_ROWS = 16  # rows measured for that

# The Hub's size_categories, by upper bound on the number of rows.
_SIZE_CATEGORIES = [
    (10**3, "n<1K"),
    (10**4, "1K<n<10K"),
    (10**5, "10K<n<100K"),
    (10**6, "100K<n<1M"),
    (10**7, "1M<n<10M"),
    (10**8, "10M<n<100M"),
    (10**9, "100M<n<1B"),
    (10**10, "1B<n<10B"),
    (10**11, "10B<n<100B"),
    (10**12, "100B<n<1T"),
]
_GENERATED_CARD_KEYS = ("configs", "dataset_info", "size_categories")


def write_parquet_copy(
    out_dir,
    configs: dict[str, datasets.DatasetDict],
    *,
    card_body: str,
    card_metadata: dict,
    audio_format: str = "wav",
    num_shards: int | Mapping[str, int] | None = None,
    shard_multiple: int = 16,
    min_shards: int = 16,
    max_shard_bytes: int = 500_000_000,
    max_row_group_bytes: int = 100_000_000,
    max_row_group_rows: int = 256,
    num_proc: int | None = None,
) -> dict:
    """Write ``out_dir/data/{config}/{split}-{i:05d}-of-{n:05d}.parquet`` and ``out_dir/README.md``.

    Every split of every config gets its shards and its entry in the card, so ``load_dataset(out_dir,
    config, split="test")`` and ``split="train+validation+test"`` work. ``audio_format="wav"`` stores audio
    bytes as they are; ``"flac"`` re-encodes every top-level ``Audio`` column losslessly (same samples,
    about half the bytes). Media cells that hold only a path get the file's bytes, so the copy stands alone.

    Each split's shard count is the fewest that keeps every shard within ``max_shard_bytes``, is at least
    ``min_shards`` and, when the split has at least ``shard_multiple`` rows, a multiple of it (a warning
    says when rows too large for that force another count). ``num_shards`` (per split, at most one per row)
    overrides that count for every config, or, as ``{config: count}``, for the configs it names (one file
    per split for a small labels-only config; names of configs not being written are ignored). ``num_proc``
    processes embed and encode. Shards left by an earlier run in ``out_dir/data`` are removed first.

    Returns ``{config: {split: [{"path": ..., "bytes": ..., "rows": ...}, ...]}}``, paths relative to out_dir.
    """
    limits = _Limits(min_shards, shard_multiple, max_shard_bytes, max_row_group_bytes, max_row_group_rows)
    shard_counts = _check_arguments(configs, card_metadata, audio_format, num_shards, limits)
    # Before any work: features that differ between splits, or a split name the Hub would refuse, fail
    # here rather than after hours of writing.
    features = {name: _config_features(name, splits) for name, splits in configs.items()}
    card_data = DatasetCardData(**card_metadata)
    _metadata_configs(configs).to_dataset_card_data(card_data)

    out = Path(out_dir)
    for stale in out.glob("data/*/*-of-*.parquet*"):
        stale.unlink()
    summary: dict[str, dict[str, list[dict]]] = {}
    infos = DatasetInfosDict()
    for config_name, splits in configs.items():
        info = datasets.DatasetInfo(
            features=features[config_name], splits=datasets.SplitDict(), download_size=0, dataset_size=0
        )
        written = _write_config(config_name, splits, out, audio_format, shard_counts[config_name], limits, num_proc)
        for split, (files, num_bytes) in written.items():
            info.splits.add(datasets.SplitInfo(name=split, num_bytes=num_bytes, num_examples=len(splits[split])))
            info.download_size += sum(file["bytes"] for file in files)
            info.dataset_size += num_bytes
            summary.setdefault(config_name, {})[split] = files
        infos[config_name] = info

    largest = max(sum(split.num_examples for split in info.splits.values()) for info in infos.values())
    card_data.size_categories = size_category(largest)
    infos.to_dataset_card_data(card_data)
    DatasetCard(f"---\n{card_data.to_yaml()}\n---\n\n{card_body}").save(out / "README.md")
    return summary


def encode_flac(data: bytes) -> bytes:
    """Re-encode 16- or 24-bit PCM audio (WAV, FLAC, AIFF, ...) as FLAC: the same samples, about half the bytes."""
    with sf.SoundFile(io.BytesIO(data)) as source:
        dtype = _FLAC_SAMPLE_TYPES.get(source.subtype)
        if dtype is None:
            raise ValueError(
                f"{source.format}/{source.subtype} audio cannot be re-encoded losslessly as FLAC "
                f"(only {' or '.join(_FLAC_SAMPLE_TYPES)} PCM can); write the copy with audio_format='wav'"
            )
        samples = source.read(dtype=dtype, always_2d=True)
        encoded = io.BytesIO()
        # soundfile takes the level as 0..1; libsndfile maps it onto libFLAC's 0..8.
        level = FLAC_COMPRESSION_LEVEL / 8
        sf.write(encoded, samples, source.samplerate, format="FLAC", subtype=source.subtype, compression_level=level)
    return encoded.getvalue()


def size_category(num_rows: int) -> str:
    """The Hub's size_categories value for a dataset of ``num_rows`` rows (``1K<n<10K`` for 5,378)."""
    return next((name for bound, name in _SIZE_CATEGORIES if num_rows < bound), "n>1T")


# ------------------------------------------------------------------------------------------ checks


class _Limits(NamedTuple):
    min_shards: int
    shard_multiple: int
    max_shard_bytes: int
    max_row_group_bytes: int
    max_row_group_rows: int


def _check_arguments(
    configs, card_metadata: dict, audio_format: str, num_shards, limits: _Limits
) -> dict[str, int | None]:
    """Refuses bad input before any work; returns each config's fixed shard count (None: sized by the limits)."""
    if audio_format not in AUDIO_FORMATS:
        raise ValueError(f"unknown audio_format {audio_format!r}: choose one of {', '.join(AUDIO_FORMATS)}")
    if not configs:
        raise ValueError("configs is empty: pass {config_name: DatasetDict} with at least one config")
    empty = [name for name, splits in configs.items() if not splits]
    if empty:
        raise ValueError(f"config(s) {', '.join(empty)} have no split")
    # load_dataset refuses a split without rows ("corresponds to no data"): leave it out instead.
    rowless = [
        f"{name}/{split}" for name, splits in configs.items() for split, dataset in splits.items() if not len(dataset)
    ]
    if rowless:
        raise ValueError(f"split(s) {', '.join(rowless)} have no rows")
    for name, value in limits._asdict().items():
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    generated = sorted(set(card_metadata) & set(_GENERATED_CARD_KEYS))
    if generated:
        raise ValueError(f"card_metadata must not set {', '.join(generated)}: write_parquet_copy writes them")
    if not isinstance(num_shards, Mapping):
        num_shards = dict.fromkeys(configs, num_shards)
    for name, count in num_shards.items():
        if count is not None and (not isinstance(count, int) or count < 1):
            raise ValueError(f"num_shards must be a whole number of at least 1 (for config {name!r}), got {count!r}")
    return {name: num_shards.get(name) for name in configs}


def _config_features(config_name: str, splits) -> datasets.Features:
    """The config's one set of features: the card declares a config's features once, for all its splits."""
    features = [dataset.features for dataset in splits.values()]
    if any(other != features[0] for other in features[1:]):
        raise ValueError(f"the splits of config {config_name!r} have different features: {', '.join(splits)}")
    return features[0]


def _metadata_configs(configs) -> MetadataConfigs:
    """The card's ``configs:``, each split reading its own shards; the config named "default" loads first."""
    return MetadataConfigs(
        {
            name: {
                "data_files": [{"split": split, "path": f"data/{name}/{split}-*"} for split in splits],
                **({"default": True} if name == "default" else {}),
            }
            for name, splits in configs.items()
        }
    )


# --------------------------------------------------------------------------------- rows to store


def _write_config(name: str, splits, out: Path, audio_format, num_shards, limits: _Limits, num_proc) -> dict:
    """``{split: (shards, uncompressed bytes)}`` of one config (the bytes are the card's num_bytes).

    One progress bar for the config's writing, over its bytes: ``to_parquet`` would draw one per shard.
    """
    with tempfile.TemporaryDirectory(prefix="parquet-copy-") as scratch:
        prepared = _prepare(name, splits, audio_format, num_proc, scratch)
        row_bytes = {split: _row_nbytes(dataset) for split, dataset in prepared.items()}
        total = sum(int(sizes.sum()) for sizes in row_bytes.values())
        written = {}
        with (
            hf_tqdm(total=total, desc=f"Writing data/{name}", unit="B", unit_scale=True) as bar,
            datasets_bars_silenced(),
        ):
            for split, dataset in prepared.items():
                sizes = row_bytes[split]
                if num_shards is None:
                    count = _count_shards(sizes, limits, f"{name}/{split}")
                else:
                    count = min(num_shards, len(sizes))  # a shard without rows cannot be cut
                files = _write_shards(dataset, sizes, out, f"data/{name}/{split}", count, limits, bar)
                written[split] = files, int(sizes.sum())
        del prepared  # unmaps its Arrow file, so removing scratch frees the disk
    return written


def _prepare(name: str, splits, audio_format: str, num_proc: int | None, scratch: str) -> dict[str, datasets.Dataset]:
    """Each split's rows as the copy stores them, written batch by batch to ``scratch`` when they must change.

    Self-contained rows kept as they are need no pass at all, so a WAV copy reads the data only once. Rows
    that change go through one ``map`` over the config's splits end to end (one progress bar for the config,
    not one per split), then each split is its contiguous slice of the result.
    """
    features = next(iter(splits.values())).features
    audio_columns = [column for column, feature in features.items() if isinstance(feature, datasets.Audio)]
    audio_columns = audio_columns if audio_format == "flac" else []
    if not audio_columns and not any(_has_external_files(dataset) for dataset in splits.values()):
        return dict(splits)
    whole = datasets.concatenate_datasets(list(splits.values()))
    batch_rows = _batch_rows(whole)
    mapped = whole.with_format("arrow").map(
        _embed_and_encode,
        fn_kwargs={"audio_columns": audio_columns},
        batched=True,
        batch_size=batch_rows,
        writer_batch_size=batch_rows,
        features=whole.features,
        num_proc=num_proc,
        cache_file_name=os.path.join(scratch, "rows.arrow"),
        load_from_cache_file=False,
        desc=f"Encoding {name} audio as FLAC" if audio_columns else f"Embedding {name} media files",
    )
    prepared, start = {}, 0
    for split, dataset in splits.items():
        prepared[split] = mapped.select(range(start, start + len(dataset)))
        start += len(dataset)
    return prepared


def _batch_rows(dataset: datasets.Dataset) -> int:
    """Rows per batch held in memory: about _BATCH_BYTES of them, measured on the first rows.

    ``_estimate_nbytes`` (push_to_hub's estimate) counts the files that cells point to, but it turns up to
    1,000 rows into Python objects (3 GB of audio, if they share one Arrow chunk): it sees a few rows here.
    """
    probe = dataset.select(range(min(len(dataset), _PROBE_ROWS)))
    row_bytes = probe._estimate_nbytes() / max(1, len(probe))
    return max(1, min(1000, int(_BATCH_BYTES // max(1.0, row_bytes))))


def _has_external_files(dataset: datasets.Dataset) -> bool:
    """Whether some media cell holds only a path: the copy must hold the file's bytes instead."""
    for name, feature in dataset.features.items():
        if not require_storage_embed(feature):
            continue
        cells = dataset.data.column(name)
        if not (pa.types.is_struct(cells.type) and cells.type.get_field_index("bytes") >= 0):
            return True  # media inside lists or structs: embed_table_storage looks at them
        path_only = pc.and_(pc.is_null(pc.struct_field(cells, "bytes")), pc.is_valid(pc.struct_field(cells, "path")))
        if pc.any(path_only).as_py():
            return True
    return False


def _embed_and_encode(table: pa.Table, audio_columns: list[str]) -> pa.Table:
    """One batch: files read into their cells (as push_to_hub does), then the audio columns as FLAC."""
    table = embed_table_storage(table)
    for name in audio_columns:
        table = table.set_column(table.column_names.index(name), table.schema.field(name), _flac_cells(table[name]))
    return table


def _flac_cells(column: pa.ChunkedArray) -> pa.Array:
    """The column's cells as FLAC, ``FLAC_ENCODERS`` at a time (libFLAC encodes without the GIL)."""

    def encode(cell: dict | None) -> dict | None:
        if cell is None:
            return None
        try:
            return {"bytes": encode_flac(cell["bytes"]), "path": _flac_path(cell["path"])}
        except (ValueError, TypeError, sf.LibsndfileError) as err:
            raise ValueError(f"audio {cell['path']!r}: {err}") from err

    cells = [encoded for _, encoded in ordered_map(encode, column.to_pylist(), FLAC_ENCODERS)]
    return pa.array(cells, type=column.type)


def _flac_path(path: str | None) -> str | None:
    """``loop.wav`` -> ``loop.flac``: decoders and the viewer read the format from the name."""
    return None if path is None else os.path.splitext(path)[0] + ".flac"


# ------------------------------------------------------------------------------ shards, row groups


def _row_nbytes(dataset: datasets.Dataset) -> np.ndarray:
    """Uncompressed (Arrow) bytes of each row in order: the size limits must hold for uneven rows too."""
    sizes = []
    for batch in dataset.with_format("arrow").iter(batch_size=_batch_rows(dataset)):
        sizes.extend(batch.slice(row, 1).nbytes for row in range(batch.num_rows))
    return np.asarray(sizes, dtype=np.int64)


def _contiguous_parts(num_rows: int, count: int) -> list[range]:
    """``count`` runs of consecutive rows whose lengths differ by one at most (as ``Dataset.shard`` cuts)."""
    size, extra = divmod(num_rows, count)
    starts = [part * size + min(part, extra) for part in range(count + 1)]
    return [range(start, stop) for start, stop in zip(starts, starts[1:])]


def _count_shards(row_bytes: np.ndarray, limits: _Limits, where: str) -> int:
    """Fewest shards with no shard over the limit, at least ``min_shards`` when there are rows for them, and a
    multiple of ``shard_multiple`` when there are that many rows: split_dataset_by_node then hands each node
    whole shards. Only rows too large for every such count give another count, with a warning."""
    num_rows, multiple = len(row_bytes), limits.shard_multiple
    max_bytes = int(limits.max_shard_bytes * _HEADROOM)
    prefix = np.concatenate([[0], np.cumsum(row_bytes)])

    def fits(count: int) -> bool:
        edges = [part.start for part in _contiguous_parts(num_rows, count)] + [num_rows]
        return np.diff(prefix[edges]).max() <= max_bytes

    least = max(1, min(num_rows, max(limits.min_shards, math.ceil(prefix[-1] / max_bytes))))
    if num_rows >= multiple:
        count = next(
            (c for c in range(math.ceil(least / multiple) * multiple, num_rows + 1, multiple) if fits(c)), None
        )
        if count is not None:
            return count
    count = next((c for c in range(least, num_rows) if fits(c)), num_rows)
    if num_rows >= multiple:
        warnings.warn(
            f"{where}: no multiple of shard_multiple={multiple} shards keeps every shard within "
            f"max_shard_bytes={limits.max_shard_bytes} (rows too large for it); writing {count} shards, which "
            "split_dataset_by_node cannot hand out whole to every world size",
            stacklevel=2,
        )
    return count


def _rows_per_group(row_bytes: np.ndarray, max_bytes: int, max_rows: int) -> int:
    """Most rows per row group (a shard is cut every n rows) that keeps every group within ``max_bytes``."""
    for rows in range(min(max_rows, len(row_bytes)), 1, -1):
        if np.add.reduceat(row_bytes, np.arange(0, len(row_bytes), rows)).max() <= max_bytes:
            return rows
    return 1


def statistics_columns(schema: pa.Schema) -> list[str]:
    """The Parquet leaf columns worth statistics: every one but raw bytes (audio and image bytes).

    pyarrow drops a binary column's min and max above 4 KB (``max_statistics_size``), after computing them: for
    rows of audio that was ~0.2 s per 200 MB of shard, a third of the writing or more (measured here), for
    statistics that are never written. The leaves and their names are pyarrow's own, read off the Parquet schema
    of an empty table: raw bytes are byte arrays with no logical type (strings are byte arrays too).
    """
    empty = io.BytesIO()
    pq.write_table(schema.empty_table(), empty)
    empty.seek(0)
    columns = pq.ParquetFile(empty).schema
    return [
        column.path
        for column in map(columns.column, range(len(columns)))
        if not (column.physical_type == "BYTE_ARRAY" and column.logical_type.type == "NONE")
    ]


def _write_shards(dataset, row_bytes, out: Path, stem: str, count: int, limits: _Limits, bar) -> list[dict]:
    """Each shard through ``Dataset.to_parquet``, under a temporary name until whole: no half shard is ever read.

    ``SHARD_WRITERS`` shards at a time: pyarrow encodes and writes (content-defined chunking included) without
    the GIL, so the shards share the cores.
    """
    statistics = statistics_columns(dataset.features.arrow_schema)

    def write(part: tuple[int, range]) -> dict:
        index, rows = part
        path = out / f"{stem}-{index:05d}-of-{count:05d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial")  # hidden, and outside the card's {split}-* pattern
        group_bytes = int(limits.max_row_group_bytes * _HEADROOM)
        group_rows = _rows_per_group(row_bytes[rows.start : rows.stop], group_bytes, limits.max_row_group_rows)
        dataset.select(rows).to_parquet(str(partial), batch_size=group_rows, write_statistics=statistics)
        os.replace(partial, path)
        return {"path": path.relative_to(out).as_posix(), "bytes": path.stat().st_size, "rows": len(rows)}

    files = []
    for (_, rows), file in ordered_map(write, enumerate(_contiguous_parts(len(dataset), count)), SHARD_WRITERS):
        bar.update(int(row_bytes[rows.start : rows.stop].sum()))
        files.append(file)
    return files
