"""``export``: write the script-free Parquet copy with its dataset card."""

from __future__ import annotations

from poprok.cli.arguments import add_copy_arguments, builder_kwargs
from poprok.publish.pop_rok_copy import export


def register(commands) -> None:
    parser = commands.add_parser("export", help="write the script-free Parquet copy with its dataset card")
    parser.add_argument("out_dir")
    add_copy_arguments(parser)
    parser.set_defaults(run=run)


def run(args) -> int:
    summary = export(args.out_dir, args.config, args.audio_format, args.num_shards, **builder_kwargs(args))
    print(describe(args.out_dir, summary))
    return 0


def describe(out_dir, summary: dict) -> str:
    lines = [f"wrote {out_dir}:"]
    for config, splits in summary.items():
        for split, files in splits.items():
            rows, total = sum(f["rows"] for f in files), sum(f["bytes"] for f in files)
            lines.append(f"  {config}/{split}: {rows} rows in {len(files)} shard(s), {total / 1e6:.1f} MB")
    lines.append("  README.md (dataset card with YAML), stats.png")
    return "\n".join(lines)
