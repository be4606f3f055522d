"""`python pop_rok.py push` against the loopback Hub, read back by the real `datasets` client in fresh processes.

The clients are pointed at tests/hub_server.py by environment variables only (HF_ENDPOINT, HF_TOKEN,
HF_HUB_DISABLE_XET, empty HF_HOME and datasets cache), as a user's machine would be at the real Hub.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from huggingface_hub import DatasetCard

import pop_rok
from poprok.sample import archives as sample_archives
from poprok.sample.drum_synth import render_loop
from tests.hub_server import HubServer, client_env
from tests.split_helpers import filled_splits, names_by_split

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "hf_PopRokLoopbackToken0123456789"
REPO = "user/pop-rok"
VIEWER_ROW_GROUP_BYTES = 300_000_000

# Prints, for every row of a config, the label fields and a hash of the decoded int16 samples.
READ_BACK = """
import hashlib, json, sys
import numpy as np
from datasets import load_dataset

repo, config, streaming = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
rows = []
splits = load_dataset(repo, config, streaming=streaming)  # every split the repo declares, in its order
for split, row in ((split, row) for split in splits for row in splits[split]):
    row["split"] = split
    if "audio" in row:
        decoded = row.pop("audio").get_all_samples()
        samples = np.round(decoded.data.numpy().T * 32768).astype("<i2")
        row["audio"] = [decoded.sample_rate, list(samples.shape), hashlib.sha256(samples.tobytes()).hexdigest()]
    rows.append(row)
print(json.dumps(rows))
"""


def run(hub: HubServer, home: Path, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=client_env(hub.url, home, TOKEN),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert TOKEN not in result.stdout + result.stderr
    return result


def push(hub, home, sample_dir, cache, *extra, repo=REPO):
    return run(hub, home, "pop_rok.py", "push", repo, "--data-dir", str(sample_dir), "--cache-dir", str(cache), *extra)


def read_back(hub, tmp_path_factory, config, streaming=False, repo=REPO) -> list[dict]:
    home = tmp_path_factory.mktemp("reader")  # a fresh process with an empty cache
    return json.loads(run(hub, home, "-c", READ_BACK, repo, config, "1" if streaming else "0").stdout)


def expected_rows(sample, cache, config) -> list[dict]:
    """The builder's rows, with audio as READ_BACK prints it, computed from the generator's own render."""
    folder, manifest = sample
    by_name = {loop.name: loop for loop in manifest}
    splits = pop_rok.load_pop_rok(config=config, data_dir=str(folder), cache_dir=str(cache))
    rows = []
    for split, row in (
        (s, row)
        for s, ds in splits.items()
        for row in ds.remove_columns([c for c in ("audio",) if c in ds.column_names])
    ):
        row["split"] = split
        if config == "default":
            loop = by_name[row["name"]]
            rendered, _ = render_loop(list(loop.notes), loop.bpm, bars=8, sample_rate=44100, seed=loop.seed)
            row["audio"] = [44100, list(rendered.shape), hashlib.sha256(rendered.astype("<i2").tobytes()).hexdigest()]
        rows.append(row)
    return json.loads(json.dumps(rows))


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    with HubServer(tmp_path_factory.mktemp("hub"), token=TOKEN) as server:
        yield server


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """4 loops whose folds fill train and test but not validation: a push must declare only those two."""
    folder = tmp_path_factory.mktemp("push_sample")
    manifest = sample_archives.make_sample(folder, loops=4, seed=8, layout="per-loop")
    assert filled_splits(loop.track for loop in manifest) == ["train", "test"]
    return folder, manifest


@pytest.fixture(scope="module")
def build_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("build_cache")


@pytest.fixture(scope="module")
def pushed(hub, sample, build_cache, tmp_path_factory):
    """Both configs pushed once to REPO, as a first-time publisher would; no test changes REPO afterwards."""
    home = tmp_path_factory.mktemp("publisher")
    result = push(hub, home, sample[0], build_cache)
    return home, build_cache, result


@pytest.fixture
def own_repo(hub, sample, build_cache, request, tmp_path_factory):
    """A repo of this test's own (both configs pushed), for a test that changes what it holds."""
    repo = f"user/pop-rok-{request.node.name.split('[')[0].removeprefix('test_')[:60].replace('_', '-')}"
    home = tmp_path_factory.mktemp("publisher")
    push(hub, home, sample[0], build_cache, repo=repo)
    return repo, home, build_cache


def data_files(hub, config, repo=REPO) -> dict[str, int]:
    return {path: size for path, size in hub.list_files(repo).items() if path.startswith(f"data/{config}/")}


def test_push_prints_where_and_how_to_load(pushed):
    _, _, result = pushed
    assert f"/datasets/{REPO}" in result.stdout
    assert f'load_dataset("{REPO}"' in result.stdout


def test_pushed_repo_is_viewer_ready(hub, pushed, sample, tmp_path):
    files = hub.list_files(REPO)
    assert not any(path.endswith(".py") for path in files), "no loading script"
    assert {"README.md", "stats.png"} <= set(files)
    card = DatasetCard(hub.read_file(REPO, "README.md").decode())
    data = card.data.to_dict()
    assert data["license"] == "cc-by-4.0"
    assert {c["config_name"] for c in data["configs"]} == {"default", "labels"}
    infos = {info["config_name"]: info for info in data["dataset_info"]}
    audio = next(f for f in infos["default"]["features"] if f["name"] == "audio")
    assert audio["dtype"]["audio"]["sampling_rate"] == 44100
    instruments = next(f for f in infos["labels"]["features"] if f["name"] == "instruments")
    assert list(instruments["list"]["class_label"]["names"].values()) == list(pop_rok.KEY_MAP.values())
    expected = {split: len(names) for split, names in names_by_split(sample[1]).items()}
    for config in ("default", "labels"):
        assert {split["name"]: split["num_examples"] for split in infos[config]["splits"]} == expected
        assert [split["name"] for split in infos[config]["splits"]] == ["train", "test"]
        declared = next(c for c in data["configs"] if c["config_name"] == config)["data_files"]
        assert [files["split"] for files in declared] == ["train", "test"]
        for path in data_files(hub, config):
            parquet = pq.ParquetFile(io.BytesIO(hub.read_file(REPO, path)))
            for group in range(parquet.num_row_groups):
                meta = parquet.metadata.row_group(group)
                assert meta.total_byte_size < VIEWER_ROW_GROUP_BYTES and meta.num_rows <= 300
            if config == "default":
                paths = parquet.read(columns=["audio"]).column("audio").combine_chunks().field("path").to_pylist()
                assert all(p.endswith(".wav") for p in paths)
    assert "10.5281/zenodo.14038284" in card.text


@pytest.mark.parametrize("streaming", [False, True])
def test_load_dataset_reads_back_the_builders_rows(hub, pushed, sample, streaming, tmp_path_factory):
    _, cache, _ = pushed
    for config in ("default", "labels"):
        assert read_back(hub, tmp_path_factory, config, streaming) == expected_rows(sample, cache, config)


def test_pushing_again_changes_nothing(hub, own_repo, sample):
    repo, home, cache = own_repo
    before_files, before_commits = hub.list_files(repo), hub.commits(repo)
    push(hub, home, sample[0], cache, repo=repo)
    assert hub.list_files(repo) == before_files
    assert len(hub.commits(repo)) == len(before_commits), "an identical push must make no commit"


def test_pushing_one_config_leaves_the_other_intact(hub, own_repo, sample, tmp_path_factory):
    repo, home, cache = own_repo
    default_before = {p: hub.read_file(repo, p) for p in data_files(hub, "default", repo)}
    push(hub, home, sample[0], cache, "--config", "labels", "--num-shards", "2", repo=repo)
    assert {p: hub.read_file(repo, p) for p in data_files(hub, "default", repo)} == default_before
    sizes = [len(names) for names in names_by_split(sample[1]).values()]
    assert len(data_files(hub, "labels", repo)) == sum(min(2, size) for size in sizes), (
        "the labels shards were replaced, none orphaned"
    )
    card = DatasetCard(hub.read_file(repo, "README.md").decode()).data.to_dict()
    assert {c["config_name"] for c in card["configs"]} == {"default", "labels"}
    assert {i["config_name"] for i in card["dataset_info"]} == {"default", "labels"}
    assert read_back(hub, tmp_path_factory, "labels", repo=repo) == expected_rows(sample, cache, "labels")


def test_flac_push_replaces_the_wav_shards_and_decodes_to_the_same_samples(hub, own_repo, sample, tmp_path_factory):
    repo, home, cache = own_repo
    push(hub, home, sample[0], cache, "--config", "default", "--audio-format", "flac", repo=repo)
    for path in data_files(hub, "default", repo):
        parquet = pq.read_table(io.BytesIO(hub.read_file(repo, path)), columns=["audio"])
        paths = parquet.column("audio").combine_chunks().field("path").to_pylist()
        assert all(p.endswith(".flac") for p in paths), path
    card = DatasetCard(hub.read_file(repo, "README.md").decode())
    assert "FLAC" in card.text
    assert read_back(hub, tmp_path_factory, "default", repo=repo) == expected_rows(sample, cache, "default")
    assert read_back(hub, tmp_path_factory, "default", streaming=True, repo=repo) == expected_rows(
        sample, cache, "default"
    )
