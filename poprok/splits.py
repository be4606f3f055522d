"""Folds and splits: which of train, validation and test each loop belongs to."""

from __future__ import annotations

import hashlib

# Folds hash the track number: stable for any subset in any order, but the track is a tempo-sorted index, not
# a pattern: one pattern's renders can land in several splits (see the README's Splits).
NUM_FOLDS = 10
SPLIT_FOLDS = {"train": tuple(range(8)), "validation": (8,), "test": (9,)}
FOLD_SPLITS = {fold: split for split, folds in SPLIT_FOLDS.items() for fold in folds}
ALL_SPLITS = "all"  # datasets' Split.ALL, every split that exists: load_pop_rok(split=ALL_SPLITS)


def track_fold(track: int) -> int:
    """The fold (0-9) of a track number: ``int(sha256(f"{track:04d}".encode()).hexdigest(), 16) % 10``.

    A hash of the four digits of the file name, not a shuffle: the same on every machine, for any subset
    of the data in any order, and anyone can recompute it from a loop's name alone.
    """
    return key_fold(f"{track:04d}")


def key_fold(key: str) -> int:
    """The fold (0-9) of any group key: ``int(sha256(key.encode()).hexdigest(), 16) % 10``."""
    return int(hashlib.sha256(key.encode()).hexdigest(), 16) % NUM_FOLDS
