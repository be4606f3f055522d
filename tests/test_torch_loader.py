"""examples/torch_loader.py on an exported copy: batch shapes, true audio and targets, every 2-bar window exactly
once per epoch through the reader thread or across workers, and under a real torchrun each rank its own disjoint
part, together all of it."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf
import torch

import pop_rok
from examples import torch_loader

ROOT = Path(__file__).resolve().parents[1]
WINDOWS_PER_LOOP = pop_rok.BARS_PER_LOOP // torch_loader.BARS


@pytest.fixture(scope="session")
def copy(tmp_path_factory):
    """A WAV Parquet copy of 12 generated loops and its windows' true samples: the copy tests/test_training_loader.py
    uses (same folder, same commands), so a session that runs both makes it once."""
    base = tmp_path_factory.getbasetemp() / "pop_rok_training_copies"
    command = [sys.executable, str(ROOT / "pop_rok.py")]
    if not (base / "archives").exists():
        subprocess.run(
            [*command, "sample", str(base / "archives"), "--loops", "12", "--seed", "3"], check=True, timeout=300
        )
    if not (base / "wav").exists():
        export = [
            "export",
            str(base / "wav"),
            "--data-dir",
            str(base / "archives"),
            "--cache-dir",
            f"{base}/wav-cache",
        ]
        subprocess.run([*command, *export, "--config", "default", "--audio-format", "wav"], check=True, timeout=300)
    windows, rows = {}, {}
    for file in sorted((base / "wav" / "data" / "default").glob("*.parquet")):
        table = pq.read_table(file)
        for row in table.select(["name", "fold", "instruments"]).to_pylist():
            rows[row["name"]] = row
        out = pop_rok.bar_windows(table.to_pydict(), bars=torch_loader.BARS)
        for name, k, audio in zip(out["name"], out["window"], out["audio"]):
            windows[name, int(k)] = sf.read(io.BytesIO(audio["bytes"]), dtype="int16", always_2d=True)[0].T
    return str(base / "wav"), windows, rows


def split_windows(rows: dict, split: str) -> Counter:
    """Every (name, window) of the loops whose fold ``split`` (or a sum like train+test) holds, once."""
    wanted = split.split("+")
    return Counter(
        (name, k) for name, row in rows.items() if pop_rok.FOLD_SPLITS[row["fold"]] in wanted
        for k in range(WINDOWS_PER_LOOP)
    )  # fmt: skip


def check_batch(batch: dict, windows: dict, rows: dict) -> None:
    """Shapes, zero padding, the window's own stereo samples, and its loop's instruments as a multi-hot."""
    size = len(batch["name"])
    audio, lengths, target = batch["audio"], batch["lengths"], batch["target"]
    if audio.dtype == torch.int16:  # process workers' batches, made float as the example says a GPU does
        audio = audio.float().div_(32768)
    assert audio.dtype == torch.float32 and audio.shape == (size, 2, int(lengths.max()))
    assert target.shape == (size, len(pop_rok.KEY_MAP)) and batch["window"].shape == (size,)
    for i, (name, k) in enumerate(zip(batch["name"], batch["window"].tolist())):
        truth = windows[name, k]
        assert lengths[i] == truth.shape[1]
        np.testing.assert_array_equal(audio[i, :, : truth.shape[1]].numpy(), truth / 32768.0)
        assert not audio[i, :, truth.shape[1] :].any()
        assert target[i].tolist() == [float(c in rows[name]["instruments"]) for c in range(len(pop_rok.KEY_MAP))]


def test_by_default_a_reader_thread_gives_float32_windows_once(copy):
    path, windows, rows = copy
    loader = torch_loader.make_loader(path, "train", batch_size=3)
    assert loader.num_workers == 0 and loader.dataset.prefetch == 6 and loader.dataset.dtype == "float32"
    batches = list(loader)
    seen = [pair for batch in batches for pair in zip(batch["name"], batch["window"].tolist())]
    assert Counter(seen) == split_windows(rows, "train")
    for batch in batches:
        assert batch["audio"].dtype == torch.float32
        check_batch(batch, windows, rows)
    readers = [thread for thread in threading.enumerate() if thread.name.startswith("poprok-reader")]
    for thread in readers:
        thread.join(5)
    assert not any(thread.is_alive() for thread in readers)


def test_train_split_with_two_workers_gives_every_window_once(copy):
    path, windows, rows = copy
    loader = torch_loader.make_loader(path, "train", batch_size=3, workers=2)
    assert loader.num_workers == 2 and loader.pin_memory == torch.cuda.is_available()
    assert loader.dataset.dtype == "int16" and loader.dataset.prefetch == 0
    summary = torch_loader.run_epoch(loader)
    assert Counter(summary["windows"]) == split_windows(rows, "train")
    batches = list(loader)
    for batch in batches:
        check_batch(batch, windows, rows)
    assert {len(batch["name"]) for batch in batches} <= {1, 2, 3}
    assert any(len(set(batch["lengths"].tolist())) > 1 for batch in batches)  # tempi mixed: padding was needed


def test_every_split_shuffled_gives_every_window_once_and_epochs_differ(copy):
    path, _, rows = copy
    splits = "+".join(sorted({pop_rok.FOLD_SPLITS[row["fold"]] for row in rows.values()}))
    loader = torch_loader.make_loader(path, splits, batch_size=4, workers=2, seed=1)
    first, second = torch_loader.run_epoch(loader, 0)["windows"], torch_loader.run_epoch(loader, 1)["windows"]
    assert Counter(first) == Counter(second) == split_windows(rows, splits) and first != second


def test_main_runs_one_epoch_and_prints_a_summary(copy, capsys, tmp_path):
    path, _, rows = copy
    out = tmp_path / "windows-{rank}.json"
    argv = [path, "--split", "train", "--batch-size", "8", "--workers", "2", "--windows-out", str(out)]
    assert torch_loader.main(argv) == 0
    count = sum(split_windows(rows, "train").values())
    assert re.fullmatch(
        rf"train: \d+ batches, {count} 2-bar windows, [0-9.]+ s with 2 worker\(s\)\n", capsys.readouterr().out
    )
    assert Counter(map(tuple, json.loads((tmp_path / "windows-0.json").read_text()))) == split_windows(rows, "train")


def test_under_torchrun_the_ranks_read_disjoint_parts_that_make_the_whole(copy, tmp_path):
    """torch.distributed initialised by the script as torchrun launches it (2 processes, loopback, gloo): each rank
    finds its rank and world size, reads its own row groups, and writes the (name, window) pairs it read."""
    path, _, rows = copy
    script = ROOT / "examples" / "torch_loader.py"
    out = tmp_path / "rank-{rank}.json"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(script),
               path, "--workers", "2", "--windows-out", str(out)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # as an installed package: no sys.path edit in the script
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert set(re.findall(r"^rank (\d) of 2, train: ", done.stdout, re.MULTILINE)) == {"0", "1"}, done.stdout
    ranks = [Counter(map(tuple, json.loads((tmp_path / f"rank-{rank}.json").read_text()))) for rank in (0, 1)]
    assert ranks[0] and ranks[1] and not set(ranks[0]) & set(ranks[1])
    assert max(ranks[0].values()) == max(ranks[1].values()) == 1
    assert ranks[0] + ranks[1] == split_windows(rows, "train")


def test_a_split_the_copy_lacks_is_named(copy):
    with pytest.raises(ValueError, match="holdout"):
        torch_loader.make_loader(copy[0], "holdout", workers=0)
