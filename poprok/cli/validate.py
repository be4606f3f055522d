"""``validate``: walk both archives and report every problem (exit 0 only when there is none)."""

from __future__ import annotations

import json

from poprok.cli.arguments import add_source_arguments
from poprok.record import ZENODO_RECORD_API
from poprok.validation import validate


def register(commands) -> None:
    parser = commands.add_parser("validate", help="walk both archives and report every problem (exit 0: none)")
    add_source_arguments(parser)
    parser.add_argument(
        "--online", action="store_true", help="also check the archives' size and md5 against the record"
    )
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object on stdout")
    parser.set_defaults(run=run)


def run(args) -> int:
    report = validate(args.data_dir, args.base_url, args.online, args.record_url or ZENODO_RECORD_API)
    print(json.dumps(report.to_json(), indent=1) if args.json else report)
    return 0 if not report.problems else 1
