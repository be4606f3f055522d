"""Which splits a set of loops fills: the splits a build must declare, computed from the names alone."""

from __future__ import annotations

from collections.abc import Iterable

from poprok.splits import FOLD_SPLITS, SPLIT_FOLDS, track_fold


def split_of_track(track: int) -> str:
    return FOLD_SPLITS[track_fold(track)]


def filled_splits(tracks: Iterable[int]) -> list[str]:
    """The splits the tracks' folds fill, in the builder's order (train, validation, test); absent ones left out."""
    hit = {split_of_track(track) for track in tracks}
    return [split for split in SPLIT_FOLDS if split in hit]


def names_by_split(loops) -> dict[str, list[str]]:
    """split -> sorted loop names, for loops with ``name`` and ``track`` (only the splits they fill)."""
    out: dict[str, list[str]] = {split: [] for split in filled_splits(loop.track for loop in loops)}
    for loop in loops:
        out[split_of_track(loop.track)].append(loop.name)
    return {split: sorted(names) for split, names in out.items()}
