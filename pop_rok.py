"""POP-ROK: 5,378 stereo 16-bit 44.1 kHz WAV loops of pop-rock drumming, with their MIDI drum notes.

The dataset builder for the two Zenodo archives of record 14038284 (CC BY 4.0, WaivOps / Patchbanks),
read top to bottom: constants, file-name and label grammar, the first-contact survey, configs,
features, bar windows, the builder, the one-liner and ``validate``. What merely uses the builder lives
beside it: ``pop_rok_cli`` (``python pop_rok.py --help``), ``pop_rok_publish`` (export, push) and
``pop_rok_sample`` (synthetic archives).

    builder = PopRok(config_name="default")          # or "labels": no audio, 210 KB download
    builder.download_and_prepare(); ds = builder.as_dataset(split="train")
    stream = PopRok().as_streaming_dataset(split="train")  # never downloads the 12.6 GB archive
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import math
import os
import posixpath
import queue
import re
import statistics
import sys
import tempfile
import threading
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Optional

import datasets
import numpy as np
import soundfile as sf
from datasets.exceptions import DatasetGenerationError

from datasets.utils.file_utils import xopen

from checked_tar import ArchiveError, CheckedTarGz
from parquet_copy import datasets_bars_silenced
from resumable_download import DownloadError, download, zenodo_record_files
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

# Grouped folds, as UrbanSound8K's: loops sharing a track number (one pattern, rendered at several tempos or
# with other kits) always share a fold, so no pattern is both trained on and tested.
NUM_FOLDS = 10
SPLIT_FOLDS = {"train": tuple(range(8)), "validation": (8,), "test": (9,)}
FOLD_SPLITS = {fold: split for split, folds in SPLIT_FOLDS.items() for fold in folds}
ALL_SPLITS = "+".join(SPLIT_FOLDS)  # split arithmetic for every loop: load_pop_rok(split=ALL_SPLITS)


def track_fold(track: int) -> int:
    """The fold (0-9) of a track number: ``int(sha256(f"{track:04d}".encode()).hexdigest(), 16) % 10``.

    A hash of the four digits of the file name, not a shuffle: the same on every machine, for any subset
    of the data in any order, and anyone can recompute it from a loop's name alone.
    """
    return int(hashlib.sha256(f"{track:04d}".encode()).hexdigest(), 16) % NUM_FOLDS

# Label grammar. Nobody here has seen the real label archive: every plausible shape is read, each reading is
# counted in the first-contact report (Survey), and only what makes a row wrong is a problem.
PITCH_KEY = "pitch"
NOTE_EVENT_KEYS = ("pitch", "note")  # a note-event object's note, when `pitch` holds events
RECORD_NAME_KEYS = ("name", "file", "filename", "id")  # a record's loop, in a list-of-records document
TEMPO_KEYS = ("bpm", "tempo")
TEMPO_OBJECT_KEYS = ("bpm", "tempo", "value")
MICROSECONDS_PER_BEAT = (200_000, 2_000_000)  # a MIDI tempo (us per quarter note) of 30-300 BPM
TEMPO_TEXT = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*(?:bpm)?", re.IGNORECASE)
# Label keys that become columns (the first alias present feeds the column; any other key is kept, as JSON,
# in `extra_labels`).
OPTIONAL_LABEL_FIELDS = {"style": ("style",), "time_signature": ("time_signature", "timesig", "time_sig")}
BPM_TOLERANCE = 0.5
ON_ERROR = ("raise", "skip")

# General MIDI Level 1 percussion: names for notes a label plays that the key map does not name.
GM_PERCUSSION = {
    35: "Acoustic Bass Drum", 36: "Bass Drum 1", 37: "Side Stick", 38: "Acoustic Snare", 39: "Hand Clap",
    40: "Electric Snare", 41: "Low Floor Tom", 42: "Closed Hi-Hat", 43: "High Floor Tom", 44: "Pedal Hi-Hat",
    45: "Low Tom", 46: "Open Hi-Hat", 47: "Low-Mid Tom", 48: "Hi-Mid Tom", 49: "Crash Cymbal 1", 50: "High Tom",
    51: "Ride Cymbal 1", 52: "Chinese Cymbal", 53: "Ride Bell", 54: "Tambourine", 55: "Splash Cymbal",
    56: "Cowbell", 57: "Crash Cymbal 2", 58: "Vibraslap", 59: "Ride Cymbal 2", 60: "Hi Bongo", 61: "Low Bongo",
    62: "Mute Hi Conga", 63: "Open Hi Conga", 64: "Low Conga", 65: "High Timbale", 66: "Low Timbale",
    67: "High Agogo", 68: "Low Agogo", 69: "Cabasa", 70: "Maracas", 71: "Short Whistle", 72: "Long Whistle",
    73: "Short Guiro", 74: "Long Guiro", 75: "Claves", 76: "Hi Wood Block", 77: "Low Wood Block",
    78: "Mute Cuica", 79: "Open Cuica", 80: "Mute Triangle", 81: "Open Triangle",
}


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

    @property
    def fold(self) -> int:
        return track_fold(self.track)


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


def _split_of(name: str) -> str:
    """The split of a loop's name; a name off the grammar goes with train, whose pass reports it."""
    try:
        return FOLD_SPLITS[parse_loop_name(name).fold]
    except PopRokError:
        return "train"


@dataclass(frozen=True)
class Label:
    """One loop's label, normalised, with everything it said: two labels are equal when they say the same."""

    pitch: tuple[int, ...]  # as given: order and repeats kept
    bpm: Optional[float]  # the tempo the label states, in BPM; None where it states none we can read
    optional: dict  # style / time_signature: text (JSON for lists and objects), or None for null
    extra: dict  # every other key of the label, and any value we had to interpret, as given
    source: str = field(compare=False)  # the label file, for messages
    readings: tuple[tuple[str, str], ...] = field(default=(), compare=False)  # (what, how it was read) for the survey

    @property
    def notes(self) -> tuple[int, ...]:
        return tuple(sorted(set(self.pitch)))


def json_type(value) -> str:
    """The JSON name of a parsed value's type, for the survey."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return {str: "string", list: "list", dict: "object"}.get(type(value), type(value).__name__)


def _fields(value: dict) -> dict[str, list[str]]:
    """Lower-cased key -> the label's keys that spell it (``Pitch``, ``PITCH``), in order."""
    fields: dict[str, list[str]] = {}
    for key in value:
        fields.setdefault(str(key).lower(), []).append(key)
    return fields


def _first_key(fields: dict[str, list[str]], aliases: Iterable[str]) -> Optional[str]:
    return next((key for alias in aliases for key in fields.get(alias, [])), None)


def _midi_note(value) -> Optional[int]:
    """A MIDI note number from an int, an integral float or a digit string; None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    elif isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        value = int(value.strip())
    return value if isinstance(value, int) and 0 <= value <= 127 else None


def read_pitch(value) -> tuple[tuple[int, ...], str]:
    """The notes of a label's ``pitch`` in order, and how they were written; ValueError if they are not notes."""
    if not isinstance(value, list):
        raise ValueError(f"'pitch' must be a list of MIDI note numbers (0-127), got {value!r}")
    notes, kinds = [], set()
    for item in value:
        if isinstance(item, dict):
            key = _first_key(_fields(item), NOTE_EVENT_KEYS)
            note = _midi_note(item[key]) if key is not None and not isinstance(item[key], dict) else None
            kinds.add("note events")
        else:
            note = _midi_note(item)
            kinds.add({int: "integers", float: "integral floats", str: "digit strings"}.get(type(item), "other"))
        if note is None:
            raise ValueError(f"'pitch' must be a list of MIDI note numbers (0-127), got {item!r} in {value!r}")
        notes.append(note)
    return tuple(notes), " and ".join(sorted(kinds)) or "an empty list"


def _tempo_scalar(value) -> Optional[tuple[float, bool]]:
    """(BPM, whether it came in microseconds per quarter note) from a number or numeric text, else None."""
    if isinstance(value, str):
        match = TEMPO_TEXT.fullmatch(value.strip())
        value = float(match[1]) if match else None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        value = float(value)
    except OverflowError:
        value = math.inf
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"tempo must be a positive number, got {value!r}")
    if MICROSECONDS_PER_BEAT[0] <= value <= MICROSECONDS_PER_BEAT[1]:
        return 60_000_000 / value, True
    return value, False


def _tempo_entry(entry) -> tuple[Optional[tuple[float, bool]], str]:
    """One tempo that stands alone or in a tempo map: a number, text, ``[time, bpm]`` or an object."""
    if isinstance(entry, dict):
        key = _first_key(_fields(entry), TEMPO_OBJECT_KEYS)
        return (None if key is None else _tempo_scalar(entry[key])), "objects"
    if isinstance(entry, list) and len(entry) == 2:
        return _tempo_scalar(entry[1]), "[time, bpm] pairs"
    if isinstance(entry, str):
        return _tempo_scalar(entry), "numeric text" if re.fullmatch(r"[0-9.]+", entry.strip()) else "text with a unit"
    return _tempo_scalar(entry), "number"


def read_tempo(value) -> tuple[Optional[float], str]:
    """A label's tempo in BPM and how it was read; (None, how) when its shape says nothing we can read.

    A list is a tempo map. ValueError for a tempo that is wrong, not merely unfamiliar: one that is not
    positive, or a map whose tempi differ.
    """
    readings = [_tempo_entry(entry) for entry in value] if isinstance(value, list) and value else [_tempo_entry(value)]
    if any(reading is None for reading, _ in readings):
        return None, f"not read: {json_type(value)}"
    tempi = sorted({round(bpm, 6) for (bpm, _), _ in readings})
    if len(tempi) > 1:
        raise ValueError(f"the tempo map changes tempo ({', '.join(f'{t:g}' for t in tempi)} BPM): the loop is not on one grid")
    (bpm, microseconds), kind = readings[0]
    how = "microseconds per quarter note" if microseconds else "BPM"
    if isinstance(value, list):
        return bpm, f"tempo map of {'numbers' if kind == 'number' else kind}, {how}"
    return bpm, how if kind == "number" else f"{how}, {'an object' if kind == 'objects' else kind}"


def label_text(value) -> Optional[str]:
    """A label value for a string column: text as it is, null as null, anything else as JSON (never a repr)."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True)


def parse_label(name: str, value, source: str) -> Label:
    """Check one loop's label object (``{"pitch": [36, 38, ...], "bpm": 100, ...}``, field names in any case)."""
    where = f"{source}: label {name!r}"
    if not isinstance(value, dict):
        raise PopRokError(f"{where} is a {json_type(value)}, not an object with 'pitch'")
    fields = _fields(value)
    pitch_key = _first_key(fields, (PITCH_KEY,))
    if pitch_key is None:
        raise PopRokError(f"{where} has no 'pitch': a list of MIDI note numbers")
    try:
        pitch, pitch_shape = read_pitch(value[pitch_key])
        tempi = [(key, *read_tempo(value[key])) for key in (k for alias in TEMPO_KEYS for k in fields.get(alias, []))]
    except ValueError as err:
        raise PopRokError(f"{where}: {err}") from None
    readings = [("pitch", pitch_shape)] + [("tempo", how) for _, _, how in tempi]
    stated = [(key, bpm) for key, bpm, _ in tempi if bpm is not None]
    if any(abs(bpm - stated[0][1]) > BPM_TOLERANCE for _, bpm in stated):
        raise PopRokError(f"{where}: its tempi disagree ({', '.join(f'{k} {b:g}' for k, b in stated)})")
    optional = {}
    for column, aliases in OPTIONAL_LABEL_FIELDS.items():
        key = _first_key(fields, aliases)
        if key is not None:
            optional[column] = (key, label_text(value[key]))
    # Kept as given: every key that feeds no column, and `pitch` when its form had to be interpreted.
    feeding = {key for key, _ in optional.values()} | ({pitch_key} if pitch_shape in ("integers", "an empty list") else set())
    extra = {key: item for key, item in value.items() if key not in feeding}
    return Label(
        pitch=pitch,
        bpm=stated[0][1] if stated else None,
        optional={column: text for column, (_, text) in optional.items()},
        extra=extra,
        source=source,
        readings=tuple(readings),
    )


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


def loop_name_of(key: str) -> tuple[str, Optional[str]]:
    """The loop name a label key or record names (base name, no extension), and how it was written if not bare."""
    base = key.replace("\\", "/").rsplit("/", 1)[-1]
    stem, dot, extension = base.rpartition(".")
    if dot and extension.lower() in ("wav", "json"):
        base = stem
    if base == key:
        return key, None
    return base, "with a folder" if "/" in key.replace("\\", "/") else f"with a .{extension.lower()} suffix"


@dataclass
class Survey:
    """What the archives hold, as first met: every shape the reader had to interpret, counted.

    Nothing here is a problem. The label reader and LoopReader fill it; generation jobs merge theirs.
    """

    files: Counter = field(default_factory=Counter)  # (archive, folder, extension) -> files
    documents: Counter = field(default_factory=Counter)  # label document shape -> files
    label_keys: Counter = field(default_factory=Counter)  # (key, JSON type) -> labels
    readings: Counter = field(default_factory=Counter)  # (pitch|tempo, how it was read) -> labels
    names: Counter = field(default_factory=Counter)  # how a label named its loop, when not bare -> labels
    pitch_lengths: Counter = field(default_factory=Counter)  # len(pitch) -> labels
    repeating_pitch: int = 0  # labels whose pitch list repeats a note
    outside_key_map: Counter = field(default_factory=Counter)  # GM note the key map does not name -> labels
    tracks: Counter = field(default_factory=Counter)  # track -> loops
    durations: Counter = field(default_factory=Counter)  # exact / longer / shorter than 8 bars -> loops
    farthest: dict = field(default_factory=lambda: {"longer": 0, "shorter": 0})  # samples past / short of 8 bars

    _COUNTERS = ("files", "documents", "label_keys", "readings", "names", "pitch_lengths", "outside_key_map", "tracks", "durations")

    def add_file(self, archive: str, path: str) -> None:
        folder, _, base = path.replace("\\", "/").rpartition("/")
        extension = "macOS junk" if is_junk(path) else (Path(base).suffix.lower() or "no extension")
        self.files[(archive, folder or ".", extension)] += 1

    def add_label(self, label: Label, named: Optional[str]) -> None:
        self.readings.update(label.readings)
        if named:
            self.names[named] += 1
        self.pitch_lengths[len(label.pitch)] += 1
        self.repeating_pitch += len(set(label.pitch)) < len(label.pitch)

    def add_duration(self, frames: int, bpm: int) -> None:
        off = frames - round(BARS_PER_LOOP * BEATS_PER_BAR * 60 / bpm * SAMPLE_RATE)
        kind = "exact" if off == 0 else "longer" if off > 0 else "shorter"
        self.durations[kind] += 1
        if off:
            self.farthest[kind] = max(self.farthest[kind], abs(off))

    def merge(self, state: dict) -> None:
        """Add another job's ``state()``."""
        for name in self._COUNTERS:
            getattr(self, name).update({_key(k): v for k, v in state[name]})
        self.repeating_pitch += state["repeating_pitch"]
        for kind, samples in state["farthest"].items():
            self.farthest[kind] = max(self.farthest[kind], samples)

    def state(self) -> dict:
        """Everything, as JSON a generation job can hand over."""
        return {
            **{name: list(getattr(self, name).items()) for name in self._COUNTERS},
            "repeating_pitch": self.repeating_pitch,
            "farthest": self.farthest,
        }

    def report(self, key_map: dict[int, str]) -> dict:
        """The first-contact report, as JSON."""
        files: dict = {}
        for (archive, folder, extension), count in sorted(self.files.items()):
            files.setdefault(archive, {}).setdefault(folder, {})[extension] = count
        keys: dict = {}
        for (key, kind), count in sorted(self.label_keys.items(), key=lambda item: (str(item[0][0]), item[0][1])):
            keys.setdefault(str(key), {})[kind] = count
        readings: dict = {}
        for (what, how), count in sorted(self.readings.items()):
            readings.setdefault(what, {})[how] = count
        lengths = sorted(self.pitch_lengths.elements())
        shared = {f"{track:04d}": loops for track, loops in sorted(self.tracks.items()) if loops > 1}
        return {
            "files": files,
            "label_documents": dict(sorted(self.documents.items())),
            "label_keys": keys,
            "tempo_read_as": readings.get("tempo", {}),
            "pitch_read_as": readings.get("pitch", {}),
            "pitch_lengths": {"min": lengths[0], "median": statistics.median(lengths), "max": lengths[-1]} if lengths else None,
            "pitch_lists_repeating_a_note": self.repeating_pitch,
            "loop_names_in_labels": dict(sorted(self.names.items())),
            "notes_outside_key_map": {
                str(note): {"name": GM_PERCUSSION[note], "loops": loops} for note, loops in sorted(self.outside_key_map.items())
            },
            "key_map": {str(note): name for note, name in key_map.items()},
            "tracks_shared_by_several_loops": shared,
            "durations_vs_8_bars": {
                "exact": self.durations["exact"],
                "longer": self.durations["longer"],
                "shorter": self.durations["shorter"],
                "longest_overhang_ms": round(self.farthest["longer"] / SAMPLE_RATE * 1000, 2),
                "largest_shortfall_ms": round(self.farthest["shorter"] / SAMPLE_RATE * 1000, 2),
            },
        }

    def notes(self) -> list[str]:
        """What the reader had to interpret or should be known, one short phrase each."""
        notes = [f"{count} label document(s) {shape}" for shape, count in sorted(self.documents.items()) if shape not in ("keyed", "key map")]
        notes += [f"{count} {what} read as {how}" for (what, how), count in sorted(self.readings.items()) if how not in ("integers", "BPM")]
        notes += [f"{count} loop name(s) in labels {how}" for how, count in sorted(self.names.items())]
        cased = sorted({str(key) for key, _ in self.label_keys if str(key) != str(key).lower()})
        if cased:
            notes.append(f"label keys read case-insensitively: {', '.join(cased)}")
        for note, loops in sorted(self.outside_key_map.items()):
            notes.append(f"note {note} ({GM_PERCUSSION[note]}) outside the key map in {loops} loop(s)")
        shared = sum(1 for loops in self.tracks.values() if loops > 1)
        if shared:
            notes.append(f"{shared} track number(s) shared by several loops")
        for kind in ("longer", "shorter"):
            if self.durations[kind]:
                ms = self.farthest[kind] / SAMPLE_RATE * 1000
                notes.append(f"{self.durations[kind]} loop(s) {kind} than 8 bars (by up to {ms:.1f} ms)")
        return notes

    def text(self, key_map: dict[int, str]) -> str:
        """The report for people: what `validate` prints before any problem, and the build's description."""
        report = self.report(key_map)
        lines = ["What the archives hold:"]
        for archive, folders in report["files"].items():
            for folder, extensions in folders.items():
                counts = ", ".join(f"{count} {extension}" for extension, count in extensions.items())
                lines.append(f"  {archive}: {folder}/ {counts}")
        lines.append("  label documents: " + _counts(report["label_documents"]))
        lines.append("  label keys: " + "; ".join(f"{key} ({_counts(kinds)})" for key, kinds in report["label_keys"].items()))
        lines.append("  tempo read as: " + _counts(report["tempo_read_as"]))
        lines.append("  pitch read as: " + _counts(report["pitch_read_as"]))
        if report["pitch_lengths"]:
            lengths = report["pitch_lengths"]
            lines.append(
                f"  pitch lengths: min {lengths['min']}, median {lengths['median']:g}, max {lengths['max']}; "
                f"{report['pitch_lists_repeating_a_note']} list(s) repeat a note"
            )
        if report["loop_names_in_labels"]:
            lines.append("  loop names in labels: " + _counts(report["loop_names_in_labels"]))
        outside = report["notes_outside_key_map"]
        lines.append("  notes outside the key map: " + ("; ".join(f"{n} {v['name']} ({v['loops']} loops)" for n, v in outside.items()) or "none"))
        shared = report["tracks_shared_by_several_loops"]
        first = ", ".join(f"{track}: {loops} loops" for track, loops in list(shared.items())[:10]) + (", ..." if len(shared) > 10 else "")
        lines.append(f"  tracks shared by several loops: {len(shared)}" + (f" ({first})" if shared else ""))
        durations = report["durations_vs_8_bars"]
        if sum(durations[kind] for kind in ("exact", "longer", "shorter")):
            lines.append(
                f"  durations against 8 bars at the file name's BPM: {durations['exact']} exact to the sample, "
                f"{durations['longer']} longer (by up to {durations['longest_overhang_ms']} ms), "
                f"{durations['shorter']} shorter (by up to {durations['largest_shortfall_ms']} ms)"
            )
        return "\n".join(lines)


def _key(key):
    """A Counter key back from JSON: tuples were lists."""
    return tuple(key) if isinstance(key, list) else key


def _counts(counts: dict) -> str:
    return "; ".join(f"{count} {name}" for name, count in counts.items()) or "none"


@dataclass
class LabelSet:
    """Every label of the label archive, with the problems found reading it and the survey of its shapes."""

    labels: dict[str, Label] = field(default_factory=dict)
    key_map: dict[int, str] = field(default_factory=lambda: dict(KEY_MAP))
    rejected: set[str] = field(default_factory=set)  # loops whose label is unusable (already a problem)
    unreadable: bool = False  # the label archive itself is damaged (already a problem)
    problems: Problems = field(default_factory=Problems)
    survey: Survey = field(default_factory=Survey)
    json_files: int = 0

    @property
    def other_notes(self) -> list[int]:
        """General MIDI percussion notes the labels play that the key map does not name (read_labels counts them)."""
        return sorted(self.survey.outside_key_map)

    def instrument(self, note: int) -> Optional[str]:
        """A note's class name: the key map's, else General MIDI's; None for a note outside both."""
        return self.key_map.get(note) or GM_PERCUSSION.get(note)

    @property
    def instrument_names(self) -> list[str]:
        """The key map's names, then the GM names of the other notes found (ClassLabel names: each once)."""
        return list(dict.fromkeys([*self.key_map.values(), *(GM_PERCUSSION[n] for n in self.other_notes)]))


def read_labels(members: Iterable[tuple[str, bytes]]) -> LabelSet:
    """Collect every loop label and the key map from the JSON files of the label archive.

    Accepts one JSON per loop or one for many, under any folder. A document is an object keyed by loop
    name, a bare label named by its file, or a list of records naming their loop (``name``, ``file``,
    ``filename`` or ``id``); a document holding ``key_map_drum_note_labels`` gives the key map (and may
    hold labels beside it).
    """
    found = LabelSet()
    problems, survey = found.problems, found.survey
    key_map_source = None
    for path, data in members:
        survey.add_file(ARCHIVES["json"], path)
        if is_junk(path) or not path.lower().endswith(".json"):
            continue
        found.json_files += 1
        try:
            document = json.loads(data, object_pairs_hook=_json_object)
        except (ValueError, RecursionError) as err:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            problems.add(path, f"malformed JSON ({err})")
            continue
        if isinstance(document, dict) and KEY_MAP_FIELD in document:
            document = dict(document)
            try:
                key_map = parse_key_map(document.pop(KEY_MAP_FIELD))
            except PopRokError as err:
                problems.add(path, str(err))
            else:
                if key_map_source is not None and key_map != found.key_map:
                    problems.add(path, f"its key map differs from the one in {key_map_source}")
                found.key_map, key_map_source = key_map, key_map_source or path
            shape, entries = "key map and keyed labels" if document else "key map", list(document.items())
        elif isinstance(document, dict) and _first_key(_fields(document), (PITCH_KEY,)) is not None:
            shape, entries = "bare", [(Path(path).stem, document)]
        elif isinstance(document, dict):
            shape, entries = "keyed", list(document.items())
        elif isinstance(document, list):
            shape, entries = "records", _records(document, path, problems)
        else:
            problems.add(path, f"expected an object keyed by loop name or a list of records, got a {json_type(document)}")
            continue
        survey.documents[shape] += 1
        for key, value in entries:
            _add_label(found, key, value, path)
    for name in found.rejected:
        found.labels.pop(name, None)
    for label in found.labels.values():
        survey.outside_key_map.update(n for n in label.notes if n not in found.key_map and n in GM_PERCUSSION)
    if found.json_files == 0:
        raise PopRokError("the label archive holds no JSON file: is it pop_rok_drm_id_001_json.tar.gz? Re-download it.")
    return found


def _json_object(pairs: list) -> dict:
    """A JSON object; a key given twice with different values is an error, never a silent last-one-wins."""
    value = {}
    for key, item in pairs:
        if key in value and repr(value[key]) != repr(item):
            raise ValueError(f"key {key!r} appears twice with different values")
        value[key] = item
    return value


def _records(document: list, path: str, problems: Problems) -> list[tuple[str, dict]]:
    """A list of records, each naming its loop in a field of its own -> [(name, the rest of the record)]."""
    labels = []
    for index, record in enumerate(document):
        key = _first_key(_fields(record), RECORD_NAME_KEYS) if isinstance(record, dict) else None
        if key is None or not isinstance(record[key], str):
            problems.add(path, f"record {index} names no loop (in a 'name', 'file', 'filename' or 'id' field): {record!r:.200}")
            continue
        labels.append((record[key], {k: v for k, v in record.items() if k != key}))
    return labels


def _add_label(found: LabelSet, key: str, value, path: str) -> None:
    name, named = loop_name_of(key)
    if isinstance(value, dict):
        found.survey.label_keys.update((key, json_type(item)) for key, item in value.items())
    try:
        label = parse_label(name, value, path)
    except PopRokError as err:
        found.problems.add(path, str(err).removeprefix(f"{path}: "))  # the report names the file once
        found.rejected.add(name)
        return
    found.survey.add_label(label, named)
    previous = found.labels.get(name)
    if previous is not None and previous != label:
        found.problems.add(path, f"loop {name!r} is labelled differently in {previous.source}")
        found.rejected.add(name)
    found.labels.setdefault(name, label)


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


def beat_grid(bpm: float, num_bars: int) -> tuple[list[float], list[float]]:
    """Beats and downbeats (seconds) of ``num_bars`` bars of 4/4 that start on the downbeat.

    From the bars, not from the file's end: a file running some milliseconds past its bars (a reverb tail,
    MP3 padding) has no extra beat.
    """
    beats = [i * 60.0 / bpm for i in range(num_bars * BEATS_PER_BAR)]
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
        self.survey = Survey()  # what the WAV side holds; the labels' own survey is labels.survey
        self.seen: set[str] = set()
        self.wav_files = 0
        self.audio_seconds = 0.0

    def audio_rows(self, members: Iterable[tuple[str, bytes]], archive: str, require_wav: bool = True) -> Iterator[tuple[str, dict]]:
        """(name, row) for every good loop among the WAV archive's members (``require_wav``: at least one)."""
        for path, data in _archive_errors_as_problems(members):
            self.survey.add_file(archive, path)
            if is_junk(path) or not path.lower().endswith(".wav"):
                continue
            self.wav_files += 1
            name = Path(path).name[: -len(".wav")]
            row = self.audio_row(path, name, data)
            self.seen.add(name)
            if row is not None:
                yield name, row
        if self.wav_files == 0 and require_wav:
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
        self.survey.tracks[loop.track] += 1
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
        self.survey.add_duration(info.num_frames, loop.bpm)
        row = self.label_row(loop, path)
        if row is None:
            return None
        self.audio_seconds += info.duration
        audio_path = f"{name}.wav"
        if os.path.isfile(audio_path):
            # datasets would store this relative path instead of the bytes, breaking the dataset elsewhere.
            raise PopRokError(f"{os.path.abspath(audio_path)} exists in the working folder: run from another folder")
        num_bars = round(info.duration * loop.bpm / 60 / BEATS_PER_BAR)
        beats, downbeats = beat_grid(loop.bpm, num_bars)
        return {
            "audio": {"bytes": data, "path": audio_path},
            **row,
            "duration": _float32(info.duration),
            "num_bars": num_bars,
            "beats": _float32(beats),
            "downbeats": _float32(downbeats),
        }

    def label_rows(self, split: Optional[str] = None) -> Iterator[tuple[str, dict]]:
        """(name, row) for every good label (of ``split``), for the labels-only config, in playlist (track) order."""
        for name in sorted(self.labels.labels, key=lambda name: (name[-4:], name)):  # valid names end in the track
            source = self.labels.labels[name].source
            try:
                loop = parse_loop_name(name)
            except PopRokError as err:
                self.problems.add(source, str(err))
                continue
            if split is not None and FOLD_SPLITS[loop.fold] != split:
                continue
            self.survey.tracks[loop.track] += 1
            row = self.label_row(loop, source)
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
        instruments = [self.labels.instrument(n) for n in label.notes]
        unknown = [n for n, instrument in zip(label.notes, instruments) if instrument is None]
        if unknown:
            self.problems.add(
                label.source,
                f"loop {loop.name!r} plays MIDI note(s) {unknown} that neither the key map nor General MIDI percussion (35-81) names",
            )
            return None
        row = {
            "name": loop.name,
            "track": loop.track,
            "fold": loop.fold,
            "bpm": loop.bpm,
            "genre": loop.genre,
            "subgenre": loop.subgenre,
            "pitch": list(label.pitch),
            "notes": list(label.notes),
            "instruments": instruments,
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
    connections: int = 4  # byte ranges downloaded at once (a busy server caps each connection's speed)

    def __post_init__(self):
        super().__post_init__()
        self.check()

    def check(self) -> None:
        """Clear errors for bad keywords (datasets sets a preset's overrides after __post_init__: the builder calls this)."""
        if self.on_error not in ON_ERROR:
            raise PopRokError(f"on_error must be one of {ON_ERROR}, got {self.on_error!r}")
        if not (isinstance(self.connections, int) and self.connections >= 1):
            raise PopRokError(f"connections must be a whole number of at least 1, got {self.connections!r}")

    def create_config_id(self, config_kwargs: dict, custom_features=None) -> str:
        """How the archives are fetched is not what they hold: ``connections`` does not change the cache."""
        return super().create_config_id({k: v for k, v in config_kwargs.items() if k != "connections"}, custom_features)


# -------------------------------------------------------------------------------------------- features


def make_features(with_audio: bool, instruments: Iterable[str], optional_fields: Iterable[str] = ()) -> datasets.Features:
    """The columns, in order; optional ones only when some label carries them. ``instruments``: the class names."""
    columns = {}
    if with_audio:
        columns["audio"] = datasets.Audio(sampling_rate=SAMPLE_RATE)
    columns.update(
        name=datasets.Value("string"),
        track=datasets.Value("int32"),
        fold=datasets.Value("int32"),
        bpm=datasets.Value("int32"),
        genre=datasets.Value("string"),
        subgenre=datasets.Value("string"),
        pitch=datasets.List(datasets.Value("int32")),  # the label's list as given: order and repeats kept
        notes=datasets.List(datasets.Value("int32")),
        instruments=datasets.List(datasets.ClassLabel(names=list(dict.fromkeys(instruments)))),
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


# ---------------------------------------------------------------------------------------------- windows

WINDOW_BARS = (1, 2, 4, 8)
# Columns that describe the whole loop: each window has its own.
_LOOP_ONLY_COLUMNS = ("audio", "duration", "num_bars", "beats", "downbeats")


def bar_windows(batch: dict, bars: int = 2) -> dict:
    """Cut each loop of a batch into its consecutive ``bars``-bar windows: a batched ``map`` function.

        windows = ds.map(pop_rok.bar_windows, batched=True, fn_kwargs={"bars": 2}, remove_columns=ds.column_names)

    Window k spans samples ``round(k * bars * 4 * 60 / bpm * 44100)`` up to the next boundary: its audio is
    the loop's 16-bit stereo samples there, as WAV, bit for bit (a loop's windows concatenate to its first
    ``num_bars`` bars). Each window keeps the loop's label columns and gets ``window`` (k), ``start``
    (seconds), ``num_bars`` (``bars``), ``duration`` and its own ``beats`` and ``downbeats``, relative to its
    start. Works on prepared, Parquet and streamed POP-ROK, decoded or not. A loop shorter than its bars
    gives only its whole windows: nothing is padded.
    """
    if bars not in WINDOW_BARS:
        raise ValueError(f"bars must be one of {WINDOW_BARS}, got {bars!r}")
    kept = [column for column in batch if column not in _LOOP_ONLY_COLUMNS]
    out: dict[str, list] = {column: [] for column in ("audio", *kept, "window", "start", "num_bars", "duration", "beats", "downbeats")}
    for index in range(len(batch["name"])):
        name = batch["name"][index]
        bpm = batch["bpm"][index] if "bpm" in batch else None
        if not bpm:
            raise ValueError(f"bar_windows: row {name!r} has no 'bpm': windows are cut from the tempo")
        loop_bars = batch["num_bars"][index] if "num_bars" in batch else BARS_PER_LOOP
        if loop_bars % bars:
            raise ValueError(f"bar_windows: row {name!r} has {loop_bars} bars, which {bars}-bar windows do not divide")
        samples = _pcm16(batch["audio"][index], name)
        edges = [round(k * bars * BEATS_PER_BAR * 60 / bpm * SAMPLE_RATE) for k in range(loop_bars // bars + 1)]
        whole = [k for k in range(loop_bars // bars) if edges[k + 1] <= len(samples)]
        beats = [i * 60 / bpm for i in range(bars * BEATS_PER_BAR)]
        for k in whole:
            out["audio"].append({"bytes": _wav16(samples[edges[k] : edges[k + 1]]), "path": f"{name}_{bars}bar_{k}.wav"})
            for column in kept:
                out[column].append(batch[column][index])
            out["window"].append(k)
            out["start"].append(edges[k] / SAMPLE_RATE)
            out["num_bars"].append(bars)
            out["duration"].append((edges[k + 1] - edges[k]) / SAMPLE_RATE)
            out["beats"].append(beats)
            out["downbeats"].append(beats[::BEATS_PER_BAR])
    out["window"] = np.asarray(out["window"], dtype=np.int32)  # a new column: int32 as the others, not inferred int64
    for column in ("duration", "beats", "downbeats"):
        out[column] = _float32(out[column])
    return out


def window_features(features: datasets.Features) -> datasets.Features:
    """The features of ``bar_windows``' rows from a loop's: a stream loses them in a map (a prepared or Parquet
    dataset keeps them), so cast it back: ``stream.map(bar_windows, ...).cast(window_features(stream.features))``."""
    return datasets.Features({**features, "window": datasets.Value("int32"), "start": datasets.Value("float64")})


def _pcm16(cell, name: str) -> np.ndarray:
    """A loop's samples as int16 (frames, channels), from its stored bytes (WAV or FLAC), never re-quantised."""
    if cell is not None and not isinstance(cell, dict):  # a decoder from a decoding Audio column
        from datasets.features.audio import encode_torchcodec_audio

        cell = encode_torchcodec_audio(cell)
    if not cell or (cell.get("bytes") is None and not cell.get("path")):
        raise ValueError(f"bar_windows: row {name!r} has no audio")
    source = io.BytesIO(cell["bytes"]) if cell.get("bytes") is not None else cell["path"]
    samples, _ = sf.read(source, dtype="int16", always_2d=True)
    return samples


def _wav16(samples: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, SAMPLE_RATE, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


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
    _labels: Optional[LabelSet] = None  # read by _split_generators, for the survey
    _wav_archive = None  # the WAV archive's reader, when it is one: it says which inflater read it
    _written: dict = {}  # while preparing: split -> (rows, bytes) written by an earlier split's pass
    _file_format = "arrow"

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
        self.config.check()

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
            features=make_features(self.config.with_audio, KEY_MAP.values()),
            homepage=_HOMEPAGE,
            license=_LICENSE,
            citation=_CITATION,
        )

    # ---------------------------------------------------------------------------------------- splits

    def _split_generators(self, dl_manager):
        """train, validation and test by fold. The WAV archive is one stream: its first split's pass fills all three."""
        sources = archive_sources(self.config.data_dir, self.config.base_url)
        labels = read_labels(_archive_errors_as_problems(self._members(dl_manager, "json", *sources["json"])))
        self._labels = labels
        optional = {column for label in labels.labels.values() for column in label.optional}
        if any(label.extra for label in labels.labels.values()):
            optional.add("extra_labels")
        self.info.features = make_features(self.config.with_audio, labels.instrument_names, optional)
        gen_kwargs = {split: {"labels": labels, "split": split} for split in SPLIT_FOLDS}
        if self.config.with_audio:
            wav_source, extracted = sources["wav"]
            if extracted:  # one shard per file, so num_proc can split the work; each split reads only its files
                files = sorted(_walk(wav_source, ".wav"))
                if not files:
                    raise PopRokError(f"data_dir {wav_source!r} holds neither {ARCHIVES['wav']} nor any WAV file")
                # Every job gets a slice of the files, so labels without a WAV are found here, once.
                reader = LoopReader(labels, ())
                reader.unmatched_labels(Path(path).stem for path in files)
                labels.problems = reader.problems
                for path in files:
                    gen_kwargs[_split_of(Path(path).stem)].setdefault("wav_files", []).append(path)
                for kwargs in gen_kwargs.values():
                    kwargs.setdefault("wav_files", [])
            else:
                archive = self._wav_archive = self._members(dl_manager, "wav", wav_source, extracted)
                for kwargs in gen_kwargs.values():
                    kwargs["wav_archive"] = archive
        return [datasets.SplitGenerator(name=split, gen_kwargs=kwargs) for split, kwargs in gen_kwargs.items()]

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
        # Preparing, reading the WAV archive is the build's one long stage: a bar over its bytes.
        bar = kind == "wav" and not dl_manager.is_streaming
        return source_members(
            kind, source, extracted, dl_manager.download_config,
            expected_size=published.get("size"), expected_md5=published.get("md5"), discard_path=downloaded,
            progress=bar, total=os.path.getsize(source) if bar else None,
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

    def _download(self, dl_manager, url: str, size: Optional[int]) -> str:
        """Download ``url`` into the datasets cache, resuming a broken transfer (datasets would restart it)."""
        name = Path(url.split("?")[0]).name
        folder = os.path.join(dl_manager.download_config.cache_dir, "pop_rok", hashlib.sha256(url.encode()).hexdigest()[:16])
        destination = os.path.join(folder, name)
        if dl_manager.download_config.force_download and os.path.exists(destination):
            os.remove(destination)
        try:
            return str(download(url, destination, expected_size=size, connections=self.config.connections))
        except DownloadError as err:
            raise PopRokError(str(err)) from err

    # ------------------------------------------------------------------------------------ generation

    def _download_and_prepare(self, dl_manager, verification_mode, **prepare_split_kwargs):
        """Prepare, then settle the problems of every generation job (num_proc may run several) at once."""
        self._written = {}
        # From the WAV archive, its reading bar is the progress: datasets' per-split bars would only add three
        # more; from extracted files, datasets' bars count the rows of each split.
        extracted = archive_sources(self.config.data_dir, self.config.base_url)["wav"][1]
        quiet = datasets_bars_silenced() if not (self.config.with_audio and extracted) else contextlib.nullcontext()
        with tempfile.TemporaryDirectory(prefix="pop_rok_problems_") as self._problem_dir, quiet:
            super()._download_and_prepare(dl_manager, verification_mode, **prepare_split_kwargs)
            jobs = [json.loads(path.read_text()) for path in sorted(Path(self._problem_dir).iterdir())]
        self._problem_dir = None
        if isinstance(self._wav_archive, CheckedTarGz) and self._wav_archive.inflater:
            print(f"POP-ROK inflated {self._wav_archive.name} with {self._wav_archive.inflater}", file=sys.stderr)
        survey = self._labels.survey
        for job in jobs:
            survey.merge(job["survey"])
        self._describe(survey)
        rows = sum(split.num_examples for split in self.info.splits.values())
        entries = [tuple(entry) for job in jobs for entry in job["problems"]]
        self._settle(Problems(list(dict.fromkeys(entries))), rows)  # label problems reach every job: once each

    def _prepare_split(self, split_generator, file_format="arrow", num_proc=None, max_shard_size=None):
        """As datasets' own, except for a split that an earlier split's pass over the WAV archive has written."""
        written = self._written.pop(split_generator.name, None)
        if written is None:
            self._file_format = file_format
            return super()._prepare_split(split_generator, file_format=file_format, num_proc=num_proc, max_shard_size=max_shard_size)
        split_generator.split_info.num_examples, split_generator.split_info.num_bytes = written

    def _generate_examples(self, labels: LabelSet, split: str, wav_archive=None, wav_files=None):
        reader = LoopReader(labels, self.info.features)
        preparing = self._problem_dir is not None
        if not self.config.with_audio:
            rows = reader.label_rows(split)
        elif wav_archive is not None:
            # Preparing, a thread reads ahead: decompressing overlaps writing the cache. Streaming reads on demand.
            rows = reader.audio_rows(read_ahead(wav_archive) if preparing else wav_archive, ARCHIVES["wav"])
        else:  # labels without a WAV were found by _split_generators
            files = _read_each(wav_files)
            rows = reader.audio_rows(read_ahead(files) if preparing else files, self.config.data_dir, require_wav=False)
        # Preparing from the archive, one pass writes every split: this split's rows through datasets, the others'
        # beside it. Streaming a split reads the whole archive and yields that split's rows.
        one_pass = wav_archive is not None and preparing
        count = 0
        with self._other_split_writers(split) if one_pass else contextlib.nullcontext({}) as others:
            for count, (name, row) in enumerate(rows, start=1):
                target = FOLD_SPLITS[row["fold"]]
                if target == split:
                    yield name, row
                elif target in others:
                    others[target].write(self.info.features.encode_example(row))
        if wav_archive is not None:
            reader.unmatched_labels(reader.seen)  # the whole archive was read
        if preparing:  # _download_and_prepare settles once every job is done
            job = {"problems": reader.problems.entries, "survey": reader.survey.state()}
            Path(self._problem_dir, f"{uuid.uuid4().hex}.json").write_text(json.dumps(job))
        else:  # streaming
            self._settle(reader.problems, count)

    @contextlib.contextmanager
    def _other_split_writers(self, split: str):
        """Arrow writers for the splits other than ``split``, at the paths datasets reads them from (one shard each)."""
        from datasets.arrow_writer import ArrowWriter

        if self._file_format != "arrow":
            raise PopRokError(f"POP-ROK is prepared as Arrow (one pass over the WAV archive), not {self._file_format}")
        writers = {
            other: ArrowWriter(
                features=self.info.features,
                path=posixpath.join(self._output_dir, f"{self.dataset_name}-{other}.arrow"),
                writer_batch_size=self._writer_batch_size,
            )
            for other in SPLIT_FOLDS
            if other != split
        }
        try:
            yield writers
        finally:
            for other, writer in writers.items():
                self._written[other] = writer.finalize()
                writer.close()

    def _describe(self, survey: Survey) -> None:
        """The first-contact report goes into the dataset's description; its notes, in one line, to stderr."""
        notes = survey.notes()
        print(f"POP-ROK first contact: {'; '.join(notes) if notes else 'the archives hold what the reader expects'}", file=sys.stderr)
        self.info.description = f"{_DESCRIPTION}\n{survey.text(self._labels.key_map)}\n"

    def _settle(self, problems: Problems, rows: int) -> None:
        """Raise with every problem, or (on_error="skip") report what was left out and carry on."""
        if not problems:
            return
        if self.config.on_error == "skip" and rows == 0:
            raise PopRokError(f"on_error='skip' left out every loop: nothing remains to build.\n{problems.report()}")
        if self.config.on_error == "skip":
            report = f"Left out by on_error='skip' ({len(problems.entries)} problem(s)):\n{problems.report()}"
            print(f"POP-ROK: {report}", file=sys.stderr)
            self.info.description += f"\n{report}\n"
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
    """What ``load_dataset`` returned for loading scripts: prepared (or streamed) POP-ROK.

    ``split`` takes datasets' split arithmetic (``"train+validation"``, ``ALL_SPLITS``); streamed, each
    named split is one pass over the archive, chained.
    """
    builder = PopRok(config_name=config, **builder_kwargs)
    if not streaming:
        builder.download_and_prepare()
        return builder.as_dataset(split=split)
    if split is None or "+" not in str(split):
        return builder.as_streaming_dataset(split=split)
    return datasets.concatenate_datasets([builder.as_streaming_dataset(split=part.strip()) for part in str(split).split("+")])


# -------------------------------------------------------------------------------------------- validate


@dataclass
class ValidationReport:
    sources: dict[str, str]
    labels: int = 0
    loops: int = 0
    audio_hours: float = 0.0
    archives: dict[str, tuple[int, str]] = field(default_factory=dict)  # name -> (bytes, md5)
    problems: Problems = field(default_factory=Problems)
    survey: Survey = field(default_factory=Survey)  # the first-contact report: notes, never problems
    key_map: dict[int, str] = field(default_factory=lambda: dict(KEY_MAP))

    def to_json(self) -> dict:
        """The same report as one JSON object (``validate --json``)."""
        return {
            "sources": self.sources,
            "archives": {name: {"bytes": size, "md5": md5} for name, (size, md5) in self.archives.items()},
            "labels_found": self.labels,
            "loops_found": self.loops,
            "audio_hours": round(self.audio_hours, 6),
            "first_contact": {**self.survey.report(self.key_map), "notes": self.survey.notes()},
            "problems": [{"file": file, "message": message} for file, message in self.problems.entries],
        }

    def __str__(self) -> str:
        lines = ["POP-ROK validation"]
        lines += [f"  {kind} source: {where}" for kind, where in self.sources.items()]
        lines += [f"  {name}: {size:,} bytes, md5 {md5}" for name, (size, md5) in self.archives.items()]
        lines += [f"  labels found: {self.labels}", f"  loops found:  {self.loops}", f"  audio:        {self.audio_hours:.3f} hours"]
        lines.append(self.survey.text(self.key_map))
        notes = self.survey.notes()
        lines.append(f"{len(notes)} note(s) on what the reader interpreted:" if notes else "nothing had to be interpreted")
        lines += [f"  * {note}" for note in notes]
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
    loops = LoopReader(labels, make_features(True, labels.instrument_names, OPTIONAL_LABEL_FIELDS))
    try:
        for _ in loops.audio_rows(members["wav"], ARCHIVES["wav"]):
            report.loops += 1
        if not labels.unreadable:
            loops.unmatched_labels(loops.seen)
    except PopRokError as err:
        loops.problems.add(ARCHIVES["wav"], str(err))
    report.audio_hours = loops.audio_seconds / 3600
    report.problems.entries += loops.problems.entries
    report.survey, report.key_map = labels.survey, labels.key_map
    report.survey.merge(loops.survey.state())
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


if __name__ == "__main__":  # the command line lives in pop_rok_cli.py: it merely uses the builder
    from pop_rok_cli import main

    sys.exit(main())
