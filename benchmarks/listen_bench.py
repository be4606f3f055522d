"""Listening speed on one core: audio seconds listened to per second (target listen_x_realtime >= 1500).

Run from the repository root: ``PYTHONPATH=. .venv/bin/python benchmarks/listen_bench.py [--loops-per-pattern N]``.
The loops are tests/render_corpus.py's numpy kits (no fluidsynth needed); thread pools are set to one thread.
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_variable] = "1"

import argparse
import json
import statistics
import sys
import time

from poprok.analysis import listen
from poprok.analysis.facts import loudness_lufs
from poprok.analysis.onsets import onsets
from tests import render_corpus


def _seconds(function, renders, repeat: int) -> float:
    """The median over ``repeat`` passes of one pass over all ``renders``."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        for render in renders:
            function(render)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--loops-per-pattern", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    kits = {"synth_a": render_corpus.synth_kit(0), "synth_b": render_corpus.synth_kit(1)}
    renders = render_corpus.corpus(kits, args.loops_per_pattern, seed=7)
    audio = sum(len(r.pcm) for r in renders) / render_corpus.SAMPLE_RATE
    steps = {
        "listen": lambda r: listen(r.pcm, r.bpm, r.num_bars),
        "loudness": lambda r: loudness_lufs(r.pcm, render_corpus.SAMPLE_RATE),
        "onsets": lambda r: onsets(r.pcm, r.bpm, r.num_bars, render_corpus.SAMPLE_RATE),
    }
    _seconds(steps["listen"], renders[:2], 1)  # warm the caches (filterbank, K-weighting response)
    result = {}
    sys.stdout.write(f"{len(renders)} loops, {audio:.1f} s of audio, one core\n")
    sys.stdout.write(f"{'step':10s} {'ms/loop':>8s} {'x realtime':>11s}\n")
    for name, function in steps.items():
        seconds = _seconds(function, renders, args.repeat)
        result[f"{name}_x_realtime"] = round(audio / seconds, 1)
        sys.stdout.write(f"{name:10s} {seconds / len(renders) * 1000:8.2f} {audio / seconds:11.1f}\n")
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
