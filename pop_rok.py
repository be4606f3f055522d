"""POP-ROK: 5,378 stereo 16-bit 44.1 kHz WAV loops of pop-rock drumming, with their MIDI drum notes.

The dataset builder for the two Zenodo archives of record 14038284 (CC BY 4.0, WaivOps / Patchbanks),
read top to bottom: constants, file-name and label grammar, configs, features, splits, generation,
then the one-liner, the synthetic sample and the command line (``python pop_rok.py --help``).

    builder = PopRok(config_name="default")          # or "labels": no audio, 210 KB download
    builder.download_and_prepare(); ds = builder.as_dataset(split="train")
    stream = PopRok().as_streaming_dataset(split="train")  # never downloads the 12.6 GB archive
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import math
import os
import queue
import re
import sys
import tempfile
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Optional

import datasets
import numpy as np
from datasets.exceptions import DatasetGenerationError

from datasets.utils.file_utils import xopen

from checked_tar import ArchiveError, CheckedTarGz
from resumable_download import DownloadError, download, zenodo_record_files
from tar_writer import TarGzWriter
from wav_header import WavError, read_wav_info


# --------------------------------------------------------------------------------------------- constants

_HOMEPAGE = "https://zenodo.org/records/14038284"
_LICENSE = "cc-by-4.0"
_CITATION = """\
@dataset{waivops_pop_rok_2024,
  author    = {WaivOps and Patchbanks},
  title     = {WaivOps POP-ROK: Open Audio Resources for Machine Learning in Music},
  year      = {2024},
  publisher = {Zenodo},
  doi       = {10.5281/zenodo.14038284},
  url       = {https://doi.org/10.5281/zenodo.14038284}
}
"""
_DESCRIPTION = """\
POP-ROK: 5,378 stereo 16-bit 44.1 kHz WAV loops of pop-rock drumming (about 24 hours, 100-130 BPM,
each 8 bars of 4/4), rendered from MIDI by WaivOps / Patchbanks, with the MIDI drum notes each loop
plays and its tempo. Beats and downbeats are derived from the tempo: the loops are grid-quantised
renders that start on the downbeat.
"""

ARCHIVES = {"wav": "pop_rok_drm_id_001_wav.tar.gz", "json": "pop_rok_drm_id_001_json.tar.gz"}
ZENODO_FILES_URL = "https://zenodo.org/records/14038284/files"
ZENODO_RECORD_API = "https://zenodo.org/api/records/14038284"  # the published file list, sizes and md5s
BASE_URL_ENV = "POP_ROK_BASE_URL"

SAMPLE_RATE = 44100
CHANNELS = 2
BITS_PER_SAMPLE = 16
BEATS_PER_BAR = 4
BARS_PER_LOOP = 8
BPM_RANGE = (100, 130)

# The public repository's pop_rok_drm_id_001_labels.json; a key map inside the label archive overrides it.
KEY_MAP = {
    36: "Kick",
    37: "Rimshot",
    38: "Snare",
    42: "Closed Hat",
    44: "Pedal Hat",
    46: "Open Hat",
    49: "Crash Cymbal",
    51: "Ride Cymbal",
    52: "China Cymbal",
    53: "Ride Bell Cymbal",
    55: "Splash Cymbal",
}
KEY_MAP_FIELD = "key_map_drum_note_labels"

# {bpm}bpm_{genre}_{subgenre}_drm_id_001_{track:04d}: pop = genre, rok = rock, drm = drums, id 001.
LOOP_NAME = re.compile(r"(?P<bpm>[1-9][0-9]{1,2})bpm_(?P<genre>pop)_(?P<subgenre>rok)_drm_id_001_(?P<track>[0-9]{4})")
GENRES = {"pop": "pop"}
SUBGENRES = {"rok": "rock"}

# Label keys beyond "pitch" that become columns; any other key is kept, as JSON, in `extra_labels`.
TEMPO_KEYS = ("bpm", "tempo")
OPTIONAL_LABEL_FIELDS = {"style": ("style",), "time_signature": ("time_signature", "timesig", "time_sig")}
BPM_TOLERANCE = 0.5
ON_ERROR = ("raise", "skip")


# ------------------------------------------------------------------------------- names, labels, problems


class PopRokError(ValueError):
    """Input that does not look like POP-ROK: the message names the file and what to do."""


@dataclass(frozen=True)
class LoopName:
    name: str
    bpm: int
    genre: str
    subgenre: str
    track: int


def parse_loop_name(name: str) -> LoopName:
    """Split a loop's base name (``100bpm_pop_rok_drm_id_001_0039``) into its fields."""
    match = LOOP_NAME.fullmatch(name) if isinstance(name, str) else None
    if match is None:
        raise PopRokError(
            f"{name!r} is not a POP-ROK loop name ({{bpm}}bpm_pop_rok_drm_id_001_{{track:04d}}, "
            "e.g. 100bpm_pop_rok_drm_id_001_0039)"
        )
    return LoopName(
        name=name,
        bpm=int(match["bpm"]),
        genre=GENRES[match["genre"]],
        subgenre=SUBGENRES[match["subgenre"]],
        track=int(match["track"]),
    )


@dataclass(frozen=True)
class Label:
    notes: tuple[int, ...]
    bpm: Optional[float]
    optional: dict  # style / time_signature, where the label carries them
    extra: dict  # every other key of the label, kept rather than dropped
    source: str = field(compare=False)  # the label file, for messages


def parse_label(name: str, value, source: str) -> Label:
    """Check one loop's label object (``{"pitch": [36, 38, ...], "bpm": 100, ...}``)."""
    where = f"{source}: label {name!r}"
    if not isinstance(value, dict):
        raise PopRokError(f"{where} is a {type(value).__name__}, not an object with 'pitch'")
    pitch = value.get("pitch")
    if not isinstance(pitch, list) or not all(isinstance(n, int) and not isinstance(n, bool) for n in pitch):
        raise PopRokError(f"{where}: 'pitch' must be a list of MIDI note numbers, got {pitch!r}")
    bpm = None
    tempo_key = next((k for k in TEMPO_KEYS if k in value), None)
    if tempo_key is not None:
        tempo = value[tempo_key]
        try:
            bpm = float(tempo) if not isinstance(tempo, bool) else math.nan
        except (TypeError, ValueError, OverflowError):
            bpm = math.nan
        if not (math.isfinite(bpm) and bpm > 0):
            raise PopRokError(f"{where}: tempo {tempo_key!r} must be a positive number, got {tempo!r}")
    optional = {}
    for column, keys in OPTIONAL_LABEL_FIELDS.items():
        key = next((k for k in keys if k in value), None)
        if key is not None:
            optional[column] = str(value[key])
    known = {"pitch", tempo_key, *(k for keys in OPTIONAL_LABEL_FIELDS.values() for k in keys)}
    extra = {k: v for k, v in value.items() if k not in known}
    return Label(tuple(sorted(set(pitch))), bpm, optional, extra, source)


@dataclass
class Problems:
    """Every problem found in the input, by file, so one message can list them all."""

    entries: list[tuple[str, str]] = field(default_factory=list)

    def add(self, file: str, message: str) -> None:
        self.entries.append((file, message))

    def __bool__(self) -> bool:
        return bool(self.entries)

    def report(self) -> str:
        return "\n".join(f"  - {file}: {message}" for file, message in self.entries)


def is_junk(path: str) -> bool:
    """macOS leftovers and hidden files: never data (``._*`` AppleDouble, ``.DS_Store``, ``__MACOSX/``)."""
    parts = path.replace("\\", "/").split("/")
    return "__MACOSX" in parts or parts[-1].startswith(".")


@dataclass
class LabelSet:
    """Every label of the label archive, with the problems found reading it."""

    labels: dict[str, Label] = field(default_factory=dict)
    key_map: dict[int, str] = field(default_factory=lambda: dict(KEY_MAP))
    rejected: set[str] = field(default_factory=set)  # loops whose label is unusable (already a problem)
    unreadable: bool = False  # the label archive itself is damaged (already a problem)
    problems: Problems = field(default_factory=Problems)
    json_files: int = 0


def read_labels(members: Iterable[tuple[str, bytes]]) -> LabelSet:
    """Collect every loop label and the key map from the JSON files of the label archive.

    Accepts one JSON per loop or one for many, under any folder: each file is an object keyed by loop
    name, or a bare label named by its file. A file holding ``key_map_drum_note_labels`` is the key map.
    """
    found = LabelSet()
    problems = found.problems
    for path, data in members:
        if is_junk(path) or not path.lower().endswith(".json"):
            continue
        found.json_files += 1
        try:
            document = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
            problems.add(path, f"malformed JSON ({err})")
            continue
        if isinstance(document, dict) and KEY_MAP_FIELD in document:
            try:
                found.key_map = parse_key_map(document[KEY_MAP_FIELD])
            except PopRokError as err:
                problems.add(path, str(err))
            continue
        if isinstance(document, dict) and "pitch" in document:
            document = {Path(path).stem: document}
        if not isinstance(document, dict):
            problems.add(path, f"expected an object keyed by loop name, got a {type(document).__name__}")
            continue
        for name, value in document.items():
            try:
                label = parse_label(name, value, path)
            except PopRokError as err:
                problems.add(path, str(err).removeprefix(f"{path}: "))  # the report names the file once
                found.rejected.add(name)
                continue
            previous = found.labels.get(name)
            if previous is not None and previous != label:
                problems.add(path, f"loop {name!r} is labelled differently in {previous.source}")
                found.rejected.add(name)
            found.labels.setdefault(name, label)
    for name in found.rejected:
        found.labels.pop(name, None)
    if found.json_files == 0:
        raise PopRokError("the label archive holds no JSON file: is it pop_rok_drm_id_001_json.tar.gz? Re-download it.")
    return found


def parse_key_map(entries) -> dict[int, str]:
    """``[{"note": 36, "label": "Kick"}, ...]`` -> ``{36: "Kick", ...}``."""
    if not isinstance(entries, list):
        raise PopRokError(f"{KEY_MAP_FIELD} must be a list of {{note, label}} objects")
    key_map = {}
    for entry in entries:
        if not (isinstance(entry, dict) and isinstance(entry.get("note"), int) and isinstance(entry.get("label"), str)):
            raise PopRokError(f"{KEY_MAP_FIELD} entry {entry!r} is not {{'note': int, 'label': str}}")
        key_map[entry["note"]] = entry["label"]
    return key_map


def beat_grid(bpm: float, duration: float) -> tuple[list[float], list[float]]:
    """Beats and downbeats (seconds) of a grid-quantised loop that starts on the downbeat.

    A beat within one sample of the end belongs to the next repeat: lengths are rounded to samples.
    """
    period = 60.0 / bpm
    count = math.ceil((duration - 1 / SAMPLE_RATE) / period)
    beats = [i * period for i in range(count)]
    return beats, beats[::BEATS_PER_BAR]


def archive_sources(data_dir: Optional[str], base_url: Optional[str]) -> dict[str, tuple[str, bool]]:
    """Each archive's (file or URL, False), or (folder, True) for an extracted copy in data_dir.

    In order: data_dir, then base_url, then Zenodo.
    """
    if data_dir:
        folder = os.path.expanduser(data_dir)
        if not os.path.isdir(folder):
            raise PopRokError(f"data_dir {folder!r} is not a folder")
        archives = {kind: os.path.join(folder, name) for kind, name in ARCHIVES.items()}
        return {kind: (path, False) if os.path.isfile(path) else (folder, True) for kind, path in archives.items()}
    base = (base_url or ZENODO_FILES_URL).rstrip("/")
    suffix = "" if base_url else "?download=1"
    return {kind: (f"{base}/{name}{suffix}", False) for kind, name in ARCHIVES.items()}


def source_members(kind: str, where: str, extracted: bool, download_config=None, **checks) -> Iterable[tuple[str, bytes]]:
    """(path, bytes) of the ``kind`` files below an extracted folder, or of an archive read end to end and
    checked (``checks``: CheckedTarGz's keywords); a URL is read as it arrives, through datasets' xopen."""
    if extracted:
        return _read_each(sorted(_walk(where, f".{kind}")))
    opener = functools.partial(xopen, where, "rb", download_config=download_config, block_size=0)
    return CheckedTarGz(opener, ARCHIVES[kind], **checks)


class LoopReader:
    """Turns label and WAV files into rows, recording every problem: the builder and `validate` share it.

    ``columns`` are the feature names, so optional label fields fill only the columns that exist.
    """

    def __init__(self, labels: LabelSet, columns: Iterable[str]):
        self.labels = labels
        self.columns = set(columns)
        self.problems = Problems(list(labels.problems.entries))
        self.seen: set[str] = set()
        self.wav_files = 0
        self.audio_seconds = 0.0

    def audio_rows(self, members: Iterable[tuple[str, bytes]], archive: str) -> Iterator[tuple[str, dict]]:
        """(name, row) for every good loop among the WAV archive's members."""
        for path, data in _archive_errors_as_problems(members):
            if is_junk(path) or not path.lower().endswith(".wav"):
                continue
            self.wav_files += 1
            name = Path(path).name[: -len(".wav")]
            row = self.audio_row(path, name, data)
            self.seen.add(name)
            if row is not None:
                yield name, row
        if self.wav_files == 0:
            raise PopRokError(f"{archive} holds no WAV file: is it pop_rok_drm_id_001_wav.tar.gz? Re-download it.")

    def unmatched_labels(self, wav_names: Iterable[str]) -> None:
        """Once every WAV name is known: each label must have had its WAV."""
        for name in sorted(set(self.labels.labels) - set(wav_names)):
            self.problems.add(self.labels.labels[name].source, f"label {name!r} has no WAV in the audio archive")

    def audio_row(self, path: str, name: str, data: bytes) -> Optional[dict]:
        """One example, or None after recording why the loop cannot be one."""
        try:
            loop = parse_loop_name(name)
        except PopRokError as err:
            self.problems.add(path, str(err))
            return None
        if name in self.seen:
            self.problems.add(path, f"loop {name!r} appears twice in the audio archive")
            return None
        try:
            info = read_wav_info(data)
        except WavError as err:
            self.problems.add(path, f"unreadable WAV: {err}")
            return None
        found = (info.sample_rate, info.bits_per_sample, info.channels)
        if found != (SAMPLE_RATE, BITS_PER_SAMPLE, CHANNELS):
            expected = (SAMPLE_RATE, BITS_PER_SAMPLE, CHANNELS)
            self.problems.add(path, "is {} Hz / {}-bit / {} channel(s); POP-ROK loops are {} Hz / {}-bit / {}".format(*found, *expected))
            return None
        row = self.label_row(loop, path)
        if row is None:
            return None
        self.audio_seconds += info.duration
        audio_path = f"{name}.wav"
        if os.path.isfile(audio_path):
            # datasets would store this relative path instead of the bytes, breaking the dataset elsewhere.
            raise PopRokError(f"{os.path.abspath(audio_path)} exists in the working folder: run from another folder")
        beats, downbeats = beat_grid(loop.bpm, info.duration)
        return {
            "audio": {"bytes": data, "path": audio_path},
            **row,
            "duration": _float32(info.duration),
            "num_bars": round(info.duration * loop.bpm / 60 / BEATS_PER_BAR),
            "beats": _float32(beats),
            "downbeats": _float32(downbeats),
        }

    def label_rows(self) -> Iterator[tuple[str, dict]]:
        """(name, row) for every good label, for the labels-only config, in playlist (track) order."""
        for name in sorted(self.labels.labels, key=lambda name: (name[-4:], name)):  # valid names end in the track
            source = self.labels.labels[name].source
            try:
                row = self.label_row(parse_loop_name(name), source)
            except PopRokError as err:
                self.problems.add(source, str(err))
                continue
            if row is not None:
                yield name, row

    def label_row(self, loop: LoopName, path: str) -> Optional[dict]:
        """The label fields of a loop, checked against its name and the key map."""
        label = self.labels.labels.get(loop.name)
        if label is None:
            if loop.name not in self.labels.rejected and not self.labels.unreadable:  # else recorded already
                self.problems.add(path, f"loop {loop.name!r} has no label in the label archive")
            return None
        if label.bpm is not None and abs(label.bpm - loop.bpm) > BPM_TOLERANCE:
            self.problems.add(path, f"the file name says {loop.bpm} BPM, its label ({label.source}) says {label.bpm:g}")
            return None
        key_map = self.labels.key_map
        unknown = [n for n in label.notes if n not in key_map]
        if unknown:
            self.problems.add(label.source, f"loop {loop.name!r} plays MIDI note(s) {unknown} that the key map does not name")
            return None
        row = {
            "name": loop.name,
            "track": loop.track,
            "bpm": loop.bpm,
            "genre": loop.genre,
            "subgenre": loop.subgenre,
            "notes": list(label.notes),
            "instruments": [key_map[n] for n in label.notes],
        }
        for column in OPTIONAL_LABEL_FIELDS:
            if column in self.columns:
                row[column] = label.optional.get(column)
        if "extra_labels" in self.columns:
            row["extra_labels"] = json.dumps(label.extra, sort_keys=True) if label.extra else None
        return row


# --------------------------------------------------------------------------------------------- configs


@dataclass
class PopRokConfig(datasets.BuilderConfig):
    """``with_audio`` selects the WAV archive; ``base_url`` names a mirror of the two archive files;
    ``on_error`` says what a bad loop does to the build."""

    with_audio: bool = True
    base_url: Optional[str] = None
    on_error: str = "raise"  # or "skip": leave bad loops out, and report them
    verify: bool = False  # check downloaded archives' size and md5 against the Zenodo record
    record_url: str = ZENODO_RECORD_API

    def __post_init__(self):
        super().__post_init__()
        if self.on_error not in ON_ERROR:
            raise PopRokError(f"on_error must be one of {ON_ERROR}, got {self.on_error!r}")


# -------------------------------------------------------------------------------------------- features


def make_features(with_audio: bool, key_map: dict[int, str], optional_fields: Iterable[str] = ()) -> datasets.Features:
    """The columns, in order; optional ones only when some label carries them."""
    columns = {}
    if with_audio:
        columns["audio"] = datasets.Audio(sampling_rate=SAMPLE_RATE)
    columns.update(
        name=datasets.Value("string"),
        track=datasets.Value("int32"),
        bpm=datasets.Value("int32"),
        genre=datasets.Value("string"),
        subgenre=datasets.Value("string"),
        notes=datasets.List(datasets.Value("int32")),
        instruments=datasets.List(datasets.ClassLabel(names=list(dict.fromkeys(key_map.values())))),
    )
    if with_audio:
        columns.update(
            duration=datasets.Value("float32"),
            num_bars=datasets.Value("int32"),
            beats=datasets.List(datasets.Value("float32")),
            downbeats=datasets.List(datasets.Value("float32")),
        )
    for name in OPTIONAL_LABEL_FIELDS:
        if name in optional_fields:
            columns[name] = datasets.Value("string")
    if "extra_labels" in optional_fields:
        columns["extra_labels"] = datasets.Value("string")  # JSON of label keys not named above
    return datasets.Features(columns)


# ---------------------------------------------------------------------------------------------- builder


class PopRok(datasets.GeneratorBasedBuilder):
    """POP-ROK drum loops with their MIDI drum notes, tempo and derived beat grid."""

    VERSION = datasets.Version("1.0.0")
    BUILDER_CONFIG_CLASS = PopRokConfig
    BUILDER_CONFIGS = [
        PopRokConfig(name="default", version=VERSION, with_audio=True, description="Audio and labels, one row per loop."),
        PopRokConfig(name="labels", version=VERSION, with_audio=False, description="Labels only, from the 210 KB label archive."),
    ]
    DEFAULT_CONFIG_NAME = "default"
    _problem_dir: Optional[str] = None  # while preparing: where each generation job leaves its problems

    def __init__(self, *args, **kwargs):
        if os.environ.get(BASE_URL_ENV) and not kwargs.get("base_url"):
            kwargs["base_url"] = os.environ[BASE_URL_ENV]
        kwargs.setdefault("hash", _SCRIPT_HASH)  # a changed script never reuses a stale cache
        kwargs.setdefault("dataset_name", "pop_rok")  # the same cache whether run as a script or imported
        config_name = kwargs.get("config_name") or self.DEFAULT_CONFIG_NAME
        preset = next((c for c in self.BUILDER_CONFIGS if c.name == config_name), None)
        if kwargs.get("with_audio", preset.with_audio if preset else True):
            require_audio_stack()  # before the builder touches the cache
            # A row holds a 2.6 MB WAV: rows are written one by one (read_ahead buffers the archive): as fast as
            # batches of 4, and 40 MB less at peak.
            kwargs.setdefault("writer_batch_size", 1)
        super().__init__(*args, **kwargs)

    def download_and_prepare(self, *args, **kwargs):
        """As datasets' own, but a POP-ROK problem surfaces as itself, not as a DatasetGenerationError."""
        try:
            super().download_and_prepare(*args, **kwargs)
        except DatasetGenerationError as err:
            if isinstance(err.__cause__, PopRokError):
                raise err.__cause__ from None
            raise

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(
            description=_DESCRIPTION,
            features=make_features(self.config.with_audio, KEY_MAP),
            homepage=_HOMEPAGE,
            license=_LICENSE,
            citation=_CITATION,
        )

    # ---------------------------------------------------------------------------------------- splits

    def _split_generators(self, dl_manager):
        sources = archive_sources(self.config.data_dir, self.config.base_url)
        labels = read_labels(_archive_errors_as_problems(self._members(dl_manager, "json", *sources["json"])))
        optional = {column for label in labels.labels.values() for column in label.optional}
        if any(label.extra for label in labels.labels.values()):
            optional.add("extra_labels")
        self.info.features = make_features(self.config.with_audio, labels.key_map, optional)
        gen_kwargs = {"labels": labels}
        if self.config.with_audio:
            wav_source, extracted = sources["wav"]
            if extracted:  # one shard per file, so num_proc can split the work
                gen_kwargs["wav_files"] = sorted(_walk(wav_source, ".wav"))
                if not gen_kwargs["wav_files"]:
                    raise PopRokError(f"data_dir {wav_source!r} holds neither {ARCHIVES['wav']} nor any WAV file")
                # Every job gets a slice of the files, so labels without a WAV are found here, once.
                reader = LoopReader(labels, ())
                reader.unmatched_labels(Path(path).stem for path in gen_kwargs["wav_files"])
                labels.problems = reader.problems
            else:
                gen_kwargs["wav_archive"] = self._members(dl_manager, "wav", wav_source, extracted)
        return [datasets.SplitGenerator(name=datasets.Split.TRAIN, gen_kwargs=gen_kwargs)]

    def _members(self, dl_manager, kind: str, source: str, extracted: bool) -> Iterable[tuple[str, bytes]]:
        """(path, bytes) of the files of an archive (read end to end, checked), or below an extracted folder.

        URLs are downloaded first (resuming, into the datasets cache), except when streaming: then the
        archive is read as it arrives, never extracted nor saved.
        """
        if extracted:
            return source_members(kind, source, extracted)
        published = self._published(ARCHIVES[kind])
        downloaded = None
        if source.startswith(("http://", "https://")) and not dl_manager.is_streaming:
            downloaded = source = self._download(dl_manager, source, published.get("size"))
        return source_members(
            kind, source, extracted, dl_manager.download_config,
            expected_size=published.get("size"), expected_md5=published.get("md5"), discard_path=downloaded,
        )

    def _published(self, name: str) -> dict:
        """The record's size and md5 of an archive when verifying, else nothing to compare with."""
        if not self.config.verify:
            return {}
        try:
            published = zenodo_record_files(self.config.record_url)
        except DownloadError as err:
            raise PopRokError(f"could not fetch {self.config.record_url} to verify {name}: {err}") from err
        if name not in published:
            raise PopRokError(f"the record {self.config.record_url} publishes no file named {name}")
        return published[name]

    @staticmethod
    def _download(dl_manager, url: str, size: Optional[int]) -> str:
        """Download ``url`` into the datasets cache, resuming a broken transfer (datasets would restart it)."""
        name = Path(url.split("?")[0]).name
        folder = os.path.join(dl_manager.download_config.cache_dir, "pop_rok", hashlib.sha256(url.encode()).hexdigest()[:16])
        destination = os.path.join(folder, name)
        if dl_manager.download_config.force_download and os.path.exists(destination):
            os.remove(destination)
        try:
            return str(download(url, destination, expected_size=size))
        except DownloadError as err:
            raise PopRokError(str(err)) from err

    # ------------------------------------------------------------------------------------ generation

    def _download_and_prepare(self, dl_manager, verification_mode, **prepare_split_kwargs):
        """Prepare, then settle the problems of every generation job (num_proc may run several) at once."""
        with tempfile.TemporaryDirectory(prefix="pop_rok_problems_") as self._problem_dir:
            super()._download_and_prepare(dl_manager, verification_mode, **prepare_split_kwargs)
            entries = [
                tuple(entry) for path in sorted(Path(self._problem_dir).iterdir()) for entry in json.loads(path.read_text())
            ]
        self._problem_dir = None
        rows = sum(split.num_examples for split in self.info.splits.values())
        self._settle(Problems(list(dict.fromkeys(entries))), rows)  # label problems reach every job: once each

    def _generate_examples(self, labels: LabelSet, wav_archive=None, wav_files=None):
        reader = LoopReader(labels, self.info.features)
        if not self.config.with_audio:
            rows = reader.label_rows()
        elif wav_archive is not None:
            # Preparing, a thread reads ahead: decompressing overlaps writing the cache. Streaming reads on demand.
            rows = reader.audio_rows(read_ahead(wav_archive) if self._problem_dir else wav_archive, ARCHIVES["wav"])
        else:  # labels without a WAV were found by _split_generators
            files = _read_each(wav_files)
            rows = reader.audio_rows(read_ahead(files) if self._problem_dir else files, self.config.data_dir)
        count = 0
        for count, row in enumerate(rows, start=1):
            yield row
        if wav_archive is not None:
            reader.unmatched_labels(reader.seen)  # the whole archive was read
        if self._problem_dir:  # preparing: _download_and_prepare settles once every job is done
            Path(self._problem_dir, f"{uuid.uuid4().hex}.json").write_text(json.dumps(reader.problems.entries))
        else:  # streaming
            self._settle(reader.problems, count)

    def _settle(self, problems: Problems, rows: int) -> None:
        """Raise with every problem, or (on_error="skip") report what was left out and carry on."""
        if not problems:
            return
        if self.config.on_error == "skip" and rows == 0:
            raise PopRokError(f"on_error='skip' left out every loop: nothing remains to build.\n{problems.report()}")
        if self.config.on_error == "skip":
            report = f"Left out by on_error='skip' ({len(problems.entries)} problem(s)):\n{problems.report()}"
            print(f"POP-ROK: {report}", file=sys.stderr)
            self.info.description = f"{_DESCRIPTION}\n{report}\n"
            return
        raise PopRokError(
            f"POP-ROK input has {len(problems.entries)} problem(s):\n{problems.report()}\n"
            "What to do: re-download an archive that is damaged; pass on_error='skip' (--on-error skip) to "
            f"leave the listed loops out; report label mismatches upstream ({_HOMEPAGE})."
        )


def _walk(folder: str, suffix: str) -> Iterator[str]:
    """Files below ``folder`` ending in ``suffix``, macOS junk left out."""
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not is_junk(d)]
        for name in files:
            path = os.path.join(root, name)
            if name.lower().endswith(suffix) and not is_junk(path):
                yield path


def _read_each(paths: Iterable[str]) -> Iterator[tuple[str, bytes]]:
    for path in paths:
        try:
            yield path, Path(path).read_bytes()
        except OSError as err:
            raise PopRokError(f"cannot read {path}: {err}") from err


READ_AHEAD = 4  # members (about 10 MB of WAV) read ahead of the rows being written


def read_ahead(items: Iterable, depth: int = READ_AHEAD) -> Iterator:
    """The items of ``items``, produced by a thread at most ``depth`` ahead of the caller.

    zlib, crc32, md5 and file reads release the GIL, so the archive is read on one core while the rows
    are written on the other. What the thread raises is raised here, after the items before it.
    """
    slots: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    end = object()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                slots.put(item, timeout=0.1)
                return True
            except queue.Full:
                pass
        return False  # the caller stopped early

    def work() -> None:
        try:
            for item in items:
                if not put(item):
                    return
        except BaseException as err:  # noqa: BLE001  (re-raised in the caller's thread)
            put(err)
            return
        put(end)

    thread = threading.Thread(target=work, name="pop-rok-read-ahead", daemon=True)
    thread.start()
    try:
        while (item := slots.get()) is not end:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


def _archive_errors_as_problems(members: Iterable[tuple[str, bytes]]) -> Iterator[tuple[str, bytes]]:
    """A damaged archive is a POP-ROK problem: raise it as one."""
    try:
        yield from members
    except ArchiveError as err:
        raise PopRokError(str(err)) from err


def _float32(values):
    """Round as the float32 columns store them, so streamed rows equal prepared ones."""
    return np.asarray(values, dtype=np.float32).tolist()


def _script_hash() -> str:
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]


_SCRIPT_HASH = _script_hash()


def require_audio_stack() -> None:
    """Fail before any work when audio cannot be encoded or decoded (datasets 5 uses torchcodec + FFmpeg)."""
    try:
        from torchcodec.decoders import AudioDecoder  # noqa: F401  (loads FFmpeg's shared libraries)
    except (ImportError, OSError, RuntimeError) as err:
        raise ImportError(
            "POP-ROK's 'default' config stores and decodes audio with torchcodec, which needs torch and "
            "FFmpeg's shared libraries:\n"
            "  pip install torch==2.13.0 torchcodec==0.13.0   (see requirements.txt)\n"
            "  apt-get install ffmpeg                          (or your system's FFmpeg 4-7 package)\n"
            f"The 'labels' config needs neither. ({type(err).__name__}: {err})"
        ) from err


# ------------------------------------------------------------------------------------------- one-liner


def load_pop_rok(split=None, streaming=False, config="default", **builder_kwargs):
    """What ``load_dataset`` returned for loading scripts: prepared (or streamed) POP-ROK."""
    builder = PopRok(config_name=config, **builder_kwargs)
    if streaming:
        return builder.as_streaming_dataset(split=split)
    builder.download_and_prepare()
    return builder.as_dataset(split=split)


# ------------------------------------------------------------------------------------ export and push

CONFIG_NAMES = ("default", "labels")
CARD_TEMPLATE = Path(__file__).with_name("dataset_card.md")
CARD_METADATA = {
    "license": _LICENSE,
    "pretty_name": "POP-ROK: pop-rock drum loops with MIDI drum labels",
    "task_categories": ["audio-classification"],
    "tags": ["music", "drums", "mir", "drum-transcription", "tempo-estimation", "beat-tracking", "synthetic"],
}
AUDIO_FORMAT_NOTES = {
    "wav": "WAV, the archive's original 16-bit 44.1 kHz stereo bytes, unchanged",
    "flac": "FLAC, re-encoded losslessly from the original WAV (decodes to the same samples, bit for bit)",
}
PLACEHOLDER_REPO_ID = "<org>/pop-rok"


def _config_names(config: str) -> list[str]:
    return list(CONFIG_NAMES) if config == "all" else [config]


def export(out_dir, config: str = "all", audio_format: str = "wav", num_shards=None, repo_id=None, **builder_kwargs) -> dict:
    """Write the script-free Parquet copy of ``config`` ("all" for both) with its card and figure."""
    from parquet_copy import write_parquet_copy
    from stats_figure import plot_label_stats

    if audio_format not in AUDIO_FORMAT_NOTES:
        raise PopRokError(f"audio_format must be one of {', '.join(AUDIO_FORMAT_NOTES)}, got {audio_format!r}")
    prepared = {name: load_pop_rok(config=name, **builder_kwargs) for name in _config_names(config)}
    body = (
        CARD_TEMPLATE.read_text(encoding="utf-8")
        .replace("{{repo_id}}", repo_id or PLACEHOLDER_REPO_ID)
        .replace("{{audio_format}}", AUDIO_FORMAT_NOTES[audio_format])
    )
    summary = write_parquet_copy(
        out_dir, prepared, card_body=body, card_metadata=CARD_METADATA, audio_format=audio_format, num_shards=num_shards
    )
    labels = prepared["labels"]["train"] if "labels" in prepared else load_pop_rok(split="train", config="labels", **builder_kwargs)
    names = labels.features["instruments"].feature.names
    columns = labels.select_columns(["bpm", "instruments"]).to_dict()
    plot_label_stats(
        Path(out_dir) / "stats.png",
        bpm=columns["bpm"],
        instruments=[[names[i] for i in row] for row in columns["instruments"]],
        instrument_names=names,
        durations=[BARS_PER_LOOP * BEATS_PER_BAR * 60 / bpm for bpm in columns["bpm"]],
    )
    return summary


def push(repo_id: str, config: str = "all", audio_format: str = "wav", *, private=False, revision=None, create_pr=False, token=None, num_shards=None, **builder_kwargs):
    """Export into a staging folder and publish it to ``repo_id`` in one commit; returns the CommitInfo."""
    import tempfile

    from hub_publish import publish_folder

    with tempfile.TemporaryDirectory(prefix="pop_rok_push_") as staging:
        export(staging, config, audio_format, num_shards=num_shards, repo_id=repo_id, **builder_kwargs)
        return publish_folder(
            staging, repo_id, _config_names(config), private=private, revision=revision, create_pr=create_pr, token=token,
            commit_message=f"POP-ROK {config} config(s), {audio_format} audio",
        )


# ------------------------------------------------------------------------------------- synthetic sample

SAMPLE_LAYOUTS = ("per-loop", "aggregated")


@dataclass(frozen=True)
class SampleLoop:
    """What the generator rendered for one loop: enough to render it again and compare."""

    name: str
    track: int
    bpm: int
    notes: tuple[int, ...]
    seed: int


def make_sample(out_dir, loops: int = 8, seed: int = 0, layout: str = "per-loop", compresslevel: int = 6) -> list[SampleLoop]:
    """Write POP-ROK-shaped WAV and label archives into ``out_dir`` and return what they hold.

    ``per-loop``: folders, one JSON per loop, the key-map file and macOS junk, as a laptop packs them;
    ``aggregated``: WAVs and one JSON for all loops at the archive root.
    """
    import random

    from drum_synth import render_loop, wav_bytes

    if layout not in SAMPLE_LAYOUTS:
        raise PopRokError(f"unknown layout {layout!r}: choose one of {', '.join(SAMPLE_LAYOUTS)}")
    rng = random.Random(seed)
    tracks = sorted(rng.sample(range(1, 10000), loops))
    sample = []
    for track in tracks:
        bpm = rng.randint(*BPM_RANGE)
        notes = {36} | {n for n in KEY_MAP if rng.random() < 0.45}
        name = f"{bpm}bpm_pop_rok_drm_id_001_{track:04d}"
        sample.append(SampleLoop(name, track, bpm, tuple(sorted(notes)), rng.randrange(2**31)))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    per_loop = layout == "per-loop"
    wav_folder = "pop_rok_drm_id_001_wav/" if per_loop else ""
    json_folder = "pop_rok_drm_id_001_json/" if per_loop else ""
    with TarGzWriter(out / ARCHIVES["wav"], compresslevel) as tar:
        for loop in sample:
            audio, _ = render_loop(list(loop.notes), loop.bpm, bars=BARS_PER_LOOP, sample_rate=SAMPLE_RATE, seed=loop.seed)
            tar.add(f"{wav_folder}{loop.name}.wav", wav_bytes(audio, SAMPLE_RATE))
            if per_loop:
                tar.add_macos_junk(f"{wav_folder}{loop.name}.wav")
    with TarGzWriter(out / ARCHIVES["json"], compresslevel) as tar:
        labels = {loop.name: {"pitch": list(reversed(loop.notes)), "bpm": loop.bpm} for loop in sample}
        if per_loop:
            key_map = [{"note": note, "label": label} for note, label in KEY_MAP.items()]
            tar.add(f"{json_folder}pop_rok_drm_id_001_labels.json", json.dumps({KEY_MAP_FIELD: key_map}).encode())
            for name, label in labels.items():
                tar.add(f"{json_folder}json/{name}.json", json.dumps({name: label}).encode())
                tar.add_macos_junk(f"{json_folder}json/{name}.json")
        else:
            tar.add("pop_rok_drm_id_001.json", json.dumps(labels, indent=1).encode())
    return sample


# -------------------------------------------------------------------------------------------- validate


@dataclass
class ValidationReport:
    sources: dict[str, str]
    labels: int = 0
    loops: int = 0
    audio_hours: float = 0.0
    archives: dict[str, tuple[int, str]] = field(default_factory=dict)  # name -> (bytes, md5)
    problems: Problems = field(default_factory=Problems)

    def __str__(self) -> str:
        lines = ["POP-ROK validation"]
        lines += [f"  {kind} source: {where}" for kind, where in self.sources.items()]
        lines += [f"  {name}: {size:,} bytes, md5 {md5}" for name, (size, md5) in self.archives.items()]
        lines += [f"  labels found: {self.labels}", f"  loops found:  {self.loops}", f"  audio:        {self.audio_hours:.3f} hours"]
        if not self.problems:
            return "\n".join(lines + ["no problems found"])
        return "\n".join(lines + [f"{len(self.problems.entries)} problem(s):", self.problems.report()])


def validate(data_dir=None, base_url=None, online=False, record_url=ZENODO_RECORD_API) -> ValidationReport:
    """Walk both archives once, in flat memory, and report every problem the builder would meet."""
    sources = archive_sources(data_dir, base_url)
    report = ValidationReport({kind: where for kind, (where, _) in sources.items()})
    members = {}
    for kind, (where, extracted) in sources.items():
        local_archive = not extracted and not where.startswith(("http://", "https://"))
        total = os.path.getsize(where) if local_archive else None
        members[kind] = source_members(kind, where, extracted, total=total, progress=True, md5=True)
    try:
        labels = read_labels(_archive_errors_as_problems(members["json"]))
    except PopRokError as err:  # the WAV archive is still worth checking
        report.problems.add(ARCHIVES["json"], str(err))
        labels = LabelSet(unreadable=True)
    report.labels = len(labels.labels) + len(labels.rejected)
    loops = LoopReader(labels, make_features(True, labels.key_map, OPTIONAL_LABEL_FIELDS))
    try:
        for _ in loops.audio_rows(members["wav"], ARCHIVES["wav"]):
            report.loops += 1
        if not labels.unreadable:
            loops.unmatched_labels(loops.seen)
    except PopRokError as err:
        loops.problems.add(ARCHIVES["wav"], str(err))
    report.audio_hours = loops.audio_seconds / 3600
    report.problems.entries += loops.problems.entries
    report.archives = {m.name: (m.size, m.md5) for m in members.values() if isinstance(m, CheckedTarGz) and m.md5}
    if online:
        _check_against_record(report, record_url)
    return report


def _check_against_record(report: ValidationReport, record_url: str) -> None:
    try:
        published = zenodo_record_files(record_url)
    except DownloadError as err:
        report.problems.add(record_url, f"could not fetch the record's file list: {err}")
        return
    for name in ARCHIVES.values():
        if name not in published:
            report.problems.add(record_url, f"the record publishes no file named {name}")
        elif name not in report.archives:
            report.problems.add(name, "is an extracted folder: only the archives can be checked against the record")
        else:
            size, md5 = report.archives[name]
            expected = published[name]
            if (size, md5) != (expected["size"], expected["md5"]):
                report.problems.add(
                    name,
                    f"is {size:,} bytes with md5 {md5}, the record publishes {expected['size']:,} bytes with md5 "
                    f"{expected['md5']}: delete it and download it again",
                )


# ------------------------------------------------------------------------------------------ command line


def _builder_kwargs(args) -> dict:
    """The builder keywords the command line was given (unset ones keep the config's defaults)."""
    names = ("data_dir", "base_url", "cache_dir", "on_error", "verify", "record_url")
    return {name: getattr(args, name) for name in names if getattr(args, name, None)}


def summarize(dataset: datasets.Dataset) -> str:
    """Rows, hours of audio, BPM range and rows per instrument, read from the label columns only."""
    columns = dataset.select_columns([c for c in ("bpm", "duration", "instruments") if c in dataset.column_names])
    columns = columns.with_format("arrow")[:]
    lines = [f"rows: {dataset.num_rows}"]
    if "duration" in columns.column_names:
        lines.append(f"audio: {sum(columns['duration'].to_pylist()) / 3600:.3f} hours")
    bpms = columns["bpm"].to_pylist()
    if bpms:
        lines.append(f"bpm: {min(bpms)}-{max(bpms)}")
    names = dataset.features["instruments"].feature.names
    counts = {name: 0 for name in names}
    for instruments in columns["instruments"].to_pylist():
        for index in instruments:
            counts[names[index]] += 1
    lines.append("rows per instrument:")
    lines += [f"  {name:<17} {count}" for name, count in counts.items()]
    return "\n".join(lines)


def _describe_export(out_dir, summary: dict) -> str:
    lines = [f"wrote {out_dir}:"]
    for config, splits in summary.items():
        for split, files in splits.items():
            total = sum(f["bytes"] for f in files)
            lines.append(f"  {config}/{split}: {sum(f['rows'] for f in files)} rows in {len(files)} shard(s), {total / 1e6:.1f} MB")
    lines.append("  README.md (dataset card with YAML), stats.png")
    return "\n".join(lines)


def show_rows(path: str, config: str, rows: int, streaming: bool = False) -> str:
    """Rows of a Parquet copy as `load_dataset` returns them, with no project code involved in reading."""
    dataset = datasets.load_dataset(path, config, split="train", streaming=streaming)
    lines = [f"{path} [{config}]: {dataset.features}"]
    instruments = dataset.features["instruments"].feature
    for row in dataset.take(rows) if streaming else dataset.select(range(min(rows, dataset.num_rows))):
        row["instruments"] = instruments.int2str(row["instruments"])
        if "audio" in row:
            samples = row["audio"].get_all_samples()
            row["audio"] = f"{tuple(samples.data.shape)} samples at {samples.sample_rate} Hz"
        lines.append(json.dumps({k: v for k, v in row.items() if k not in ("beats", "downbeats")}, default=str))
    return "\n".join(lines)


def _add_source_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--data-dir", help="folder holding the two archives, or their extracted contents")
    source.add_argument("--base-url", help=f"URL prefix under which the two archives live (also ${BASE_URL_ENV})")
    parser.add_argument("--record-url", help=f"Zenodo record API URL for --verify/--online (default {ZENODO_RECORD_API})")


def _add_build_arguments(parser: argparse.ArgumentParser) -> None:
    _add_source_arguments(parser)
    parser.add_argument("--cache-dir", help="where datasets caches the prepared dataset")
    parser.add_argument("--on-error", choices=ON_ERROR, help="raise (default): fail listing every problem; skip: leave bad loops out")
    parser.add_argument("--verify", action="store_true", help="check downloaded archives' size and md5 against the record")


def _add_copy_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", choices=[*CONFIG_NAMES, "all"], default="all")
    parser.add_argument("--audio-format", choices=list(AUDIO_FORMAT_NOTES), default="wav")
    parser.add_argument("--num-shards", type=int, help="Parquet shards per config (default: from the data size)")
    _add_build_arguments(parser)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="pop_rok.py", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    sample = commands.add_parser("sample", help="write synthetic POP-ROK-shaped archives (tests, demos)")
    sample.add_argument("out_dir")
    sample.add_argument("--loops", type=int, default=8)
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--layout", choices=SAMPLE_LAYOUTS, default="per-loop")

    build = commands.add_parser("build", help="download (or find) the archives and prepare the dataset")
    build.add_argument("--config", choices=[c.name for c in PopRok.BUILDER_CONFIGS], default="default")
    _add_build_arguments(build)

    export_command = commands.add_parser("export", help="write the script-free Parquet copy with its dataset card")
    export_command.add_argument("out_dir")
    _add_copy_arguments(export_command)

    push_command = commands.add_parser("push", help="publish the Parquet copy and card to the Hub")
    push_command.add_argument("repo_id")
    _add_copy_arguments(push_command)
    push_command.add_argument("--private", action="store_true")
    push_command.add_argument("--revision", help="branch to push to (created if missing)")
    push_command.add_argument("--create-pr", action="store_true", help="open a pull request instead of committing")
    push_command.add_argument("--token", help="a write token (default: $HF_TOKEN or the stored login)")

    show = commands.add_parser("show", help="load a Parquet copy (folder or Hub repo) with load_dataset and print rows")
    show.add_argument("path", help="an export folder or a Hub repo id")
    show.add_argument("--config", choices=CONFIG_NAMES, default="default")
    show.add_argument("--rows", type=int, default=3)
    show.add_argument("--streaming", action="store_true")

    check = commands.add_parser("validate", help="walk both archives and report every problem (exit 0: none)")
    _add_source_arguments(check)
    check.add_argument("--online", action="store_true", help="also check the archives' size and md5 against the Zenodo record")

    args = parser.parse_args(argv)
    try:
        if args.command == "sample":
            loops = make_sample(args.out_dir, args.loops, args.seed, args.layout)
            print(f"wrote {len(loops)} loops ({args.layout} layout) to {args.out_dir}: {', '.join(ARCHIVES.values())}")
        elif args.command == "build":
            dataset = load_pop_rok(split="train", config=args.config, **_builder_kwargs(args))
            print(summarize(dataset))
        elif args.command == "export":
            summary = export(args.out_dir, args.config, args.audio_format, args.num_shards, **_builder_kwargs(args))
            print(_describe_export(args.out_dir, summary))
        elif args.command == "push":
            commit = push(
                args.repo_id, args.config, args.audio_format, private=args.private, revision=args.revision,
                create_pr=args.create_pr, token=args.token, num_shards=args.num_shards, **_builder_kwargs(args),
            )
            print(f"published: {commit.pr_url or commit.commit_url}")
            print(f"repo: {commit.repo_url}")
            print(f'load it: datasets.load_dataset("{args.repo_id}", split="train")  # or "labels"; streaming=True')
        elif args.command == "show":
            print(show_rows(args.path, args.config, args.rows, args.streaming))
        elif args.command == "validate":
            report = validate(args.data_dir, args.base_url, args.online, args.record_url or ZENODO_RECORD_API)
            print(report)
            return 0 if not report.problems else 1
    except (PopRokError, ImportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
