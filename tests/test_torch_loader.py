"""examples/torch_loader.py on an exported sample: batch shapes, true audio and targets, and every 2-bar window
exactly once per epoch, across DataLoader workers and across the ranks split_dataset_by_node makes."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

import pop_rok
import pop_rok_publish
import pop_rok_sample
from drum_synth import render_loop
from examples import torch_loader

WINDOWS_PER_LOOP = pop_rok.BARS_PER_LOOP // torch_loader.BARS


@pytest.fixture(scope="module")
def copy(tmp_path_factory):
    """A Parquet copy of 6 generated loops (4 train shards of one loop each, 1 validation, 1 test), and the loops."""
    archives = tmp_path_factory.mktemp("loader_archives")
    manifest = pop_rok_sample.make_sample(archives, loops=6, seed=3, layout="aggregated")
    out = tmp_path_factory.mktemp("loader_copy")
    pop_rok_publish.export(out, config="default", data_dir=str(archives), cache_dir=str(tmp_path_factory.mktemp("loader_cache")))
    return str(out), {loop.name: loop for loop in manifest}


def split_windows(loops: dict, split: str) -> Counter:
    """Every (name, window) of the loops whose fold ``split`` (or a sum like train+test) holds, once."""
    wanted = split.split("+")
    return Counter(
        (name, k) for name, loop in loops.items() if pop_rok.FOLD_SPLITS[pop_rok.track_fold(loop.track)] in wanted
        for k in range(WINDOWS_PER_LOOP)
    )


def window_edges(bpm: int, k: int) -> tuple[int, int]:
    """Window k's first and end sample, from the issue's formula."""
    length = torch_loader.BARS * pop_rok.BEATS_PER_BAR * 60 / bpm * pop_rok.SAMPLE_RATE
    return round(k * length), round((k + 1) * length)


def check_batch(batch: dict, loops: dict, rendered: dict) -> None:
    """Shapes, zero padding, the window's own stereo samples, and its loop's instruments as a multi-hot."""
    size = len(batch["name"])
    audio, lengths, targets = batch["audio"], batch["lengths"], batch["targets"]
    assert audio.dtype == torch.float32 and audio.shape == (size, 2, int(lengths.max()))
    assert targets.shape == (size, len(pop_rok.KEY_MAP)) and batch["window"].shape == (size,)
    for i, (name, k) in enumerate(zip(batch["name"], batch["window"].tolist())):
        loop = loops[name]
        start, end = window_edges(loop.bpm, k)
        assert lengths[i] == end - start
        if name not in rendered:
            rendered[name] = render_loop(list(loop.notes), loop.bpm, bars=pop_rok.BARS_PER_LOOP, sample_rate=44100, seed=loop.seed)[0]
        np.testing.assert_array_equal(audio[i, :, : end - start].numpy(), rendered[name][start:end].T / 32768.0)
        assert not audio[i, :, end - start :].any()
        assert targets[i].tolist() == [float(note in loop.notes) for note in pop_rok.KEY_MAP]


def epoch(loader, loops: dict) -> tuple[Counter, list[tuple[str, int]], list[dict]]:
    """One epoch, each batch checked: how often each (name, window) came, in what order, and the batches."""
    rendered: dict = {}
    batches = list(loader)
    for batch in batches:
        check_batch(batch, loops, rendered)
    order = [pair for batch in batches for pair in zip(batch["name"], batch["window"].tolist())]
    return Counter(order), order, batches


def test_train_split_with_two_workers_gives_every_window_once(copy):
    path, loops = copy
    loader = torch_loader.make_loader(path, "train", batch_size=3, workers=2, shuffle_buffer=0)
    assert loader.num_workers == 2  # 4 shards: two each
    seen, _, batches = epoch(loader, loops)
    assert seen == split_windows(loops, "train") and len(seen) == 4 * WINDOWS_PER_LOOP
    assert {batch["audio"].shape[0] for batch in batches} <= {1, 2, 3}
    assert any(len(set(batch["lengths"].tolist())) > 1 for batch in batches)  # tempi mixed: padding was needed


def test_all_splits_shuffled_give_every_loop_window_once(copy):
    path, loops = copy
    loader = torch_loader.make_loader(path, pop_rok.ALL_SPLITS, batch_size=4, workers=2, seed=1)
    seen, order, _ = epoch(loader, loops)
    assert seen == split_windows(loops, pop_rok.ALL_SPLITS) and len(seen) == len(loops) * WINDOWS_PER_LOOP
    # Unshuffled, one worker reads a loop and yields its windows 0, 1, 2, 3: shuffled, some loop's are not.
    assert any([k for other, k in order if other == name] != list(range(WINDOWS_PER_LOOP)) for name in loops)


def test_a_split_with_fewer_shards_than_workers_still_gives_every_window_once(copy):
    path, loops = copy
    loader = torch_loader.make_loader(path, "validation", batch_size=3, workers=2, shuffle_buffer=0)
    assert loader.num_workers == 1  # one shard: no idle worker
    seen, _, _ = epoch(loader, loops)
    assert seen == split_windows(loops, "validation") and len(seen) == WINDOWS_PER_LOOP


@pytest.mark.parametrize("world_size", [2, 3])
def test_ranks_share_the_windows_disjointly_and_completely(copy, world_size):
    """2 ranks get 2 of the 4 train shards each, so whole loops; 3 do not divide 4, so datasets has every rank
    read every loop and keep every third window: still each window once, at three times the reading."""
    path, loops = copy
    seen: Counter = Counter()
    for rank in range(world_size):
        loader = torch_loader.make_loader(path, "train", batch_size=4, workers=2, rank=rank, world_size=world_size, shuffle_buffer=0)
        mine, _, _ = epoch(loader, loops)
        assert mine and not set(mine) & set(seen)
        whole_loops = all(mine[(name, k)] == 1 for name, _ in mine for k in range(WINDOWS_PER_LOOP))
        assert whole_loops == (world_size == 2)
        seen += mine
    assert seen == split_windows(loops, "train")


def test_main_runs_one_epoch_and_prints_a_summary(copy, capsys):
    path, _ = copy
    assert torch_loader.main([path, "--split", "validation", "--batch-size", "3", "--workers", "2", "--shuffle-buffer", "0"]) == 0
    assert capsys.readouterr().out.startswith("validation: 2 batches, 4 2-bar windows, ")


def test_under_torchrun_each_rank_loads_its_own_half(copy, tmp_path):
    """torch.distributed initialised by the script as torchrun launches it (2 processes, loopback): the ranks
    find their rank and world size themselves and split the 4 train loops 2 and 2."""
    path, loops = copy
    script = Path(torch_loader.__file__)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(script), path, "--shuffle-buffer", "0"]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    summaries = dict(re.findall(r"^rank (\d) of 2, train: \d+ batches, (\d+) 2-bar windows", done.stdout, re.MULTILINE))
    half = str(sum(split_windows(loops, "train").values()) // 2)
    assert summaries == {"0": half, "1": half}, done.stdout


def test_a_split_the_copy_lacks_is_named(copy):
    path, _ = copy
    with pytest.raises(ValueError, match="holdout"):
        torch_loader.make_loader(path, "holdout", workers=0)
