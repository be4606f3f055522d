"""The loopback Hub (tests/hub_server.py) round-trips the real `huggingface_hub` and `datasets` clients.

Clients run in subprocesses because `huggingface_hub` reads HF_ENDPOINT at import time; they are
pointed at the server by environment variables only, with an empty HF_HOME / datasets cache each.
"""

import hashlib
import io
import json
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from tests.hub_server import HubServer, client_env

TOKEN = "hf_LoopbackTestToken0123456789"
REPO = "user/drum-loops"
TAGS = ["kick", "snare", "hat"]
SHARDS = {
    "data/train-00000-of-00001.parquet",
    "data/test-00000-of-00001.parquet",
    "labels/train-00000-of-00001.parquet",
    "labels/test-00000-of-00001.parquet",
}

# Pushes the loops described by the JSON file argv[1] under two configs; the second has no audio.
PUSH = """
import json, sys
from pathlib import Path
from datasets import Audio, ClassLabel, Dataset, DatasetDict, Features, List, Value

spec = json.loads(Path(sys.argv[1]).read_text())
features = Features(
    {"audio": Audio(sampling_rate=44100), "bpm": Value("int32"), "tags": List(ClassLabel(names=spec["tags"]))}
)
loops = DatasetDict(
    {
        split: Dataset.from_dict(
            {
                "audio": [{"bytes": Path(r["wav"]).read_bytes(), "path": Path(r["wav"]).name} for r in rows],
                "bpm": [r["bpm"] for r in rows],
                "tags": [r["tags"] for r in rows],
            },
            features=features,
        )
        for split, rows in spec["splits"].items()
    }
)
loops.push_to_hub(spec["repo"], config_name="default")
loops.remove_columns("audio").push_to_hub(spec["repo"], config_name="labels")
"""

# Loads both configs, map-style and streaming, and prints what the test compares with the originals.
LOAD = """
import hashlib, json, sys
import numpy as np
from datasets import Audio, load_dataset

repo = sys.argv[1]

def rows(dataset):
    out = []
    for row in dataset:
        samples = row["audio"].get_all_samples().data.numpy()  # torchcodec: float32, (channels, frames)
        as_int16 = np.round(samples * 32768).astype(int).T.tolist()  # back to the WAV's (frames, channels)
        out.append({"bpm": row["bpm"], "tags": row["tags"], "samples": as_int16})
    for row, raw in zip(out, dataset.cast_column("audio", Audio(decode=False))):
        row["path"], row["sha256"] = raw["audio"]["path"], hashlib.sha256(raw["audio"]["bytes"]).hexdigest()
    return out

labels = load_dataset(repo, "labels")
print(json.dumps({
    "train": rows(load_dataset(repo, "default", split="train")),
    "streamed": rows(load_dataset(repo, "default", split="train", streaming=True)),
    "labels": {split: labels[split].to_dict() for split in labels},
    "labels_columns": labels["train"].column_names,
}))
"""

# Plain HfApi use on a scratch repo: a stale parentCommit, a pull request, listings, a ranged read of
# an LFS file through HfFileSystem, a missing file.
API = """
import json, sys
from huggingface_hub import CommitOperationAdd, HfApi, HfFileSystem, hf_hub_download
from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError

repo, out = sys.argv[1], {}
api = HfApi()
api.create_repo(repo, repo_type="dataset")
first = api.upload_file(path_or_fileobj=b"one", path_in_repo="a.txt", repo_id=repo, repo_type="dataset").oid
second = api.upload_file(path_or_fileobj=b"two", path_in_repo="b.txt", repo_id=repo, repo_type="dataset").oid

def commit(parent, path):
    return api.create_commit(
        repo, repo_type="dataset", commit_message=f"add {path}", parent_commit=parent,
        operations=[CommitOperationAdd(path_in_repo=path, path_or_fileobj=b"three")],
    )

try:
    commit(first, "stale.txt")
except HfHubHTTPError as err:
    out["stale_status"] = err.response.status_code
out["fresh_oid"] = commit(second, "fresh.txt").oid
pr = api.upload_file(path_or_fileobj=b"pr", path_in_repo="pr.txt", repo_id=repo, repo_type="dataset", create_pr=True)
out["pr_revision"] = pr.pr_revision
out["pr_file"] = open(hf_hub_download(repo, "pr.txt", repo_type="dataset", revision=pr.pr_revision)).read()
out["last_commits"] = {e.path: e.last_commit.oid for e in api.list_repo_tree(repo, repo_type="dataset", expand=True)}
out["paths_info"] = [e.path for e in api.get_paths_info(repo, ["a.txt", "nope"], repo_type="dataset")]
api.upload_file(path_or_fileobj=bytes(range(256)), path_in_repo="bytes.bin", repo_id=repo, repo_type="dataset")
with HfFileSystem().open(f"datasets/{repo}/bytes.bin", "rb", block_size=16) as f:
    f.seek(100)
    out["ranged_read"] = list(f.read(4))
for name, call in {
    "download": lambda: hf_hub_download(repo, "missing.txt", repo_type="dataset"),
    "tree": lambda: list(api.list_repo_tree(repo, "missing", repo_type="dataset")),
}.items():
    try:
        call()
    except EntryNotFoundError as err:
        out[f"{name}_error"] = [type(err).__name__, err.response.status_code]
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """One server for the module; a page size of 3 makes every listing paginate through `Link`."""
    with HubServer(tmp_path_factory.mktemp("hub"), page_size=3) as server:
        yield server


def run_client(hub: HubServer, home: Path, code: str, *args: str):
    """Run client code in a fresh interpreter pointed at `hub`; return the JSON it printed last, if any."""
    env = client_env(hub.url, home, TOKEN)
    env.update(HF_HUB_DISABLE_PROGRESS_BARS="1", HF_DATASETS_DISABLE_PROGRESS_BARS="1")
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args], env=env, capture_output=True, text=True, timeout=180
    )
    if proc.returncode != 0:
        pytest.fail(f"client failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    lines = proc.stdout.strip().splitlines()
    return json.loads(lines[-1]) if lines else None


def make_wav(seed: int) -> bytes:
    """50 ms of 16-bit stereo noise at 44.1 kHz, distinct per seed."""
    samples = np.random.default_rng(seed).integers(-20000, 20000, size=(2205, 2), dtype=np.int16)
    buffer = io.BytesIO()
    sf.write(buffer, samples, 44100, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def loops(tmp_path_factory):
    """The dataset to push, as a JSON spec for the push script: WAV files on disk plus labels."""
    folder = tmp_path_factory.mktemp("loops")
    splits = {}
    for split, seeds in {"train": [0, 1, 2], "test": [10, 11]}.items():
        splits[split] = []
        for seed in seeds:
            wav = folder / f"loop{seed:02d}.wav"
            wav.write_bytes(make_wav(seed))
            splits[split].append({"wav": str(wav), "bpm": 90 + seed, "tags": [0, seed % 3]})
    spec = folder / "spec.json"
    spec.write_text(json.dumps({"repo": REPO, "tags": TAGS, "splits": splits}))
    return spec


@pytest.fixture(scope="module")
def pushed(hub, loops, tmp_path_factory):
    """Push once for the module; return the index where this push's requests start in the log."""
    start = len(hub.requests)
    run_client(hub, tmp_path_factory.mktemp("pusher"), PUSH, str(loops))
    return start


def test_push_to_hub_stores_both_configs(hub, loops, pushed):
    files = hub.list_files(REPO)
    assert set(files) == {".gitattributes", "README.md"} | SHARDS
    assert all(hub.is_lfs(REPO, shard) for shard in SHARDS)
    assert not hub.is_lfs(REPO, "README.md")

    readme = hub.read_file(REPO, "README.md").decode()
    for config, data_dir in (("default", "data"), ("labels", "labels")):
        assert f"- config_name: {config}\n  data_files:\n  - split: train\n    path: {data_dir}/train-*" in readme

    spec = json.loads(loops.read_text())
    table = pq.read_table(io.BytesIO(hub.read_file(REPO, "data/train-00000-of-00001.parquet")))
    audio = table.column("audio").to_pylist()
    assert [a["path"] for a in audio] == [Path(r["wav"]).name for r in spec["splits"]["train"]]
    assert [a["bytes"] for a in audio] == [Path(r["wav"]).read_bytes() for r in spec["splits"]["train"]]
    assert table.column("bpm").to_pylist() == [r["bpm"] for r in spec["splits"]["train"]]
    assert "audio" not in pq.read_schema(io.BytesIO(hub.read_file(REPO, "labels/train-00000-of-00001.parquet"))).names

    # create (initial commit) + one commit per config
    assert [c["title"] for c in hub.commits(REPO)] == ["Upload dataset", "Upload dataset", "initial commit"]
    assert all(len(c["id"]) == 40 for c in hub.commits(REPO))
    uploads = [r for r in hub.requests[pushed:] if r.method == "PUT"]
    assert len(uploads) == len(SHARDS)
    assert hub.unhandled == []


def test_push_again_is_idempotent(hub, loops, pushed, tmp_path):
    files, commits, start = hub.list_files(REPO), hub.commits(REPO), len(hub.requests)
    run_client(hub, tmp_path, PUSH, str(loops))
    assert hub.list_files(REPO) == files  # no duplicated or renamed shards
    assert hub.commits(REPO) == commits  # unchanged files are not committed again
    assert not [r for r in hub.requests[start:] if r.method == "PUT"]  # nor uploaded again


def test_load_dataset_round_trips(hub, loops, pushed, tmp_path):
    loaded = run_client(hub, tmp_path, LOAD, REPO)

    spec = json.loads(loops.read_text())
    expected = [
        {
            "bpm": r["bpm"],
            "tags": r["tags"],
            "samples": sf.read(r["wav"], dtype="int16")[0].tolist(),
            "path": Path(r["wav"]).name,
            "sha256": hashlib.sha256(Path(r["wav"]).read_bytes()).hexdigest(),
        }
        for r in spec["splits"]["train"]
    ]
    assert loaded["train"] == expected
    assert loaded["streamed"] == expected
    assert loaded["labels_columns"] == ["bpm", "tags"]
    for split, rows in spec["splits"].items():
        assert loaded["labels"][split] == {"bpm": [r["bpm"] for r in rows], "tags": [r["tags"] for r in rows]}
    assert hub.unhandled == []


def test_stale_parent_commit_pull_request_and_missing_file(hub, tmp_path):
    repo = "user/scratch"
    out = run_client(hub, tmp_path, API, repo)
    history = [c["title"] for c in hub.commits(repo)]  # newest first
    assert history == ["Upload bytes.bin with huggingface_hub", "add fresh.txt", "Upload b.txt with huggingface_hub",
                       "Upload a.txt with huggingface_hub", "initial commit"]  # fmt: skip
    assert out["stale_status"] == 412 and "stale.txt" not in hub.list_files(repo)
    assert out["pr_revision"] == "refs/pr/1" and out["pr_file"] == "pr"
    assert "pr.txt" in hub.list_files(repo, revision="refs/pr/1") and "pr.txt" not in hub.list_files(repo)
    assert out["last_commits"]["a.txt"] == hub.commits(repo)[-2]["id"]
    assert out["last_commits"]["fresh.txt"] == out["fresh_oid"]
    assert out["paths_info"] == ["a.txt"]
    assert out["ranged_read"] == [100, 101, 102, 103] and hub.is_lfs(repo, "bytes.bin")
    assert out["download_error"] == ["RemoteEntryNotFoundError", 404]
    assert out["tree_error"] == ["RemoteEntryNotFoundError", 404]

    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(f"{hub.url}/datasets/{repo}/resolve/main/missing.txt")
    assert missing.value.code == 404 and missing.value.headers["X-Error-Code"] == "EntryNotFound"


def test_resolve_honours_byte_ranges(hub, pushed):
    url = f"{hub.url}/datasets/{REPO}/resolve/main/README.md"
    readme = hub.read_file(REPO, "README.md")
    size = len(readme)
    for wanted, start, stop in (("bytes=3-9", 3, 10), ("bytes=10-", 10, size), ("bytes=-5", size - 5, size)):
        with urllib.request.urlopen(urllib.request.Request(url, headers={"Range": wanted})) as response:
            assert response.status == 206 and response.read() == readme[start:stop]
            assert response.headers["Content-Range"] == f"bytes {start}-{stop - 1}/{size}"
    with pytest.raises(urllib.error.HTTPError) as unsatisfiable:
        urllib.request.urlopen(urllib.request.Request(url, headers={"Range": f"bytes={size}-"}))
    assert unsatisfiable.value.code == 416


def test_unknown_routes_get_json_404_and_are_recorded(hub):
    with pytest.raises(urllib.error.HTTPError) as unknown:
        urllib.request.urlopen(f"{hub.url}/api/nothing-here")
    assert unknown.value.code == 404 and "error" in json.load(unknown.value)
    assert ("GET", "/api/nothing-here") in hub.unhandled
    hub.unhandled.remove(("GET", "/api/nothing-here"))


def test_token_never_reaches_the_request_log(hub, pushed):
    assert hub.requests and not [r for r in hub.requests if TOKEN in r.path]


def test_standalone_command_serves_and_checks_its_token(tmp_path):
    script = Path(__file__).with_name("hub_server.py")
    server = subprocess.Popen(
        [sys.executable, str(script), "--root", str(tmp_path), "--port", "0", "--token", TOKEN],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        endpoint = server.stdout.readline().strip().removeprefix("HF_ENDPOINT=")
        with pytest.raises(urllib.error.HTTPError) as absent:
            urllib.request.urlopen(f"{endpoint}/api/datasets/user/absent")
        assert absent.value.code == 404 and absent.value.headers["X-Error-Code"] == "RepoNotFound"

        def create(token):
            body = json.dumps({"name": "new", "organization": "user", "type": "dataset"}).encode()
            headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
            return urllib.request.urlopen(urllib.request.Request(f"{endpoint}/api/repos/create", body, headers))

        with pytest.raises(urllib.error.HTTPError) as refused:
            create("not-the-token")
        assert refused.value.code == 401
        assert json.load(create(TOKEN))["url"] == f"{endpoint}/datasets/user/new"
        with pytest.raises(urllib.error.HTTPError) as exists:
            create(TOKEN)
        assert exists.value.code == 409 and json.load(exists.value)["url"] == f"{endpoint}/datasets/user/new"
    finally:
        server.terminate()
        server.wait(timeout=10)
