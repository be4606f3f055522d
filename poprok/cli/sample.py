"""``sample``: write synthetic POP-ROK-shaped archives (demos, benchmarks)."""

from __future__ import annotations

from poprok.record import ARCHIVES
from poprok.sample.archives import SAMPLE_LABELS, SAMPLE_LAYOUTS, make_sample


def register(commands) -> None:
    parser = commands.add_parser("sample", help="write synthetic POP-ROK-shaped archives (demos, benchmarks)")
    parser.add_argument("out_dir")
    parser.add_argument("--loops", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--layout", choices=SAMPLE_LAYOUTS, default="per-loop")
    parser.add_argument(
        "--labels",
        choices=SAMPLE_LABELS,
        default="plain",
        help="varied: labels in many shapes, as the real archive might",
    )
    parser.set_defaults(run=run)


def run(args) -> int:
    loops = make_sample(args.out_dir, args.loops, args.seed, args.layout, labels=args.labels)
    archives = ", ".join(ARCHIVES.values())
    print(f"wrote {len(loops)} loops ({args.layout} layout, {args.labels} labels) to {args.out_dir}: {archives}")
    return 0
