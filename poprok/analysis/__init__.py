"""Listening to loops: per-band onsets on the beat grid, audio facts and pattern ids."""

from poprok.analysis.facts import CLIPPED_AT_LEAST, SILENT_LUFS
from poprok.analysis.listening import ListenError, Listening, find_facts, listen
from poprok.analysis.onsets import BANDS, OFF_GRID_FIT
from poprok.analysis.patterns import SHIPPED, Coarseness, pattern_id

__all__ = [
    "BANDS",
    "CLIPPED_AT_LEAST",
    "OFF_GRID_FIT",
    "SHIPPED",
    "SILENT_LUFS",
    "Coarseness",
    "ListenError",
    "Listening",
    "find_facts",
    "listen",
    "pattern_id",
]
