"""Arguments several commands share: where the archives are, how to build, what to copy."""

from __future__ import annotations

import argparse

from pop_rok import BASE_URL_ENV, ON_ERROR, ZENODO_RECORD_API
from poprok.publish.pop_rok_copy import AUDIO_FORMAT_NOTES, CONFIG_NAMES

BUILDER_KEYWORDS = ("data_dir", "base_url", "cache_dir", "on_error", "verify", "record_url", "connections")


def builder_kwargs(args) -> dict:
    """The builder keywords the command line was given (unset ones keep the config's defaults)."""
    return {name: getattr(args, name) for name in BUILDER_KEYWORDS if getattr(args, name, None)}


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--data-dir", help="folder holding the two archives, or their extracted contents")
    source.add_argument("--base-url", help=f"URL prefix under which the two archives live (also ${BASE_URL_ENV})")
    parser.add_argument(
        "--record-url", help=f"Zenodo record API URL for --verify/--online (default {ZENODO_RECORD_API})"
    )


def add_build_arguments(parser: argparse.ArgumentParser) -> None:
    add_source_arguments(parser)
    parser.add_argument("--cache-dir", help="where datasets caches the prepared dataset")
    parser.add_argument(
        "--on-error", choices=ON_ERROR, help="raise (default): fail listing every problem; skip: leave bad loops out"
    )
    parser.add_argument(
        "--verify", action="store_true", help="check downloaded archives' size and md5 against the record"
    )
    parser.add_argument("--connections", type=int, help="byte ranges to download at once (default 4)")


def add_copy_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", choices=[*CONFIG_NAMES, "all"], default="all")
    parser.add_argument("--audio-format", choices=list(AUDIO_FORMAT_NOTES), default="wav")
    parser.add_argument("--num-shards", type=int, help="Parquet shards per config (default: from the data size)")
    add_build_arguments(parser)
