"""Benchmark: build, export and stream POP-ROK against the cost of reading the WAV archive.

    python benchmarks/bench.py [--loops N] [--work-dir DIR] [--profile DIR]

Generates POP-ROK-shaped archives with the project's own generator (``poprok.sample.archives.make_sample``,
aggregated layout: 8-bar stereo 44.1 kHz 16-bit loops, ~2.9 MB of WAV each) for N and 4N loops, then measures in one
run, each heavy step in a fresh subprocess so its peak RSS is its own (``os.wait4`` returns the child's
``ru_maxrss``; the child also samples /proc/self/status to split the peak into anonymous and file-backed
pages):

  floor      Python's tarfile in stream mode over gzip, reading every member (what the builder must do);
             ``gzip -dc`` and zlib-only decompression are printed for reference
  inflate    the project's own read of the archive alone, checked_tar.CheckedTarGz with its default inflater;
             each inflater (zlib, isal, rapidgzip on 1 and 2 threads) is timed too
  download   poprok.archives.download.download of the N WAV archive from a loopback FileServer that caps each
             connection at 20 MB/s (the way busy public servers do), over 1 and over 4 connections
  build      PopRok(config_name="default", data_dir=..., cache_dir=fresh).download_and_prepare() (it listens to
             every loop), with the default inflater, then once with each other ($POP_ROK_INFLATER)
  listen     poprok.analysis.listen over the N loops' PCM alone, on one core (pinned, thread pools of 1)
  export     what ``python pop_rok.py export`` does: pop_rok_copy.export(out, "all", fmt, data_dir=, cache_dir=)
             over the cached builds of both configs (card with its split table, stats.png), WAV then FLAC
  decode     load_dataset of each Parquet copy, every row's audio decoded, on one core (pinned, 1 torch thread)
  stream     PopRok(base_url=FileServer.url).as_streaming_dataset(split="train") -> first row, N and 4N (median
             of --repeat fresh processes)
  num_proc   download_and_prepare(num_proc=1 vs 2) on the extracted files of the 4N archive (at N, starting
             the worker pool costs more than the work)

Every build and export asserts its row counts: the splits' rows sum to the loops generated (a split may be
empty in a build; every split the export declares has rows). Prints a table with the targets and, last,
one JSON line. Archives (and their extracted copy) are kept in
``--work-dir`` (default: a temporary folder) so reruns skip the generation. ``--profile DIR`` also runs
every timed section under pyinstrument and writes DIR/<step>.txt (the figures of such a run are slower).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import zlib
from pathlib import Path

# --repo (or $POP_ROK_BENCH_REPO) benchmarks another checkout, e.g. a scratch copy with a change to try.
ROOT = Path(os.environ.get("POP_ROK_BENCH_REPO") or Path(__file__).resolve().parent.parent).resolve()
sys.path[:0] = [
    str(ROOT),
    # The one entry for tests/: the download and streaming figures use tests/file_server.FileServer, the loopback
    # server whose per-connection rate cap tests/test_resumable_download.py checks (download_speedup rests on it).
    str(ROOT / "tests"),
]

WAV_ARCHIVE = "pop_rok_drm_id_001_wav.tar.gz"
JSON_ARCHIVE = "pop_rok_drm_id_001_json.tar.gz"
CORES = os.cpu_count() or 1
DOWNLOAD_RATE = 20e6  # bytes/s per connection: what a busy public server such as Zenodo gives each connection
DOWNLOAD_CONNECTIONS = (1, 4)

TARGETS = {  # key: (description, check)
    "download_speedup": (">= 3.0", lambda r: r["download_speedup"] >= 3.0),
    "build_ratio": ("<= 1.0", lambda r: r["build_ratio"] <= 1.0),  # listening included (the target)
    "build_ratio_4x": ("<= 1.0", lambda r: r["build_ratio_4x"] <= 1.0),
    "listen_x_realtime": (">= 1500", lambda r: r["listen_x_realtime"] >= 1500),
    "export_ratio": ("<= 1.3", lambda r: r["export_ratio"] <= 1.3),
    "peak_rss_mb": ("<= 600", lambda r: r["peak_rss_mb"] <= 600),
    "peak_rss_mb_4x": ("< 1.1 x N", lambda r: r["peak_rss_mb_4x"] < 1.1 * r["peak_rss_mb"]),
    "stream_first_row_s": ("<= 1.0", lambda r: r["stream_first_row_s"] <= 1.0),
    "stream_first_row_s_4x": ("<= 1.2 x N", lambda r: r["stream_first_row_s_4x"] <= 1.2 * r["stream_first_row_s"]),
    "flac_x_realtime": (">= 300", lambda r: r["flac_x_realtime"] >= 300),
    "flac_bytes_ratio": ("<= 0.6", lambda r: r["flac_bytes_ratio"] <= 0.6),
}
JSON_KEYS = (
    "loops",
    "floor_s",
    "inflate_s",
    "download_s_1",
    "download_s_4",
    "download_speedup",
    "build_s",
    "build_overhead",
    "build_ratio",
    "build_ratio_4x",
    "listen_x_realtime",
    "export_s",
    "export_ratio",
    "flac_export_s",
    "flac_x_realtime",
    "flac_bytes_ratio",
    "decode_x_realtime_wav",
    "decode_x_realtime_flac",
    "stream_first_row_s",
    "stream_first_row_s_4x",
    "peak_rss_mb",
    "peak_rss_mb_4x",
    "num_proc_speedup",
)
INFLATER_CANDIDATES = (("zlib", None), ("isal", None), ("rapidgzip", 1), ("rapidgzip", 2))  # (inflater, threads)


# ------------------------------------------------------------------------------------------- inputs


def sample_folder(work_dir: Path, loops: int, seed: int) -> Path:
    """The two archives for ``loops`` loops, generated once per work dir (a marker file says they are whole)."""
    folder = work_dir / f"archives-{loops}-seed{seed}"
    marker = folder / "sample.json"
    if not marker.is_file():
        from poprok.sample import archives as sample_archives

        shutil.rmtree(folder, ignore_errors=True)
        started = time.perf_counter()
        manifest = sample_archives.make_sample(folder, loops=loops, seed=seed, layout="aggregated")
        marker.write_text(json.dumps({"loops": len(manifest), "seed": seed, "layout": "aggregated"}))
        log(f"generated {loops} loops in {time.perf_counter() - started:.1f} s -> {folder}")
    return folder


def extracted_folder(archives: Path) -> Path:
    """The archives' files, extracted once: a data_dir that lets num_proc split the work."""
    folder = archives.with_name(archives.name + "-extracted")
    marker = folder / ".complete"
    if not marker.is_file():
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        for name in (WAV_ARCHIVE, JSON_ARCHIVE):
            with tarfile.open(archives / name, "r:gz") as tar:
                tar.extractall(folder, filter="data")
        marker.write_text("")
    return folder


class OtherLoad:
    """CPU that processes other than this benchmark used while it ran, in cores: a busy machine skews timings."""

    def __init__(self):
        self.start = self._sample()

    @staticmethod
    def _sample() -> tuple[float, float, float]:
        with open("/proc/stat") as stat:
            fields = [int(v) for v in stat.readline().split()[1:9]]  # user .. steal (guest time is in user)
        busy = (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait
        own = os.times()
        return time.perf_counter(), busy, own.user + own.system + own.children_user + own.children_system

    def cores(self) -> float:
        wall, busy, own = (b - a for a, b in zip(self.start, self._sample()))
        return max(0.0, busy - own) / wall


def warm_page_cache(path: Path) -> None:
    with open(path, "rb") as f:
        while f.read(1 << 22):
            pass


# -------------------------------------------------------------------------------------------- floor


def write_page_cache(folder: Path, size: int) -> float:
    """Seconds to write ``size`` bytes to a new file: the least that writing the Arrow cache costs here."""
    block = os.urandom(1 << 22)
    path = folder / "write-test.bin"
    started = time.perf_counter()
    with open(path, "wb") as out:
        for _ in range(0, size, len(block)):
            out.write(block)
    seconds = time.perf_counter() - started
    path.unlink()
    return seconds


def read_tar_stream(path: Path) -> tuple[int, int]:
    """What the builder must do at least: tarfile in stream mode over gzip, every member read and dropped."""
    members = size = 0
    with open(path, "rb") as raw, tarfile.open(fileobj=raw, mode="r|*") as stream:
        for info in stream:
            if info.isreg():
                size += len(stream.extractfile(info).read())
                members += 1
            stream.members = []
    return members, size


def read_zlib_only(path: Path) -> int:
    decompressor, size = zlib.decompressobj(16 + zlib.MAX_WBITS), 0
    with open(path, "rb") as raw:
        while chunk := raw.read(1 << 20):
            size += len(decompressor.decompress(chunk))
    return size


def measure_floor(archive: Path, repeat: int) -> dict:
    warm_page_cache(archive)
    tar_times = []
    for _ in range(repeat):
        started = time.perf_counter()
        members, size = read_tar_stream(archive)
        tar_times.append(time.perf_counter() - started)
    started = time.perf_counter()
    read_zlib_only(archive)
    zlib_s = time.perf_counter() - started
    gzip_s = None
    if shutil.which("gzip"):
        started = time.perf_counter()
        subprocess.run(["gzip", "-dc", str(archive)], stdout=subprocess.DEVNULL, check=True)
        gzip_s = time.perf_counter() - started
    return {
        "floor_s": statistics.median(tar_times),
        "floor_runs": tar_times,
        "zlib_s": zlib_s,
        "gzip_s": gzip_s,
        "members": members,
        "wav_bytes": size,
        "archive_bytes": archive.stat().st_size,
    }


def read_checked(path: Path, inflater=None, threads=None) -> tuple[str, float]:
    """The project's own read of the archive: (the inflater it used, seconds)."""
    from poprok.archives.checked_tar import CheckedTarGz

    archive = CheckedTarGz(lambda: open(path, "rb"), path.name, inflater=inflater, threads=threads)
    started = time.perf_counter()
    for _ in archive:
        pass
    return archive.inflater, time.perf_counter() - started


def measure_inflate(archive: Path, repeat: int) -> dict:
    """CheckedTarGz with its default inflater, median of ``repeat``; then the median of each candidate."""
    warm_page_cache(archive)
    runs = [read_checked(archive) for _ in range(repeat)]
    candidates = {}
    for inflater, threads in INFLATER_CANDIDATES:
        times = [read_checked(archive, inflater, threads) for _ in range(repeat)]
        candidates[times[0][0]] = statistics.median(seconds for _, seconds in times)
    return {
        "inflate_s": statistics.median(seconds for _, seconds in runs),
        "inflater": runs[0][0],
        "candidates": candidates,
    }


def measure_downloads(archive: Path, folder: Path, child) -> dict:
    """Each of DOWNLOAD_CONNECTIONS in a fresh child, from a server in this process capped per connection.

    The server runs here, not in the child, so its threads do not compete with the downloader for one GIL.
    """
    from file_server import FileServer

    from poprok.archives.download import md5sum

    warm_page_cache(archive)
    size, md5 = archive.stat().st_size, md5sum(archive)
    runs = {}
    for connections in DOWNLOAD_CONNECTIONS:
        with FileServer(archive.parent, rate_per_connection=DOWNLOAD_RATE) as server:
            run = child(
                "download",
                f"download-{connections}",
                url=f"{server.url}/{archive.name}",
                size=size,
                md5=md5,
                connections=connections,
                dest=str(folder / f"connections-{connections}" / archive.name),
            )
            run["bytes_sent"], run["requests"] = sum(server.bytes_sent.values()), len(server.requests)
        runs[connections] = run
    shutil.rmtree(folder, ignore_errors=True)
    return runs


# -------------------------------------------------------------------------------------- subprocesses


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def run_child(task: str, params: dict, work_dir: Path, profile_dir) -> dict:
    """Run ``task`` in a fresh interpreter; its result, plus its peak RSS as the kernel counted it."""
    label = params["label"]
    result_path = work_dir / "results" / f"{label}.json"
    log_path = work_dir / "results" / f"{label}.log"
    result_path.parent.mkdir(exist_ok=True)
    result_path.unlink(missing_ok=True)
    params = {**params, "result": str(result_path), "profile": str(profile_dir) if profile_dir else None}
    command = [sys.executable, str(Path(__file__).resolve()), "--child", task, json.dumps(params)]
    started = time.perf_counter()
    with open(log_path, "w") as child_log:
        process = subprocess.Popen(command, stdout=child_log, stderr=subprocess.STDOUT, cwd=tempfile.gettempdir())
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0 or not result_path.is_file():
        tail = log_path.read_text(errors="replace")[-4000:]
        raise RuntimeError(f"{label} failed (exit {process.returncode}); end of {log_path}:\n{tail}")
    result = json.loads(result_path.read_text())
    result["ru_maxrss_mb"] = usage.ru_maxrss / 1024  # KiB on Linux
    result["user_s"], result["sys_s"] = usage.ru_utime, usage.ru_stime  # the whole child, imports included
    result["wall_s"] = time.perf_counter() - started
    return result


class RssSampler:
    """Samples /proc/self/status: peak anonymous and file-backed RSS, and a coarse timeline."""

    FIELDS = ("VmRSS", "RssAnon", "RssFile", "RssShmem")

    def __init__(self, interval: float = 0.02):
        self.interval, self.peak, self.timeline = interval, {}, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._t0 = time.perf_counter()

    @classmethod
    def now(cls) -> dict:
        values = {}
        with open("/proc/self/status") as status:
            for line in status:
                key, _, rest = line.partition(":")
                if key in cls.FIELDS:
                    values[key] = int(rest.split()[0]) / 1024
        return values

    def _run(self) -> None:
        while not self._stop.is_set():
            values = self.now()
            for key, value in values.items():
                self.peak[key] = max(self.peak.get(key, 0.0), value)
            self.timeline.append((round(time.perf_counter() - self._t0, 3), values["RssAnon"], values["RssFile"]))
            self._stop.wait(self.interval)

    def __enter__(self):
        self._t0 = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


class Section:
    """Times a block; with a profile folder, also runs it under pyinstrument and writes <label>.txt."""

    def __init__(self, params: dict, label: str):
        self.label, self.folder, self.profiler = label, params.get("profile"), None

    def __enter__(self):
        if self.folder:
            from pyinstrument import Profiler

            self.profiler = Profiler(interval=0.002)
            self.profiler.start()
        self.started, self.cpu_started = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.started
        self.cpu_seconds = time.process_time() - self.cpu_started  # this process's threads, not its children
        if self.profiler is not None:
            self.profiler.stop()
            os.makedirs(self.folder, exist_ok=True)
            tree = self.profiler.output_text(unicode=False, color=False, show_all=False)
            flat = self.profiler.output_text(unicode=False, color=False, flat=True, show_all=True)
            Path(self.folder, f"{self.label}.txt").write_text(f"{tree}\n\nTop frames by self time:\n{flat}")
            Path(self.folder, f"{self.label}.html").write_text(self.profiler.output_html())


def check_rows(params: dict, rows: dict[str, int], what: str, every_split_has_rows: bool = False) -> dict:
    """Assert that the splits' rows sum to the loops generated; ``every_split_has_rows``: none is empty."""
    if sum(rows.values()) != params["loops"]:
        raise AssertionError(f"{params['label']}: the {what}'s splits hold {rows}, not {params['loops']} rows in all")
    empty = [name for name, count in rows.items() if count == 0]
    if every_split_has_rows and empty:
        raise AssertionError(f"{params['label']}: the {what} declares empty split(s) {empty}: {rows}")
    return rows


def child_build(params: dict) -> dict:
    if params.get("inflater"):
        from poprok.archives.checked_tar import INFLATER_VARIABLE

        os.environ[INFLATER_VARIABLE] = params["inflater"]
    import pop_rok

    after_imports = RssSampler.now()
    builder = pop_rok.PopRok(config_name="default", data_dir=params["data_dir"], cache_dir=params["cache_dir"])
    before, times_before = RssSampler.now(), os.times()
    with RssSampler() as sampler, Section(params, params["label"]) as section:
        builder.download_and_prepare(num_proc=params.get("num_proc"))
    times_after = os.times()
    rows = check_rows(params, {name: split.num_examples for name, split in builder.info.splits.items()}, "build")
    return {
        "seconds": section.seconds,
        "cpu_seconds": section.cpu_seconds,
        "rows": rows,
        "section_user_s": times_after.user - times_before.user,
        "section_sys_s": times_after.system - times_before.system,
        "rss_after_imports": after_imports,
        "rss_before": before,
        "rss_peak": sampler.peak,
        "rss_after": RssSampler.now(),
        "timeline": sampler.timeline[:: max(1, len(sampler.timeline) // 40)],
    }


def child_export(params: dict) -> dict:
    """``python pop_rok.py export`` of both configs, WAV then FLAC, over the builds the build step cached."""
    import io

    import numpy as np
    import pyarrow.parquet as pq
    import soundfile as sf

    import pop_rok
    from poprok.publish import parquet_copy, pop_rok_copy

    kwargs = {"data_dir": params["data_dir"], "cache_dir": params["cache_dir"]}
    audio_seconds = 0.0
    for config in pop_rok_copy.CONFIG_NAMES:  # as the command finds them: "default" is the build step's cache
        builder = pop_rok.PopRok(config_name=config, **kwargs)
        builder.download_and_prepare()
        check_rows(
            params, {name: split.num_examples for name, split in builder.info.splits.items()}, f"{config} build"
        )
        if config == "default":
            audio_seconds = float(
                sum(sum(split.with_format("arrow")["duration"].to_pylist()) for split in builder.as_dataset().values())
            )
    out = {}
    for audio_format in ("wav", "flac"):
        folder = Path(params["out_dir"]) / audio_format
        shutil.rmtree(folder, ignore_errors=True)
        with RssSampler() as sampler, Section(params, f"{params['label']}-{audio_format}") as section:
            summary = pop_rok_copy.export(folder, "all", audio_format, **kwargs)
        for config, splits in summary.items():
            rows = {split: sum(f["rows"] for f in files) for split, files in splits.items()}
            check_rows(params, rows, f"{audio_format} export's {config} config", every_split_has_rows=True)
        card = (folder / "README.md").read_text(encoding="utf-8")
        if "| rows |" not in card or not (folder / "stats.png").stat().st_size:
            raise AssertionError(f"{folder}: the card has no split table, or stats.png is empty")
        files = [file for split_files in summary["default"].values() for file in split_files]
        out[audio_format] = {
            "seconds": section.seconds,
            "bytes": sum(f["bytes"] for f in files),
            "shards": len(files),
            "all_shards": sum(len(split_files) for splits in summary.values() for split_files in splits.values()),
            "splits": {
                split: sum(f["rows"] for f in split_files) for split, split_files in summary["default"].items()
            },
            "rss_peak": sampler.peak,
        }

    # FLAC round trip: the same samples as the WAV copy, bit for bit, on a few rows.
    def cells(audio_format: str, wanted=None, count=None) -> dict:
        found = {}
        for path in sorted((Path(params["out_dir"]) / audio_format / "data" / "default").glob("*.parquet")):
            table = pq.read_table(path, columns=["name", "audio"])
            for name, cell in zip(table["name"].to_pylist(), table["audio"].to_pylist()):
                if wanted is None or name in wanted:
                    found[name] = cell["bytes"]
                if count is not None and len(found) >= count:
                    return found
        return found

    flac_cells = cells("flac", count=params.get("check_rows", 4))
    wav_cells = cells("wav", wanted=set(flac_cells))
    exact = []
    for name, flac_bytes in flac_cells.items():
        a, rate_a = sf.read(io.BytesIO(wav_cells[name]), dtype="int16")
        b, rate_b = sf.read(io.BytesIO(flac_bytes), dtype="int16")
        exact.append(bool(rate_a == rate_b and a.shape == b.shape and np.array_equal(a, b)))
    return {
        "audio_seconds": audio_seconds,
        "rows": params["loops"],
        "flac_checked": len(exact),
        "flac_exact": all(exact) and bool(exact),
        "flac_encoders": getattr(parquet_copy, "FLAC_ENCODERS", 1),  # write_parquet_copy(num_proc=None): this process
        **out,
    }


def child_listen(params: dict) -> dict:
    """Audio seconds per second of poprok.analysis.listen alone, over the N archive's loops, on one core."""
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # taskset -c <first CPU>, before any thread starts
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[variable] = "1"
    if "numpy" in sys.modules:
        raise RuntimeError("numpy was imported before its thread pools were set to one thread")
    from poprok.analysis import listen
    from poprok.archives.checked_tar import CheckedTarGz
    from poprok.archives.wav import read_wav_info
    from poprok.grid import bars_in
    from poprok.labels.names import parse_loop_name

    archive = Path(params["archive"])
    loops = []  # (pcm, bpm, bars): decoded first, so that only listening is timed
    for path, data in CheckedTarGz(lambda: open(archive, "rb"), archive.name):
        if path.lower().endswith(".wav"):
            info, bpm = read_wav_info(data), parse_loop_name(Path(path).name[: -len(".wav")]).bpm
            loops.append((info.samples(data), bpm, bars_in(info.num_frames, bpm, info.sample_rate)))
    if len(loops) != params["loops"]:
        raise AssertionError(f"{archive} holds {len(loops)} loops, not {params['loops']}")
    audio_seconds = sum(len(pcm) for pcm, _, _ in loops) / 44100
    listen(*loops[0])  # the first call fills the filterbank and K-weighting caches: not timed
    runs = []
    for run in range(params["repeat"]):
        with Section(params, f"{params['label']}-{run + 1}") as section:
            for pcm, bpm, bars in loops:
                listen(pcm, bpm, bars)
        runs.append(section.seconds)
    return {
        "seconds": statistics.median(runs),
        "runs": runs,
        "audio_seconds": audio_seconds,
        "loops": len(loops),
        "cpus": sorted(os.sched_getaffinity(0)),
    }


def child_stream(params: dict) -> dict:
    from file_server import FileServer

    import pop_rok

    with FileServer(params["folder"]) as server:
        builder = pop_rok.PopRok(config_name="default", base_url=server.url, cache_dir=params["cache_dir"])
        with Section(params, params["label"]) as section:
            stream = builder.as_streaming_dataset(split="train")
            row = next(iter(stream))
        sent = dict(server.bytes_sent)
        requests = [(method, name) for method, name, _ in server.requests]
    return {"seconds": section.seconds, "first_row": row["name"], "bytes_sent": sent, "requests": requests}


def child_decode(params: dict) -> dict:
    """Audio seconds decoded per second on one core: every row of each Parquet copy, through load_dataset."""
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # before any library starts a thread
    import datasets
    import torch

    torch.set_num_threads(1)
    copies = {  # every split the copy holds (a small sample may leave train empty, and the export leaves it out)
        audio_format: datasets.concatenate_datasets(
            list(
                datasets.load_dataset(
                    str(Path(params["out_dir"]) / audio_format),
                    "default",
                    cache_dir=str(Path(params["cache_dir"]) / audio_format),
                ).values()
            )
        )
        for audio_format in ("wav", "flac")
    }
    if any(len(dataset) != params["loops"] for dataset in copies.values()):
        raise AssertionError(f"the copies hold {[len(d) for d in copies.values()]} rows, not {params['loops']}")
    for dataset in copies.values():  # the first decode of each loads FFmpeg's decoder: not timed
        dataset[0]["audio"].get_all_samples()
    out = {}
    for audio_format, dataset in copies.items():
        audio_seconds = 0.0
        with Section(params, f"{params['label']}-{audio_format}") as section:
            for row in dataset:
                samples = row["audio"].get_all_samples()
                audio_seconds += samples.data.shape[-1] / samples.sample_rate
        out[audio_format] = {
            "seconds": section.seconds,
            "cpu_seconds": section.cpu_seconds,
            "audio_seconds": audio_seconds,
            "rows": len(dataset),
        }
    return out


def child_download(params: dict) -> dict:
    """poprok.archives.download.download of one file into a fresh destination, timed without the imports."""
    from poprok.archives.download import download

    dest = Path(params["dest"])
    shutil.rmtree(dest.parent, ignore_errors=True)
    with Section(params, params["label"]) as section:
        download(
            params["url"],
            dest,
            expected_size=params["size"],
            expected_md5=params["md5"],
            connections=params["connections"],
            progress=False,
        )
    return {"seconds": section.seconds, "cpu_seconds": section.cpu_seconds, "bytes": dest.stat().st_size}


CHILD_TASKS = {
    "build": child_build,
    "download": child_download,
    "export": child_export,
    "stream": child_stream,
    "decode": child_decode,
    "listen": child_listen,
}


def child_main(task: str, params: dict) -> None:
    import logging

    logging.disable(logging.WARNING)
    result = CHILD_TASKS[task](params)
    Path(params["result"]).write_text(json.dumps(result))


# --------------------------------------------------------------------------------------------- main


def median_run(runs: list[dict]) -> dict:
    """The run of median ``seconds``, its ``runs`` the seconds of them all."""
    middle = dict(sorted(runs, key=lambda run: run["seconds"])[len(runs) // 2])
    middle["runs"] = [run["seconds"] for run in runs]
    return middle


def fmt(value, digits=2) -> str:
    return "-" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loops", type=int, default=80, help="loops in the N archive (4N are generated too)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work-dir", help="keeps generated archives between runs (default: a temporary folder)")
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs of the floor and of the N build (medians are used)"
    )
    parser.add_argument("--profile", help="also profile each timed step with pyinstrument into this folder")
    parser.add_argument("--repo", help="checkout whose pop_rok.py to benchmark (default: this one)")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child_main(args.child[0], json.loads(args.child[1]))
        return 0

    if args.repo:
        os.environ["POP_ROK_BENCH_REPO"] = str(Path(args.repo).resolve())  # the children read it
        sys.path[:2] = [os.environ["POP_ROK_BENCH_REPO"], os.path.join(os.environ["POP_ROK_BENCH_REPO"], "tests")]
    temporary = None
    if args.work_dir:
        work_dir = Path(args.work_dir).resolve()
        work_dir.mkdir(parents=True, exist_ok=True)
    else:
        temporary = tempfile.TemporaryDirectory(prefix="pop_rok_bench_")
        work_dir = Path(temporary.name)
    profile_dir = Path(args.profile).resolve() if args.profile else None
    n, n4 = args.loops, 4 * args.loops
    scratch = work_dir / "scratch"  # caches and outputs of this run
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    try:
        started, load_before = time.perf_counter(), os.getloadavg()
        other_load = OtherLoad()
        small, large = sample_folder(work_dir, n, args.seed), sample_folder(work_dir, n4, args.seed + 1)
        extracted, extracted4 = extracted_folder(small), extracted_folder(large)

        os.sync()  # archives generated (or extracted) just now are written back before anything is timed
        log("floor: reading the WAV archives")
        floor, floor4 = (
            measure_floor(small / WAV_ARCHIVE, args.repeat),
            measure_floor(large / WAV_ARCHIVE, args.repeat),
        )
        log("inflate: CheckedTarGz and each inflater on the N archive")
        inflate = measure_inflate(small / WAV_ARCHIVE, args.repeat)
        write_s = write_page_cache(scratch, floor["wav_bytes"])

        def child(task, label, **params):
            log(f"{task}: {label}")
            # What the steps before wrote (a 4N build: ~1 GB of Arrow) is flushed to disk first, untimed: else the
            # kernel writes it back ~30 s later, during whichever step then runs
            os.sync()
            return run_child(task, {"label": label, **params}, work_dir, profile_dir)

        downloads = measure_downloads(small / WAV_ARCHIVE, scratch / "downloads", child)

        builds = [
            child("build", f"build-N-{run}", data_dir=str(small), cache_dir=str(scratch / f"cache-N-{run}"), loops=n)
            for run in range(1, args.repeat + 1)
        ]
        build = median_run(builds)
        build["ru_maxrss_mb"] = max(b["ru_maxrss_mb"] for b in builds)
        builds_by_inflater = {
            inflater: child(
                "build",
                f"build-N-{inflater}",
                data_dir=str(small),
                inflater=inflater,
                cache_dir=str(scratch / f"cache-N-{inflater}"),
                loops=n,
            )["seconds"]
            for inflater in ("zlib", "isal", "rapidgzip")
            if not inflate["inflater"].startswith(inflater)
        }
        listening = child("listen", "listen-N", archive=str(small / WAV_ARCHIVE), loops=n, repeat=args.repeat)
        export = child(  # over the first N build's cache, as `pop_rok.py export` finds it
            "export",
            "export-N",
            data_dir=str(small),
            cache_dir=str(scratch / "cache-N-1"),
            out_dir=str(scratch / "export-N"),
            loops=n,
        )
        decode = child(
            "decode", "decode-N", out_dir=str(scratch / "export-N"), cache_dir=str(scratch / "decode-cache"), loops=n
        )
        build4 = child("build", "build-4N", data_dir=str(large), cache_dir=str(scratch / "cache-4N"), loops=n4)
        # The first row comes after ~0.5 s, so a run's noise is a large share of it: the median of --repeat children,
        # N and 4N taking turns (N, 4N, N, 4N, ...), so a slow spell of the machine weighs on both alike
        streams = {"N": [], "4N": []}
        for run in range(1, args.repeat + 1):
            for size, folder in (("N", small), ("4N", large)):
                streams[size].append(
                    child(
                        "stream",
                        f"stream-{size}-{run}",
                        folder=str(folder),
                        cache_dir=str(scratch / f"sc-{size}-{run}"),
                    )
                )
        stream, stream4 = median_run(streams["N"]), median_run(streams["4N"])
        procs = {
            (size, num_proc): child(
                "build",
                f"build-extracted-{size}-np{num_proc}",
                data_dir=str(folder),
                cache_dir=str(scratch / f"cache-{size}-np{num_proc}"),
                num_proc=num_proc,
                loops=loops,
            )
            for size, folder, loops in (("4N", extracted4, n4), ("N", extracted, n))
            for num_proc in (1, 2)
        }
        proc1, proc2 = procs["4N", 1], procs["4N", 2]
        total_s = time.perf_counter() - started
        other_cores, load_after = other_load.cores(), os.getloadavg()
    finally:
        if temporary is None:
            shutil.rmtree(scratch, ignore_errors=True)  # keep the archives, drop caches and copies
        else:
            temporary.cleanup()

    report = {
        "loops": n,
        "floor_s": floor["floor_s"],
        "inflate_s": inflate["inflate_s"],
        "download_s_1": downloads[1]["seconds"],
        "download_s_4": downloads[4]["seconds"],
        "download_speedup": downloads[1]["seconds"] / downloads[4]["seconds"],
        "build_s": build["seconds"],
        "build_overhead": build["seconds"] / inflate["inflate_s"],
        "build_ratio": build["seconds"] / floor["floor_s"],
        "build_ratio_4x": build4["seconds"] / floor4["floor_s"],
        "listen_x_realtime": listening["audio_seconds"] / listening["seconds"],
        "export_s": export["wav"]["seconds"],
        "export_ratio": export["wav"]["seconds"] / floor["floor_s"],
        "flac_export_s": export["flac"]["seconds"],
        "flac_x_realtime": export["audio_seconds"] / export["flac"]["seconds"],
        "flac_bytes_ratio": export["flac"]["bytes"] / export["wav"]["bytes"],
        "decode_x_realtime_wav": decode["wav"]["audio_seconds"] / decode["wav"]["seconds"],
        "decode_x_realtime_flac": decode["flac"]["audio_seconds"] / decode["flac"]["seconds"],
        "stream_first_row_s": stream["seconds"],
        "stream_first_row_s_4x": stream4["seconds"],
        "peak_rss_mb": build["ru_maxrss_mb"],
        "peak_rss_mb_4x": build4["ru_maxrss_mb"],
        "num_proc_speedup": proc1["seconds"] / proc2["seconds"],
    }
    assert tuple(report) == JSON_KEYS

    mb = 1e6
    print(
        f"POP-ROK benchmark of {os.environ.get('POP_ROK_BENCH_REPO') or ROOT}: {n} loops (and {n4}), {CORES} cores, "
        f"Python {sys.version.split()[0]}"
    )
    print(
        f"  WAV archive N:  {floor['archive_bytes'] / mb:,.0f} MB gzip, "
        f"{floor['wav_bytes'] / mb:,.0f} MB in {floor['members']} members "
        f"(ratio {floor['archive_bytes'] / floor['wav_bytes']:.2f}); 4N: {floor4['archive_bytes'] / mb:,.0f} MB"
    )
    print(
        f"  audio N:        {export['audio_seconds']:,.0f} s ({export['audio_seconds'] / 3600:.2f} h); splits "
        + ", ".join(f"{split} {rows}" for split, rows in build["rows"].items())
        + f" (4N: {', '.join(f'{split} {rows}' for split, rows in build4['rows'].items())}); row counts checked"
    )
    print(
        "  load average:   {:.2f} {:.2f} {:.2f} at the start, {:.2f} {:.2f} {:.2f} at the end".format(
            *load_before, *load_after
        )
    )
    print()
    print(f"  {'metric':<24} {'value':>10}  {'target':<12} {'ok':<4} notes")
    rows = [
        (
            "floor_s",
            None,
            f"tarfile r|gz, median of {args.repeat}: {', '.join(fmt(t) for t in floor['floor_runs'])} s; "
            f"zlib only {fmt(floor['zlib_s'])} s; gzip -dc {fmt(floor['gzip_s'])} s; "
            f"{floor['wav_bytes'] / mb / floor['floor_s']:.0f} MB/s; "
            f"writing as many bytes to a new file {fmt(write_s)} s",
        ),
        (
            "inflate_s",
            None,
            f"CheckedTarGz read alone with {inflate['inflater']}, median of {args.repeat}; each inflater: "
            + ", ".join(f"{name} {fmt(seconds)} s" for name, seconds in inflate["candidates"].items()),
        ),
        *(
            (
                f"download_s_{connections}",
                None,
                f"download.download, {connections} connection"
                f"{'s' * (connections > 1)} capped at {DOWNLOAD_RATE / mb:.0f} MB/s each, {run['bytes'] / mb:.0f} MB "
                f"({run['bytes'] / mb / run['seconds']:.0f} MB/s; "
                f"{run['bytes'] / DOWNLOAD_RATE / connections:.2f} s at "
                f"the cap); server sent {run['bytes_sent'] / mb:.0f} MB in {run['requests']} request"
                f"{'s' * (run['requests'] > 1)}",
            )
            for connections, run in downloads.items()
        ),
        ("download_speedup", "download_speedup", "download_s_1 / download_s_4"),
        (
            "build_s",
            None,
            f"download_and_prepare only, {inflate['inflater']}, median of "
            f"{', '.join(fmt(b['seconds']) for b in builds)} s; CPU user {fmt(build['section_user_s'])} s + sys "
            f"{fmt(build['section_sys_s'])} s; one build with "
            + ", ".join(f"{name} {fmt(seconds)} s" for name, seconds in builds_by_inflater.items()),
        ),
        (
            "build_overhead",
            None,
            f"build_s / inflate_s: what the build (rows, listening, Arrow) adds to inflating "
            f"alone, {fmt(build['seconds'] - inflate['inflate_s'])} s",
        ),
        ("build_ratio", "build_ratio", "build_s / floor_s, listening included"),
        (
            "build_ratio_4x",
            "build_ratio_4x",
            f"4N build {fmt(build4['seconds'])} s / 4N floor {fmt(floor4['floor_s'])} s "
            f"(median of {', '.join(fmt(t) for t in floor4['floor_runs'])} s)",
        ),
        (
            "listen_x_realtime",
            "listen_x_realtime",
            f"audio s / s of poprok.analysis.listen alone over the N loops, CPU "
            f"{','.join(map(str, listening['cpus']))} only, 1 thread; median of "
            f"{', '.join(fmt(t) for t in listening['runs'])} s for {listening['loops']} loops",
        ),
        (
            "export_s",
            None,
            f"pop_rok_copy.export(out, 'all', 'wav'): both configs, card, stats.png; "
            f"{export['wav']['all_shards']} shards, default config {export['wav']['shards']}, "
            f"{export['wav']['bytes'] / mb:.0f} MB; "
            "peak RSS {:.0f} MB (anon {:.0f}, file-backed {:.0f}: datasets maps its Arrow files)".format(
                *(export["wav"]["rss_peak"].get(k, 0) for k in ("VmRSS", "RssAnon", "RssFile"))
            ),
        ),
        ("export_ratio", "export_ratio", "export_s / floor_s"),
        (
            "flac_export_s",
            None,
            f"FLAC copy {export['flac']['bytes'] / mb:.0f} MB; round trip sample-exact on "
            f"{export['flac_checked']} rows: {export['flac_exact']}",
        ),
        (
            "flac_x_realtime",
            "flac_x_realtime",
            f"audio s / flac_export_s, {export['flac_encoders']} cells encoded at a time; per encoding thread "
            f"{report['flac_x_realtime'] / export['flac_encoders']:.0f}",
        ),
        ("flac_bytes_ratio", "flac_bytes_ratio", "FLAC Parquet bytes / WAV Parquet bytes"),
        (
            "decode_x_realtime_wav",
            None,
            "audio s / s, load_dataset of the WAV copy, every row's get_all_samples(), "
            f"one core: {fmt(decode['wav']['seconds'])} s for {decode['wav']['rows']} rows",
        ),
        ("decode_x_realtime_flac", None, f"the same from the FLAC copy: {fmt(decode['flac']['seconds'])} s"),
        (
            "stream_first_row_s",
            "stream_first_row_s",
            f"as_streaming_dataset -> first row, median of {', '.join(fmt(x) for x in stream['runs'])} s; served "
            f"{sum(stream['bytes_sent'].values()) / mb:.1f} MB in {len(stream['requests'])} requests",
        ),
        (
            "stream_first_row_s_4x",
            "stream_first_row_s_4x",
            f"median of {', '.join(fmt(x) for x in stream4['runs'])} s; "
            f"served {sum(stream4['bytes_sent'].values()) / mb:.1f} MB in {len(stream4['requests'])} requests",
        ),
        (
            "peak_rss_mb",
            "peak_rss_mb",
            "build process ru_maxrss; {:.0f} MB after import pop_rok, {:.0f} after PopRok() "
            "(imports torch); peak anon {:.0f} / file {:.0f} MB".format(
                build["rss_after_imports"]["VmRSS"],
                build["rss_before"]["VmRSS"],
                build["rss_peak"].get("RssAnon", 0),
                build["rss_peak"].get("RssFile", 0),
            ),
        ),
        (
            "peak_rss_mb_4x",
            "peak_rss_mb_4x",
            "growth {:+.1f}%; peak anon {:.0f} / file {:.0f} MB".format(
                100 * (build4["ru_maxrss_mb"] / build["ru_maxrss_mb"] - 1),
                build4["rss_peak"].get("RssAnon", 0),
                build4["rss_peak"].get("RssFile", 0),
            ),
        ),
        (
            "num_proc_speedup",
            None,
            f"4N extracted files: num_proc=1 {fmt(proc1['seconds'])} s, num_proc=2 {fmt(proc2['seconds'])} s; "
            f"N: {fmt(procs['N', 1]['seconds'])} s, {fmt(procs['N', 2]['seconds'])} s",
        ),
    ]
    misses = []
    for key, target_key, note in rows:
        target, ok = "", ""
        if target_key:
            target, check = TARGETS[target_key]
            passed = check(report)
            ok = "yes" if passed else "NO"
            if not passed:
                misses.append(key)
        print(f"  {key:<24} {fmt(report[key], 3):>10}  {target:<12} {ok:<4} {note}")
    print()
    print(f"  targets missed: {', '.join(misses) or 'none'}; benchmark wall time {total_s:.0f} s")
    print(
        f"  other processes used {other_cores / CORES:.0%} of {CORES} cores ({other_cores:.2f} cores) during the run"
    )
    if other_cores > 0.2:
        print("  WARNING: above 0.2 cores the timings are skewed: rerun on a quieter machine")
    if profile_dir:
        print(f"  pyinstrument profiles (timings above include profiling overhead): {profile_dir}")
    print(json.dumps({key: round(value, 4) if isinstance(value, float) else value for key, value in report.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
