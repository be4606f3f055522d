"""From archive members to rows: where the archives are, their members, and ``LoopReader``, which turns
label and WAV files into rows and records every problem (the builder and ``validate`` share it).
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from datasets.utils.file_utils import xopen
from threadpoolctl import threadpool_limits

from poprok.analysis import ListenError, Listening, listen
from poprok.archives.checked_tar import ArchiveError, CheckedTarGz
from poprok.archives.wav import WavError, WavInfo, read_wav_info
from poprok.captions import caption
from poprok.errors import PopRokError, Problems
from poprok.grid import bars_in, beat_grid
from poprok.labels.label_set import LabelSet
from poprok.labels.names import LoopName, is_junk, parse_loop_name
from poprok.labels.shapes import BPM_TOLERANCE, OPTIONAL_LABEL_FIELDS
from poprok.labels.survey import Survey
from poprok.parallel import ordered_map
from poprok.record import ARCHIVES, BITS_PER_SAMPLE, CHANNELS, SAMPLE_RATE, ZENODO_FILES_URL
from poprok.splits import FOLD_SPLITS


def archive_sources(data_dir: str | None, base_url: str | None) -> dict[str, tuple[str, bool]]:
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


def source_members(
    kind: str, where: str, extracted: bool, download_config=None, **checks
) -> Iterable[tuple[str, bytes]]:
    """(path, bytes) of the ``kind`` files below an extracted folder, or of an archive read end to end and
    checked (``checks``: CheckedTarGz's keywords); a URL is read as it arrives, through datasets' xopen."""
    if extracted:
        return read_files(sorted(walk_files(where, f".{kind}")))
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

    def audio_rows(
        self, members: Iterable[tuple[str, bytes]], archive: str, require_wav: bool = True
    ) -> Iterator[tuple[str, dict]]:
        """(name, row) for every good loop among the WAV archive's members (``require_wav``: at least one).

        Loops are listened to by ``LISTENERS`` threads, a few members ahead (the analysis releases the GIL); while
        they run, BLAS keeps to one thread: its own threads on top of the listeners' made listening slower.
        """
        with threadpool_limits(1, "blas"):
            yield from self._audio_rows(members, archive, require_wav)

    def _audio_rows(self, members, archive: str, require_wav: bool) -> Iterator[tuple[str, dict]]:
        for (path, data), heard in ordered_map(listen_to_member, archive_errors_as_problems(members), LISTENERS):
            self.survey.add_file(archive, path)
            if is_junk(path) or not path.lower().endswith(".wav"):
                continue
            self.wav_files += 1
            name = Path(path).name[: -len(".wav")]
            row = self.audio_row(path, name, data, heard)
            self.seen.add(name)
            if row is not None:
                yield name, row
        if self.wav_files == 0 and require_wav:
            raise PopRokError(f"{archive} holds no WAV file: is it pop_rok_drm_id_001_wav.tar.gz? Re-download it.")

    def unmatched_labels(self, wav_names: Iterable[str]) -> None:
        """Once every WAV name is known: each label must have had its WAV."""
        for name in sorted(set(self.labels.labels) - set(wav_names)):
            self.problems.add(self.labels.labels[name].source, f"label {name!r} has no WAV in the audio archive")

    def audio_row(
        self, path: str, name: str, data: bytes, heard: Listening | ListenError | None = None
    ) -> dict | None:
        """One example, or None after recording why the loop cannot be one (``heard``: ``listen_to_member``'s)."""
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
        if wav_format(info) != LOOP_FORMAT:
            self.problems.add(
                path,
                "is {} Hz / {}-bit / {} channel(s); POP-ROK loops are {} Hz / {}-bit / {}".format(
                    *wav_format(info), *LOOP_FORMAT
                ),
            )
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
        num_bars = bars_in(info.num_frames, loop.bpm, SAMPLE_RATE)
        listening = heard or listen_to_member((path, data))
        if isinstance(listening, ListenError):  # too short to hold a bar at its tempo
            self.problems.add(path, f"loop {name!r} cannot be listened to: {listening}")
            return None
        self.survey.add_listening(name, listening)
        beats, downbeats = beat_grid(loop.bpm, num_bars)
        return {
            "audio": {"bytes": data, "path": audio_path},
            **row,
            "duration": float32(info.duration),
            "num_bars": num_bars,
            "beats": np.asarray(beats, np.float32),  # arrays: the Arrow writer takes them whole, lists item by item
            "downbeats": np.asarray(downbeats, np.float32),
            "caption": caption(loop.bpm, num_bars, row["instruments"], loop.genre, loop.subgenre),
            **listening.columns(),
        }

    def label_rows(self, split: str | None = None) -> Iterator[tuple[str, dict]]:
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

    def label_row(self, loop: LoopName, path: str) -> dict | None:
        """The label fields of a loop, checked against its name and the key map."""
        label = self.labels.labels.get(loop.name)
        if label is None:
            if loop.name not in self.labels.rejected and not self.labels.unreadable:  # else recorded already
                self.problems.add(path, f"loop {loop.name!r} has no label in the label archive")
            return None
        if label.bpm is not None and abs(label.bpm - loop.bpm) > BPM_TOLERANCE:
            self.problems.add(
                path, f"the file name says {loop.bpm} BPM, its label ({label.source}) says {label.bpm:g}"
            )
            return None
        instruments = [self.labels.instrument(n) for n in label.notes]
        unknown = [n for n, instrument in zip(label.notes, instruments) if instrument is None]
        if unknown:
            self.problems.add(
                label.source,
                f"loop {loop.name!r} plays MIDI note(s) {unknown} that neither the key map nor General MIDI "
                "percussion (35-81) names",
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


LOOP_FORMAT = (SAMPLE_RATE, BITS_PER_SAMPLE, CHANNELS)  # what every POP-ROK WAV is


def wav_format(info: WavInfo) -> tuple[int, int, int]:
    """A WAV's (sample rate, bits per sample, channels), as ``LOOP_FORMAT`` orders them."""
    return info.sample_rate, info.bits_per_sample, info.channels


LISTENERS = 2  # threads listening to loops: the cores, while another thread inflates the archive


def listen_to_member(member: tuple[str, bytes]) -> Listening | ListenError | None:
    """What listening to an archive member found, or None when it is no 16-bit stereo 44.1 kHz loop WAV
    (``LoopReader.audio_row`` says why); a loop too short to listen to gives its ListenError."""
    path, data = member
    try:
        loop = parse_loop_name(Path(path).name.removesuffix(".wav"))
        info = read_wav_info(data)
    except (PopRokError, WavError):
        return None
    if is_junk(path) or wav_format(info) != LOOP_FORMAT:
        return None
    try:
        return listen(
            info.samples(data), loop.bpm, max(bars_in(info.num_frames, loop.bpm, SAMPLE_RATE), 1), SAMPLE_RATE
        )
    except ListenError as err:
        return err


def walk_files(folder: str, suffix: str) -> Iterator[str]:
    """Files below ``folder`` ending in ``suffix``, macOS junk left out."""
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not is_junk(d)]
        for name in files:
            path = os.path.join(root, name)
            if name.lower().endswith(suffix) and not is_junk(path):
                yield path


def read_files(paths: Iterable[str]) -> Iterator[tuple[str, bytes]]:
    for path in paths:
        try:
            yield path, Path(path).read_bytes()
        except OSError as err:
            raise PopRokError(f"cannot read {path}: {err}") from err


def archive_errors_as_problems(members: Iterable[tuple[str, bytes]]) -> Iterator[tuple[str, bytes]]:
    """A damaged archive is a POP-ROK problem: raise it as one."""
    try:
        yield from members
    except ArchiveError as err:
        raise PopRokError(str(err)) from err


def float32(values):
    """Round as the float32 columns store them, so streamed rows equal prepared ones."""
    return np.asarray(values, dtype=np.float32).tolist()
