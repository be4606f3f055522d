"""POP-ROK's script-free Parquet copy and its publication: what `export` and `push` do with the builder.

The copy holds every split of both configs (``parquet_copy`` does the generic writing), a dataset card
rendered from ``dataset_card.md`` with a per-split table, and the label-statistics figure.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.compute as pc

from pop_rok import LICENSE, PopRok, load_pop_rok
from poprok.errors import PopRokError
from poprok.grid import BEATS_PER_BAR, seconds_at
from poprok.publish.hub import publish_folder
from poprok.publish.parquet_copy import write_parquet_copy
from poprok.publish.stats_figure import plot_label_stats
from poprok.record import BARS_PER_LOOP

logger = logging.getLogger(__name__)


CONFIG_NAMES = tuple(config.name for config in PopRok.BUILDER_CONFIGS)
CARD_TEMPLATE = Path(__file__).with_name("dataset_card.md")  # a link to the top-level dataset_card.md
CARD_METADATA = {
    "license": LICENSE,
    "pretty_name": "POP-ROK: pop-rock drum loops with MIDI drum labels",
    "task_categories": ["audio-classification"],
    "tags": ["music", "drums", "mir", "drum-transcription", "tempo-estimation", "beat-tracking", "synthetic"],
}
AUDIO_FORMAT_NOTES = {
    "wav": "WAV, the archive's original 16-bit 44.1 kHz stereo bytes, unchanged",
    "flac": "FLAC, re-encoded losslessly from the original WAV (decodes to the same samples, bit for bit)",
}
PLACEHOLDER_REPO_ID = "<org>/pop-rok"


def _config_names(config: str) -> list[str]:
    return list(CONFIG_NAMES) if config == "all" else [config]


def export(
    out_dir, config: str = "all", audio_format: str = "wav", num_shards=None, repo_id=None, **builder_kwargs
) -> dict:
    """Write the script-free Parquet copy of ``config`` ("all" for both) with its card and figure."""
    if audio_format not in AUDIO_FORMAT_NOTES:
        raise PopRokError(f"audio_format must be one of {', '.join(AUDIO_FORMAT_NOTES)}, got {audio_format!r}")
    prepared = {name: _with_rows(load_pop_rok(config=name, **builder_kwargs)) for name in _config_names(config)}
    body = card_body(next(iter(prepared.values())), audio_format, repo_id)
    labels = (
        prepared["labels"] if "labels" in prepared else _with_rows(load_pop_rok(config="labels", **builder_kwargs))
    )
    # Unless num_shards says otherwise: the audio config's shards follow write_parquet_copy's rule (a multiple of
    # 16), and the 210 KB labels config is one file per split.
    summary = write_parquet_copy(
        out_dir,
        prepared,
        card_body=body,
        card_metadata=CARD_METADATA,
        audio_format=audio_format,
        num_shards=num_shards or {"labels": 1},
    )
    # After the writing, not beside it on a thread: drawing holds the GIL, and both took longer side by side.
    _plot_stats(Path(out_dir) / "stats.png", labels)
    return summary


def _plot_stats(path: Path, labels: datasets.DatasetDict) -> None:
    """The card's label-statistics figure of every split of the labels config."""
    rows = datasets.concatenate_datasets(list(labels.values()))
    names = rows.features["instruments"].feature.names
    columns = rows.select_columns(["bpm", "instruments"]).to_dict()
    plot_label_stats(
        path,
        bpm=columns["bpm"],
        instruments=[[names[i] for i in row] for row in columns["instruments"]],
        instrument_names=names,
        durations=[seconds_at(BARS_PER_LOOP * BEATS_PER_BAR, bpm) for bpm in columns["bpm"]],
    )


def card_body(splits: datasets.DatasetDict, audio_format: str, repo_id: str | None = None) -> str:
    """dataset_card.md with the repo id, the audio format and the per-split table of ``splits`` filled in."""
    return (
        CARD_TEMPLATE.read_text(encoding="utf-8")
        .replace("{{repo_id}}", repo_id or PLACEHOLDER_REPO_ID)
        .replace("{{audio_format}}", AUDIO_FORMAT_NOTES[audio_format])
        .replace("{{splits_table}}", split_table(splits))
    )


def _with_rows(splits: datasets.DatasetDict) -> datasets.DatasetDict:
    """The splits that have rows: a Hub config cannot declare an empty split (a sample may leave one empty)."""
    empty = [name for name, split in splits.items() if not split.num_rows]
    if empty:
        logger.warning("split(s) %s have no rows and are left out of the copy", ", ".join(empty))
    return datasets.DatasetDict({name: split for name, split in splits.items() if split.num_rows})


def push(
    repo_id: str,
    config: str = "all",
    audio_format: str = "wav",
    *,
    private=False,
    revision=None,
    create_pr=False,
    token=None,
    num_shards=None,
    **builder_kwargs,
):
    """Export into a staging folder and publish it to ``repo_id`` in one commit; returns the CommitInfo."""
    with tempfile.TemporaryDirectory(prefix="pop_rok_push_") as staging:
        export(staging, config, audio_format, num_shards=num_shards, repo_id=repo_id, **builder_kwargs)
        return publish_folder(
            staging,
            repo_id,
            _config_names(config),
            private=private,
            revision=revision,
            create_pr=create_pr,
            token=token,
            commit_message=f"POP-ROK {config} config(s), {audio_format} audio",
        )


def split_stats(splits: datasets.DatasetDict) -> list[tuple[str, list[str]]]:
    """Rows, hours of audio, BPM range and instrument shares, in all and per split, from the label columns only.

    Returns ``[(what, [all, split...])]``; the first entry names the columns. Without a ``duration`` column
    (the labels config) hours are counted as 8 bars at each loop's BPM.
    """
    columns = {
        name: split.select_columns(
            [c for c in ("bpm", "duration", "instruments") if c in split.column_names]
        ).with_format("arrow")[:]
        for name, split in splits.items()
    }
    table = {"all": pa.concat_tables(columns.values()), **columns}
    names = next(iter(splits.values())).features["instruments"].feature.names

    def hours(t: pa.Table) -> float:
        if "duration" in t.column_names:
            return (pc.sum(t["duration"]).as_py() or 0) / 3600
        return sum(seconds_at(BARS_PER_LOOP * BEATS_PER_BAR, bpm) for bpm in t["bpm"].to_pylist()) / 3600

    def share(t: pa.Table, index: int) -> str:
        playing = sum(index in row for row in t["instruments"].to_pylist())
        return f"{playing / t.num_rows:.0%}" if t.num_rows else "-"

    stats = [("", list(table)), ("rows", [str(t.num_rows) for t in table.values()])]
    stats.append(("hours", [f"{hours(t):.3f}" for t in table.values()]))
    stats.append(("bpm", [_range(t["bpm"]) for t in table.values()]))
    stats += [(name, [share(t, index) for t in table.values()]) for index, name in enumerate(names)]
    return stats


def split_table(splits: datasets.DatasetDict) -> str:
    """The card's Markdown table of ``split_stats``."""
    stats = split_stats(splits)
    lines = ["| | " + " | ".join(f"`{head}`" for head in stats[0][1]) + " |", "|---" * (len(stats[0][1]) + 1) + "|"]
    lines += [
        f"| {what if i < 3 else f'{what} (share of rows)'} | " + " | ".join(values) + " |"
        for i, (what, values) in enumerate(stats[1:])
    ]
    return "\n".join(lines)


def _range(values) -> str:
    values = values.to_pylist()
    return f"{min(values)}-{max(values)}" if values else "-"
