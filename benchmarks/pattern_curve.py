"""Pattern ids against the truth of the render corpus: one row per way of cutting them (the README's table).

Run from the repository root: ``PYTHONPATH=. .venv/bin/python benchmarks/pattern_curve.py [--seeds 0 1]``.
Seed 0 is tests/test_analysis.py's corpus; other seeds draw other kits, swaps, rooms, levels and tempos for
the same patterns. Needs fluidsynth and FluidR3_GM.sf2 (tests/render_corpus.py). Columns: the share of
same-pattern pairs split across train/validation/test by ``key_fold(id)`` (a random split by loop: 0.34);
its expectation over the hash (the share of same-pattern pairs with different ids times 0.34: with ~27
patterns the measured leak swings with which ids the hash happens to put together, this does not); the
largest id group (loops, share of the corpus, multiple of one true pattern's renders), ids per true pattern
(min-mean-max) and ids that hold more than one true pattern.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

from poprok.analysis import BANDS, SHIPPED, Coarseness, pattern_id
from poprok.analysis.onsets import onsets
from tests import render_corpus

LOOPS_PER_PATTERN = 6
RISE = (0.45, 0.5, 0.3)  # low, mid, high cuts of the linear-rise rows


def _bits(bits) -> str:
    return f"{int(''.join('1' if bit else '0' for bit in bits), 2):x}"


def _largest_gap(folded: np.ndarray) -> np.ndarray:
    """On from the value above the widest gap between sorted strengths (above a fifth of the top)."""
    ranked = np.sort(folded / folded.max())
    gaps = np.where(ranked[1:] >= 0.2, np.diff(ranked), -1)
    return folded / folded.max() >= ranked[np.argmax(gaps) + 1]


def _otsu(folded: np.ndarray) -> np.ndarray:
    """On above the cut that best separates two classes (Otsu: the largest between-class variance)."""
    best, cut = -1.0, folded.max()
    for value in np.unique(folded)[1:]:
        low, high = folded[folded < value], folded[folded >= value]
        score = len(low) * len(high) * (high.mean() - low.mean()) ** 2
        if score > best:
            best, cut = score, value
    return folded >= cut


def _median_cut(cut):
    """Bits of each band's 1-bar fold by the median over bars, cut by ``cut``."""

    def key(strengths):
        return "-".join(band[0] + _bits(cut(np.median(strengths[band].reshape(-1, 16), axis=0))) for band in BANDS[:3])

    return key


def _high_class(strengths) -> str:
    """Low and mid bits (median fold, 0.5), the high band as its subdivision: 16ths, 8ths or quarters."""
    parts = [
        band[0] + _bits((m := np.median(strengths[band].reshape(-1, 16), axis=0)) >= 0.5 * m.max())
        for band in BANDS[:2]
    ]
    high = np.median(strengths["high"].reshape(-1, 16), axis=0)
    quarters = np.median(high[0::4])
    parts.append(
        "h16" if np.median(high[1::2]) > 0.35 * quarters else "h8" if np.median(high[2::4]) > 0.35 * quarters else "h4"
    )
    return "-".join(parts)


METHODS = {
    "dB flux, mean of 2-bar folds, 0.4 (shipped before)": ("flux", Coarseness(threshold=0.4, bars=2)),
    "dB flux, mean of 1-bar folds, 0.5": ("flux", Coarseness(threshold=0.5)),
    "dB flux, vote of 1-bar folds, 0.5": ("flux", Coarseness(threshold=0.5, fold="vote")),
    "dB flux, median fold, largest gap": ("flux", _median_cut(_largest_gap)),
    "dB flux, median fold, Otsu": ("flux", _median_cut(_otsu)),
    "dB flux, high band as subdivision class": ("flux", _high_class),
    "linear rise, mean of 1-bar folds, .45/.5/.3": ("evidence", Coarseness(threshold=RISE)),
    "linear rise, vote of 1-bar folds, .45/.5/.3": ("evidence", Coarseness(threshold=RISE, fold="vote")),
    "linear rise, vote of 2-bar folds, .45/.5/.3": ("evidence", Coarseness(threshold=RISE, bars=2, fold="vote")),
    "linear rise, median of 2-bar folds, .45/.5/.3": ("evidence", Coarseness(threshold=RISE, bars=2, fold="median")),
    "linear rise, median of 1-bar folds, .45/.7/.3": (
        "evidence",
        Coarseness(threshold=(0.45, 0.7, 0.3), fold="median"),
    ),
    "linear rise, median of 1-bar folds, .45/.5/.3 (shipped before)": (
        "evidence",
        Coarseness(threshold=RISE, fold="median"),
    ),
    "the same, the kick's bleed out of mid (quantile 0)": (
        "evidence",
        Coarseness(threshold=RISE, fold="median", kick_bleed=0.0),
    ),
    "the same, the kick's bleed out of mid (quantile .25), mid .4": (
        "evidence",
        Coarseness(threshold=(0.45, 0.4, 0.3), fold="median", kick_bleed=0.25),
    ),
    "the same, the kick's bleed out of mid (quantile .25) (SHIPPED)": ("evidence", SHIPPED),
}


def strengths_of(render) -> dict[str, dict[str, np.ndarray]]:
    """Both kinds of per-step strengths of a render, as ``listen`` computes them: the dB flux and the evidence."""
    flux, _, evidence = onsets(render.pcm, render.bpm, render.num_bars, render_corpus.SAMPLE_RATE)
    return {"flux": dict(zip(BANDS, flux)), "evidence": dict(zip(BANDS, evidence))}


def row(truth: list[str], ids: list[str]) -> dict:
    """Leak, largest group and ids per true pattern of one way of cutting ids."""
    report = render_corpus.key_report(truth, ids)
    return {
        **report,
        "largest_share": report["largest"] / len(ids),
        "largest_groups": report["largest"] / LOOPS_PER_PATTERN,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    args = parser.parse_args()
    if not render_corpus.fluidsynth_available():
        sys.exit("fluidsynth and FluidR3_GM.sf2 are needed (apt-get install fluidsynth fluid-soundfont-gm)")
    with tempfile.TemporaryDirectory() as cache:
        kits = render_corpus.all_kits(Path(cache))
    for seed in args.seeds:
        renders = render_corpus.corpus(kits, LOOPS_PER_PATTERN, seed=seed)
        strengths = [strengths_of(render) for render in renders]
        truth = [render.pattern for render in renders]
        sys.stdout.write(f"\nseed {seed}: {len(renders)} loops, {len(set(truth))} true patterns\n")
        header = f"{'method':64s} {'leak':>5s} {'expect':>6s} {'largest':>16s} {'ids/pattern':>12s} {'merged':>6s}"
        sys.stdout.write(header + "\n")
        for name, (kind, cut) in METHODS.items():
            key = (lambda s, cut=cut: pattern_id(s, cut)) if isinstance(cut, Coarseness) else cut
            r = row(truth, [key(s[kind]) for s in strengths])
            low, mean, high = r["ids_per_pattern"]
            largest = f"{r['largest']} {r['largest_share']:5.1%} {r['largest_groups']:.1f}x"
            spread = f"{low}-{mean:.1f}-{high}"
            leaks = f"{r['leak']:5.3f} {r['expected_leak']:6.3f}"
            sys.stdout.write(f"{name:64s} {leaks} {largest:>16s} {spread:>12s} {r['merged_ids']:6d}\n")


if __name__ == "__main__":
    main()
