"""Listening speed on one core: audio seconds listened to per second (target listen_x_realtime >= 1500).

Run from the repository root: ``PYTHONPATH=. .venv/bin/python benchmarks/listen_bench.py [--loops-per-pattern N]``.
The loops are tests/render_corpus.py's numpy kits (no fluidsynth needed); thread pools are set to one thread.
The machine may be shared: the last line gives the load average and listen's time as a multiple of one plain
numpy pass over the PCM measured in the same run (``listen_per_numpy_pass``), which a load skews less.
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_variable] = "1"  # before numpy loads: hence the imports below it (E402)

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from poprok.analysis import listen  # noqa: E402
from poprok.analysis.facts import digest, loudness_lufs  # noqa: E402
from poprok.analysis.onsets import onsets  # noqa: E402
from tests import render_corpus  # noqa: E402


def _seconds(function, renders, repeat: int, clock=time.perf_counter) -> float:
    """The median over ``repeat`` passes of one pass over all ``renders``, by ``clock``."""
    times = []
    for _ in range(repeat):
        start = clock()
        for render in renders:
            function(render)
        times.append(clock() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--loops-per-pattern", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    renders = render_corpus.corpus(render_corpus.numpy_kits(), args.loops_per_pattern, seed=7)
    rate = render_corpus.SAMPLE_RATE
    audio = sum(len(r.pcm) for r in renders) / render_corpus.SAMPLE_RATE
    steps = {
        "listen": lambda r: listen(r.pcm, r.bpm, r.num_bars),
        "loudness": lambda r: loudness_lufs(r.pcm, rate),
        "onsets": lambda r: onsets(r.pcm, r.bpm, r.num_bars, rate),
        "digest": lambda r: digest(r.pcm),
        "numpy_pass": lambda r: r.pcm.astype(np.float32).sum(),  # the baseline: one plain pass over the PCM
    }
    _seconds(steps["listen"], renders[:2], 1)  # warm the caches (filterbank, K-weighting response)
    result = {}
    sys.stdout.write(f"{len(renders)} loops, {audio:.1f} s of audio, one core\n")
    sys.stdout.write(f"{'step':10s} {'ms/loop':>8s} {'x realtime':>11s}\n")
    for name, function in steps.items():
        seconds = _seconds(function, renders, args.repeat)
        result[f"{name}_x_realtime"] = round(audio / seconds, 1)
        sys.stdout.write(f"{name:10s} {seconds / len(renders) * 1000:8.2f} {audio / seconds:11.1f}\n")
    # CPU time: what other processes on the core take from the wall clock is left out (not their cache misses)
    result["listen_x_realtime_cpu"] = round(
        audio / _seconds(steps["listen"], renders, args.repeat, time.process_time), 1
    )
    result["listen_per_numpy_pass"] = round(result["numpy_pass_x_realtime"] / result["listen_x_realtime"], 1)
    result["load_average_1min"] = os.getloadavg()[0]
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
