"""``show``: rows of a Parquet copy as ``load_dataset`` returns them, with no project code reading them."""

from __future__ import annotations

import json
import os

import datasets

from poprok.publish.pop_rok_copy import CONFIG_NAMES


def register(commands) -> None:
    parser = commands.add_parser("show", help="load a Parquet copy (folder or Hub repo) with load_dataset, print rows")
    parser.add_argument("path", help="an export folder or a Hub repo id")
    parser.add_argument("--config", choices=CONFIG_NAMES, default="default")
    parser.add_argument("--rows", type=int, default=3)
    parser.add_argument("--streaming", action="store_true")
    parser.set_defaults(run=run)


def run(args) -> int:
    print(show_rows(args.path, args.config, args.rows, args.streaming))
    return 0


def show_rows(path: str, config: str, rows: int, streaming: bool = False) -> str:
    """The first ``rows`` rows of the copy's first split, instruments named and audio summarised."""
    splits = datasets.get_dataset_split_names(path, config)
    # A folder exported again may hold other rows of the same sizes, which datasets' cache cannot tell apart.
    fresh = "force_redownload" if os.path.isdir(path) and not streaming else None
    dataset = datasets.load_dataset(path, config, split=splits[0], streaming=streaming, download_mode=fresh)
    lines = [f"{path} [{config}] {splits[0]}: {dataset.features}"]
    instruments = dataset.features["instruments"].feature
    for row in dataset.take(rows) if streaming else dataset.select(range(min(rows, dataset.num_rows))):
        row["instruments"] = instruments.int2str(row["instruments"])
        if "audio" in row:
            samples = row["audio"].get_all_samples()
            row["audio"] = f"{tuple(samples.data.shape)} samples at {samples.sample_rate} Hz"
        lines.append(
            json.dumps({k: v for k, v in row.items() if k not in ("beats", "downbeats", "onsets")}, default=str)
        )
    return "\n".join(lines)
