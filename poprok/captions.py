"""Text captions for text-to-audio training, derived from a loop's labels alone: nothing a label does not say.

caption(112, 8, ["Kick", "Snare"]) == "pop rock drum loop, 112 BPM, 8 bars of 4/4: kick, snare"
"""

from __future__ import annotations

from collections.abc import Iterable


def caption(bpm: int, num_bars: int, instruments: Iterable[str], genre: str = "pop", subgenre: str = "rock") -> str:
    """The caption of one loop: genre, tempo, length and the drums its label names, in the label's order."""
    drums = ", ".join(dict.fromkeys(name.lower() for name in instruments))
    bars = "1 bar" if num_bars == 1 else f"{num_bars} bars"
    return f"{genre} {subgenre} drum loop, {bpm} BPM, {bars} of 4/4" + (f": {drums}" if drums else "")
