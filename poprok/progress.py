"""Progress bars: ``datasets``' own silenced where the project shows one bar for a whole stage."""

from __future__ import annotations

import contextlib

import datasets


@contextlib.contextmanager
def datasets_bars_silenced():
    """``datasets``' progress bars off for the block, then as they were (unless its environment variable rules)."""
    if datasets.utils.are_progress_bars_disabled() or datasets.config.HF_DATASETS_DISABLE_PROGRESS_BARS is False:
        yield
        return
    datasets.utils.disable_progress_bars()
    try:
        yield
    finally:
        datasets.utils.enable_progress_bars()
