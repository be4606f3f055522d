"""``push``: publish the Parquet copy and its card to a Hub dataset repo, in one commit."""

from __future__ import annotations

from poprok.cli.arguments import add_copy_arguments, builder_kwargs
from poprok.publish.pop_rok_copy import push


def register(commands) -> None:
    parser = commands.add_parser("push", help="publish the Parquet copy and card to the Hub")
    parser.add_argument("repo_id")
    add_copy_arguments(parser)
    parser.add_argument("--private", action="store_true")
    parser.add_argument("--revision", help="branch to push to (created if missing)")
    parser.add_argument("--create-pr", action="store_true", help="open a pull request instead of committing")
    parser.add_argument("--token", help="a write token (default: $HF_TOKEN or the stored login)")
    parser.set_defaults(run=run)


def run(args) -> int:
    commit = push(
        args.repo_id, args.config, args.audio_format, private=args.private, revision=args.revision,
        create_pr=args.create_pr, token=args.token, num_shards=args.num_shards, **builder_kwargs(args),
    )  # fmt: skip
    print(f"published: {commit.pr_url or commit.commit_url}")
    print(f"repo: {commit.repo_url}")
    print(f'load it: datasets.load_dataset("{args.repo_id}", split="train")  # or "labels"; streaming=True')
    return 0
