"""The command line: ``python pop_rok.py COMMAND`` (sample, build, validate, export, push, show)."""

from __future__ import annotations

import argparse
import json
import sys

import datasets

import pop_rok
from pop_rok import ARCHIVES, BASE_URL_ENV, ON_ERROR, PopRok, PopRokError, ZENODO_RECORD_API, load_pop_rok, validate
from pop_rok_publish import AUDIO_FORMAT_NOTES, CONFIG_NAMES, export, push, split_stats
from pop_rok_sample import SAMPLE_LABELS, SAMPLE_LAYOUTS, make_sample


def _builder_kwargs(args) -> dict:
    """The builder keywords the command line was given (unset ones keep the config's defaults)."""
    names = ("data_dir", "base_url", "cache_dir", "on_error", "verify", "record_url", "connections")
    return {name: getattr(args, name) for name in names if getattr(args, name, None)}


def summarize(splits: datasets.DatasetDict) -> str:
    """`build`'s report: rows, hours, BPM range and the share of rows playing each instrument, per split."""
    stats = split_stats(splits)
    (_, heads), (_, rows) = stats[0], stats[1]
    lines = [f"rows: {rows[0]} ({', '.join(f'{head} {count}' for head, count in zip(heads[1:], rows[1:]))})"]
    lines += [f"  {what:<18}" + "".join(f"{value:>12}" for value in values) for what, values in stats[:4]]
    lines.append("  share of rows playing:")
    lines += [f"  {what:<18}" + "".join(f"{value:>12}" for value in values) for what, values in stats[4:]]
    return "\n".join(lines)


def _describe_export(out_dir, summary: dict) -> str:
    lines = [f"wrote {out_dir}:"]
    for config, splits in summary.items():
        for split, files in splits.items():
            total = sum(f["bytes"] for f in files)
            lines.append(f"  {config}/{split}: {sum(f['rows'] for f in files)} rows in {len(files)} shard(s), {total / 1e6:.1f} MB")
    lines.append("  README.md (dataset card with YAML), stats.png")
    return "\n".join(lines)


def show_rows(path: str, config: str, rows: int, streaming: bool = False) -> str:
    """Rows of a Parquet copy as `load_dataset` returns them, with no project code involved in reading."""
    dataset = datasets.load_dataset(path, config, split="train", streaming=streaming)
    lines = [f"{path} [{config}]: {dataset.features}"]
    instruments = dataset.features["instruments"].feature
    for row in dataset.take(rows) if streaming else dataset.select(range(min(rows, dataset.num_rows))):
        row["instruments"] = instruments.int2str(row["instruments"])
        if "audio" in row:
            samples = row["audio"].get_all_samples()
            row["audio"] = f"{tuple(samples.data.shape)} samples at {samples.sample_rate} Hz"
        lines.append(json.dumps({k: v for k, v in row.items() if k not in ("beats", "downbeats")}, default=str))
    return "\n".join(lines)


def _add_source_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--data-dir", help="folder holding the two archives, or their extracted contents")
    source.add_argument("--base-url", help=f"URL prefix under which the two archives live (also ${BASE_URL_ENV})")
    parser.add_argument("--record-url", help=f"Zenodo record API URL for --verify/--online (default {ZENODO_RECORD_API})")


def _add_build_arguments(parser: argparse.ArgumentParser) -> None:
    _add_source_arguments(parser)
    parser.add_argument("--cache-dir", help="where datasets caches the prepared dataset")
    parser.add_argument("--on-error", choices=ON_ERROR, help="raise (default): fail listing every problem; skip: leave bad loops out")
    parser.add_argument("--verify", action="store_true", help="check downloaded archives' size and md5 against the record")
    parser.add_argument("--connections", type=int, help="byte ranges to download at once (default 4)")


def _add_copy_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", choices=[*CONFIG_NAMES, "all"], default="all")
    parser.add_argument("--audio-format", choices=list(AUDIO_FORMAT_NOTES), default="wav")
    parser.add_argument("--num-shards", type=int, help="Parquet shards per config (default: from the data size)")
    _add_build_arguments(parser)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="pop_rok.py", description=pop_rok.__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    sample = commands.add_parser("sample", help="write synthetic POP-ROK-shaped archives (tests, demos)")
    sample.add_argument("out_dir")
    sample.add_argument("--loops", type=int, default=8)
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--layout", choices=SAMPLE_LAYOUTS, default="per-loop")
    sample.add_argument("--labels", choices=SAMPLE_LABELS, default="plain", help="varied: labels in many shapes, as the real archive might hold")

    build = commands.add_parser("build", help="download (or find) the archives and prepare the dataset")
    build.add_argument("--config", choices=[c.name for c in PopRok.BUILDER_CONFIGS], default="default")
    _add_build_arguments(build)

    export_command = commands.add_parser("export", help="write the script-free Parquet copy with its dataset card")
    export_command.add_argument("out_dir")
    _add_copy_arguments(export_command)

    push_command = commands.add_parser("push", help="publish the Parquet copy and card to the Hub")
    push_command.add_argument("repo_id")
    _add_copy_arguments(push_command)
    push_command.add_argument("--private", action="store_true")
    push_command.add_argument("--revision", help="branch to push to (created if missing)")
    push_command.add_argument("--create-pr", action="store_true", help="open a pull request instead of committing")
    push_command.add_argument("--token", help="a write token (default: $HF_TOKEN or the stored login)")

    show = commands.add_parser("show", help="load a Parquet copy (folder or Hub repo) with load_dataset and print rows")
    show.add_argument("path", help="an export folder or a Hub repo id")
    show.add_argument("--config", choices=CONFIG_NAMES, default="default")
    show.add_argument("--rows", type=int, default=3)
    show.add_argument("--streaming", action="store_true")

    check = commands.add_parser("validate", help="walk both archives and report every problem (exit 0: none)")
    _add_source_arguments(check)
    check.add_argument("--online", action="store_true", help="also check the archives' size and md5 against the Zenodo record")
    check.add_argument("--json", action="store_true", help="print the report as one JSON object on stdout")

    args = parser.parse_args(argv)
    try:
        if args.command == "sample":
            loops = make_sample(args.out_dir, args.loops, args.seed, args.layout, labels=args.labels)
            print(f"wrote {len(loops)} loops ({args.layout} layout, {args.labels} labels) to {args.out_dir}: {', '.join(ARCHIVES.values())}")
        elif args.command == "build":
            print(summarize(load_pop_rok(config=args.config, **_builder_kwargs(args))))
        elif args.command == "export":
            summary = export(args.out_dir, args.config, args.audio_format, args.num_shards, **_builder_kwargs(args))
            print(_describe_export(args.out_dir, summary))
        elif args.command == "push":
            commit = push(
                args.repo_id, args.config, args.audio_format, private=args.private, revision=args.revision,
                create_pr=args.create_pr, token=args.token, num_shards=args.num_shards, **_builder_kwargs(args),
            )
            print(f"published: {commit.pr_url or commit.commit_url}")
            print(f"repo: {commit.repo_url}")
            print(f'load it: datasets.load_dataset("{args.repo_id}", split="train")  # or "labels"; streaming=True')
        elif args.command == "show":
            print(show_rows(args.path, args.config, args.rows, args.streaming))
        elif args.command == "validate":
            report = validate(args.data_dir, args.base_url, args.online, args.record_url or ZENODO_RECORD_API)
            print(json.dumps(report.to_json(), indent=1) if args.json else report)
            return 0 if not report.problems else 1
    except (PopRokError, ImportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0
