"""poprok.training on exported copies: windows sample-exact against pop_rok.bar_windows, shared out disjointly and
completely across workers and ranks, shuffled per epoch, resumed mid-epoch exactly once, and bad loops named; and
the same through a reader thread, which stops with its iteration however that ends."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf
import torch
from torch.utils.data import DataLoader
from torchdata.stateful_dataloader import StatefulDataLoader

import pop_rok
from poprok.grid import frame_at
from poprok.training.dataset import WindowDataset, collate
from poprok.training.prefetch import prefetch
from poprok.training.windows import WindowError

ROOT = Path(__file__).resolve().parents[1]
LOOPS = 12


def build_copies(tmp_path_factory) -> dict[str, Path]:
    """WAV and FLAC copies of 12 generated loops (10 train shards, 1 validation, 1 test), made once a session."""
    base = tmp_path_factory.getbasetemp() / "pop_rok_training_copies"
    copies = {audio: base / audio for audio in ("wav", "flac")}
    command = [sys.executable, str(ROOT / "pop_rok.py")]
    if not (base / "archives").exists():
        subprocess.run(
            [*command, "sample", str(base / "archives"), "--loops", str(LOOPS), "--seed", "3"], check=True, timeout=300
        )
    for audio, out in copies.items():
        if not out.exists():
            export = ["export", str(out), "--data-dir", str(base / "archives"), "--cache-dir", f"{base}/{audio}-cache"]
            subprocess.run(
                [*command, *export, "--config", "default", "--audio-format", audio], check=True, timeout=300
            )
    return copies


@pytest.fixture(scope="session")
def copies(tmp_path_factory):
    return build_copies(tmp_path_factory)


@pytest.fixture(scope="session")
def truth(copies):
    """Every (name, window) of the WAV copy: bar_windows' samples decoded with soundfile, (2, T) int16; and rows."""
    windows, rows = {}, {}
    for file in sorted((copies["wav"] / "data" / "default").glob("*.parquet")):
        batch = pq.read_table(file).to_pydict()
        for row in pq.read_table(file, columns=["name", "bpm", "fold", "instruments"]).to_pylist():
            rows[row["name"]] = row
        out = pop_rok.bar_windows(batch, bars=2)
        for name, k, audio in zip(out["name"], out["window"], out["audio"]):
            windows[name, int(k)] = sf.read(io.BytesIO(audio["bytes"]), dtype="int16", always_2d=True)[0].T
    return windows, rows


@pytest.fixture(scope="session")
def every_split(copies) -> str:
    """The sum of the splits the copy has (a small one may lack some): every loop, once."""
    files = (copies["wav"] / "data" / "default").glob("*.parquet")
    return "+".join(sorted({file.name.split("-")[0] for file in files}))


def pairs(batches) -> list[tuple[str, int]]:
    return [pair for batch in batches for pair in zip(batch["name"], batch["window"].tolist())]


def split_of(rows: dict, name: str) -> str:
    return pop_rok.FOLD_SPLITS[rows[name]["fold"]]


@pytest.mark.parametrize("audio", ["wav", "flac"])
def test_every_window_is_bar_windows_sample_for_sample(every_split, copies, truth, audio):
    windows, rows = truth
    items = list(WindowDataset(str(copies[audio]), every_split, shuffle=False, dtype="int16"))
    assert len(items) == len(windows) == LOOPS * 4
    assert {(item["name"], item["window"]) for item in items} == set(windows)
    for item in items:
        key, row = (item["name"], item["window"]), rows[item["name"]]
        assert item["audio"].dtype == torch.int16
        np.testing.assert_array_equal(item["audio"].numpy(), windows[key])
        assert item["start"] == frame_at(item["window"] * 8, row["bpm"], pop_rok.SAMPLE_RATE) / pop_rok.SAMPLE_RATE
        assert (item["bpm"], item["fold"]) == (row["bpm"], row["fold"])
        assert item["target"].tolist() == [float(c in row["instruments"]) for c in range(len(pop_rok.KEY_MAP))]


def test_float32_windows_are_the_int16_ones_over_32768(copies, truth):
    windows, _ = truth
    for item in WindowDataset(str(copies["wav"]), "train"):
        assert item["audio"].dtype == torch.float32
        np.testing.assert_array_equal(item["audio"].numpy(), windows[item["name"], item["window"]] / 32768.0)


@pytest.mark.parametrize(("bars", "per_loop"), [(1, 8), (2, 4), (4, 2), (8, 1)])
def test_window_counts_follow_the_bars(copies, truth, bars, per_loop):
    _, rows = truth
    windows = WindowDataset(str(copies["wav"]), "train", bars=bars, shuffle=False)
    train = [name for name in rows if split_of(rows, name) == "train"]
    assert len(windows) == per_loop * len(train)
    assert Counter(item["name"] for item in windows) == Counter({name: per_loop for name in train})


def test_bars_that_do_not_divide_the_loop_name_it(copies):
    with pytest.raises(WindowError, match=r"loop '1\d\dbpm_pop_rok_drm_id_001_\d{4}' has 8 bars, which 3-bar"):
        WindowDataset(str(copies["wav"]), "train", bars=3)


def test_collate_pads_to_the_longest_and_gives_lengths(every_split, copies):
    items = list(WindowDataset(str(copies["wav"]), every_split, seed=2))[:6]
    batch = collate(items)
    sizes = [item["audio"].shape[1] for item in items]
    assert batch["audio"].shape == (6, 2, max(sizes)) and batch["lengths"].tolist() == sizes
    assert batch["target"].shape == (6, len(pop_rok.KEY_MAP)) and batch["start"].dtype == torch.float64
    assert batch["name"] == [item["name"] for item in items]
    for i, item in enumerate(items):
        assert torch.equal(batch["audio"][i, :, : sizes[i]], item["audio"])
        assert not batch["audio"][i, :, sizes[i] :].any()
    assert collate([item | {"audio": item["audio"].to(torch.int16)} for item in items])["audio"].dtype == torch.int16


@pytest.mark.parametrize("workers", [0, 1, 2])
def test_every_window_once_with_any_number_of_workers(every_split, copies, truth, workers):
    windows, _ = truth
    loader = DataLoader(WindowDataset(str(copies["wav"]), every_split, seed=5), batch_size=4, num_workers=workers,
                        collate_fn=collate)  # fmt: skip
    batches = list(loader)
    assert Counter(pairs(batches)) == Counter(set(windows))
    assert all(len(batch["name"]) <= 4 for batch in batches)


def test_the_order_is_a_function_of_seed_and_epoch(every_split, copies):
    def order(seed, epoch):
        windows = WindowDataset(str(copies["wav"]), every_split, seed=seed)
        windows.set_epoch(epoch)
        return [(item["name"], item["window"]) for item in windows]

    first = order(0, 0)
    assert order(0, 0) == first
    assert sorted(order(0, 1)) == sorted(first) and order(0, 1) != first and order(1, 0) != first
    # shuffled across loops: some loop's windows are not one run of 0, 1, 2, 3
    assert any([k for other, k in first if other == name] != [0, 1, 2, 3] for name, _ in first)
    unshuffled = [
        (item["name"], item["window"]) for item in WindowDataset(str(copies["wav"]), every_split, shuffle=False)
    ]
    assert [k for _, k in unshuffled] == [0, 1, 2, 3] * LOOPS


@pytest.mark.parametrize("world_size", [2, 3])
def test_ranks_read_disjoint_whole_loops_and_together_all(every_split, copies, truth, world_size):
    windows, _ = truth
    seen: Counter = Counter()
    for rank in range(world_size):
        dataset = WindowDataset(str(copies["wav"]), every_split, rank=rank, world_size=world_size, seed=4)
        mine = Counter(pairs(DataLoader(dataset, batch_size=3, num_workers=2, collate_fn=collate)))
        assert mine and not set(mine) & set(seen) and sum(mine.values()) == len(dataset)
        assert all((name, k) in mine for name, _ in mine for k in range(4))  # row groups whole: loops whole
        seen += mine
    assert seen == Counter(set(windows))


def live_readers(timeout: float = 5.0) -> list[str]:
    """The reader threads still alive after each has had ``timeout`` s to end."""
    threads = [thread for thread in threading.enumerate() if thread.name.startswith("poprok-reader")]
    for thread in threads:
        thread.join(timeout)
    return [thread.name for thread in threads if thread.is_alive()]


def epoch_pairs(dataset, workers: int, batch_size: int = 5) -> list[tuple[str, int]]:
    return pairs(StatefulDataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=collate))


@pytest.mark.parametrize(("workers", "ahead"), [(0, 0), (0, 7), (2, 0)], ids=["0w", "0w-thread", "2w"])
@pytest.mark.parametrize("stop_after", [1, 4, 9])
def test_a_resumed_epoch_gives_every_window_exactly_once(every_split, copies, workers, ahead, stop_after):
    """Stopped after k batches of 5 (of 48 windows), resumed from state_dict() in a new loader and dataset; with a
    reader thread 7 windows ahead, the state is still the k batches taken, not what the thread made."""
    path = str(copies["wav"])
    uninterrupted = epoch_pairs(WindowDataset(path, every_split, seed=7), workers)
    loader = StatefulDataLoader(WindowDataset(path, every_split, seed=7, prefetch=ahead), batch_size=5,
                                num_workers=workers, collate_fn=collate)  # fmt: skip
    before = []
    for batches, batch in enumerate(loader, 1):
        before += zip(batch["name"], batch["window"].tolist())
        if batches == stop_after:
            break
    state = loader.state_dict()
    del loader
    assert not live_readers()
    dataset = WindowDataset(path, every_split, seed=7, prefetch=ahead)
    resumed = StatefulDataLoader(dataset, batch_size=5, num_workers=workers, collate_fn=collate)
    resumed.load_state_dict(state)
    after = pairs(resumed)
    assert batches == stop_after and len(before) + len(after) == LOOPS * 4
    assert Counter(before + after) == Counter(uninterrupted) and before + after == uninterrupted
    dataset.set_epoch(1)  # the next epoch, in the resumed loader: a fresh order, every window once
    next_epoch = pairs(resumed)
    assert next_epoch != uninterrupted and Counter(next_epoch) == Counter(uninterrupted)
    fresh = WindowDataset(path, every_split, seed=7)
    fresh.set_epoch(1)
    assert next_epoch == epoch_pairs(fresh, workers)
    assert not live_readers()


@pytest.mark.parametrize("audio", ["wav", "flac"])
def test_a_reader_thread_gives_the_plain_windows_bit_for_bit(every_split, copies, audio):
    plain = list(WindowDataset(str(copies[audio]), every_split, seed=3))
    ahead = list(WindowDataset(str(copies[audio]), every_split, seed=3, prefetch=5))
    assert len(ahead) == len(plain) == LOOPS * 4
    for a, b in zip(ahead, plain):
        assert a.keys() == b.keys() and a["audio"].dtype == b["audio"].dtype == torch.float32
        assert torch.equal(a["audio"], b["audio"]) and torch.equal(a["target"], b["target"])
        assert all(a[key] == b[key] for key in ("name", "window", "start", "bpm", "fold"))
    assert not live_readers()


def test_stopping_early_stops_the_reader_thread(every_split, copies):
    """Closed mid-epoch, or dropped by a loader stopped after one batch: no thread is left, none waits on a queue."""
    windows = iter(WindowDataset(str(copies["wav"]), every_split, seed=0, prefetch=3))
    next(windows)
    assert [thread.name for thread in threading.enumerate() if thread.name == "poprok-reader-0"]
    windows.close()
    assert not live_readers()
    loader = StatefulDataLoader(WindowDataset(str(copies["wav"]), every_split, seed=0, prefetch=8), batch_size=4,
                                collate_fn=collate)  # fmt: skip
    for _ in loader:
        break
    del loader
    assert not live_readers()


def test_prefetch_raises_the_reader_error_after_the_items_before_it():
    def items():
        yield from range(3)
        raise KeyError("the fourth")

    got = []
    with pytest.raises(KeyError, match="the fourth"):
        for item in prefetch(items(), depth=2, name="poprok-reader-test"):
            got.append(item)
    assert got == [0, 1, 2] and not live_readers()
    with pytest.raises(ValueError, match="depth must be at least 1"):
        prefetch([], depth=0)


def test_a_state_from_another_seed_or_rank_is_refused(every_split, copies):
    windows = WindowDataset(str(copies["wav"]), every_split, seed=1)
    next(iter(windows))
    state = windows.state_dict()
    assert state["yielded"] == 1 and state["epoch"] == 0
    with pytest.raises(ValueError, match="seed 1"):
        WindowDataset(str(copies["wav"]), every_split, seed=2).load_state_dict(state)
    with pytest.raises(ValueError, match="rank 0 of 1"):
        WindowDataset(str(copies["wav"]), every_split, seed=1, rank=1, world_size=2).load_state_dict(state)


def test_an_fsspec_url_reads_as_the_folder_does(copies, truth):
    _, rows = truth
    folder = [(item["name"], item["window"]) for item in WindowDataset(str(copies["wav"]), "train", seed=3)]
    url = [(item["name"], item["window"]) for item in WindowDataset(copies["wav"].as_uri(), "train", seed=3)]
    assert url == folder and len(folder) == 4 * sum(split_of(rows, name) == "train" for name in rows)


def test_a_split_the_copy_lacks_is_named(copies, every_split):
    have = every_split.replace("+", ", ")
    with pytest.raises(ValueError, match=rf"no 'holdout' split in config 'default' \(it has: {have}\)"):
        WindowDataset(str(copies["wav"]), "train+holdout")


def broken_copy(source: Path, tmp_path: Path, spoil) -> tuple[str, str]:
    """A copy of ``source`` whose first train loop's audio bytes are ``spoil(bytes)``; and that loop's name."""
    copy = tmp_path / "broken"
    shutil.copytree(source, copy)
    file = min((copy / "data" / "default").glob("train-*.parquet"))
    table = pq.read_table(file)
    rows = table.to_pylist()
    rows[0]["audio"]["bytes"] = spoil(rows[0]["audio"]["bytes"])
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), file)
    return str(copy), rows[0]["name"]


def seven_bars(data: bytes) -> bytes:
    """A well-formed WAV of the loop's first 7 bars: its header agrees, its bars do not."""
    samples, rate = sf.read(io.BytesIO(data), dtype="int16")
    out = io.BytesIO()
    sf.write(out, samples[: len(samples) * 7 // 8], rate, format="WAV", subtype="PCM_16")
    return out.getvalue()


def corrupt_frame(data: bytes) -> bytes:
    spoiled = bytearray(data)
    spoiled[len(data) // 2] ^= 0xFF
    return bytes(spoiled)


@pytest.mark.parametrize(
    ("audio", "spoil", "message"),
    [
        ("wav", lambda data: b"ID3\x04" + data[4:], "neither WAV nor FLAC"),
        ("wav", lambda data: data[: len(data) // 2], "truncated"),
        ("wav", seven_bars, "fewer than the"),
        ("flac", corrupt_frame, "corrupt or unreadable FLAC"),
    ],
    ids=["not-wav-or-flac", "truncated-wav", "short-wav", "corrupt-flac-frame"],
)
@pytest.mark.parametrize(("workers", "ahead"), [(0, 0), (0, 6), (2, 0)], ids=["0w", "0w-thread", "2w"])
def test_a_bad_loop_stops_the_epoch_with_its_name(copies, tmp_path, audio, spoil, message, workers, ahead):
    path, name = broken_copy(copies[audio], tmp_path, spoil)
    windows = WindowDataset(path, "train", seed=0, prefetch=ahead)
    loader = DataLoader(windows, batch_size=4, num_workers=workers, collate_fn=collate)
    with pytest.raises(WindowError, match=rf"loop '{name}'.*{message}"):
        for _ in loader:
            pass
    assert not live_readers()
