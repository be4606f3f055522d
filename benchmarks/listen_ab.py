"""Listening speed of this checkout against another revision's, loop by loop in one process, on one core.

    PYTHONPATH=. .venv/bin/python benchmarks/listen_ab.py --base REV [--loops-per-pattern N] [--repeat N]

This machine's speed drifts by a third within minutes, so runs minutes apart compare the machine, not the code.
Here the base revision's ``poprok/analysis`` (taken with ``git archive``, imported as ``base_analysis``) and this
checkout's listen to each loop in turn, alternating which goes first; the last line gives both speeds and the
median over loops of base time / this time, and whether every result was the same.
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_variable] = "1"  # before numpy loads: hence the imports below it (E402)

import argparse  # noqa: E402
import importlib  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tarfile  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from poprok.analysis import listen  # noqa: E402
from tests import render_corpus  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def base_listen(revision: str, folder: Path):
    """``listen`` of ``revision``'s poprok/analysis, as the package ``base_analysis`` in ``folder``."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", revision, "poprok/analysis"], check=True, capture_output=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    package = folder / "base_analysis"
    (folder / "poprok" / "analysis").rename(package)
    for module in package.glob("*.py"):
        module.write_text(module.read_text().replace("poprok.analysis", "base_analysis"))
    sys.path.insert(0, str(folder))
    return importlib.import_module("base_analysis").listen


def same(a, b) -> bool:
    return a.facts() == b.facts() and all(np.array_equal(a.onsets[k], b.onsets[k]) for k in a.onsets)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=True, help="the git revision to compare with")
    parser.add_argument("--loops-per-pattern", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    renders = render_corpus.corpus(render_corpus.numpy_kits(), args.loops_per_pattern, seed=7)
    audio = sum(len(r.pcm) for r in renders) / render_corpus.SAMPLE_RATE
    with tempfile.TemporaryDirectory() as folder:
        contenders = {"base": base_listen(args.base, Path(folder)), "this": listen}
        for function in contenders.values():
            function(renders[0].pcm, renders[0].bpm, renders[0].num_bars)  # fills the caches: not timed
        seconds, ratios, identical = dict.fromkeys(contenders, 0.0), [], True
        for run in range(args.repeat):
            for index, render in enumerate(renders):
                order = list(contenders) if (index + run) % 2 else list(contenders)[::-1]
                took, heard = {}, {}
                for name in order:
                    started = time.perf_counter()
                    heard[name] = contenders[name](render.pcm, render.bpm, render.num_bars)
                    took[name] = time.perf_counter() - started
                    seconds[name] += took[name]
                ratios.append(took["base"] / took["this"])
                identical = identical and same(heard["base"], heard["this"])
    result = {f"{name}_x_realtime": round(args.repeat * audio / s, 1) for name, s in seconds.items()}
    result |= {"speedup_median": round(statistics.median(ratios), 3), "identical": identical, "loops": len(renders)}
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
