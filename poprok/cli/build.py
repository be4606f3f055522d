"""``build``: download (or find) the archives, prepare the dataset and say what it holds, split by split."""

from __future__ import annotations

import datasets

from pop_rok import PopRok, load_pop_rok
from poprok.cli.arguments import add_build_arguments, builder_kwargs
from poprok.publish.pop_rok_copy import split_stats


def register(commands) -> None:
    parser = commands.add_parser("build", help="download (or find) the archives and prepare the dataset")
    parser.add_argument("--config", choices=[c.name for c in PopRok.BUILDER_CONFIGS], default="default")
    add_build_arguments(parser)
    parser.set_defaults(run=run)


def run(args) -> int:
    print(summarize(load_pop_rok(config=args.config, **builder_kwargs(args))))
    return 0


def summarize(splits: datasets.DatasetDict) -> str:
    """Rows, hours, BPM range and the share of rows playing each instrument, in all and per split."""
    stats = split_stats(splits)
    (_, heads), (_, rows) = stats[0], stats[1]
    lines = [f"rows: {rows[0]} ({', '.join(f'{head} {count}' for head, count in zip(heads[1:], rows[1:]))})"]
    lines += [f"  {what:<18}" + "".join(f"{value:>12}" for value in values) for what, values in stats[:4]]
    lines.append("  share of rows playing:")
    lines += [f"  {what:<18}" + "".join(f"{value:>12}" for value in values) for what, values in stats[4:]]
    return "\n".join(lines)
