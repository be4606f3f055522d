"""Build damaged POP-ROK archive pairs from a good sample, for the reliability tests.

A ``Sample`` holds the members of a generated sample in memory (macOS junk dropped); each test copies
its lists, breaks what it needs and writes the pair with ``write_pair``. Also: byte-level damage to a
written archive (``truncate``, ``flip_byte``), WAVs in the wrong format (``wav_with_format``), and a
loopback Zenodo record (``record_json``) to serve next to the archives.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

import pop_rok
from poprok.archives.tar_writer import MTIME, TarGzWriter
from poprok.labels.names import is_junk
from poprok.sample import archives as sample_archives

WAV = pop_rok.ARCHIVES["wav"]
JSON = pop_rok.ARCHIVES["json"]
WAV_FOLDER = "pop_rok_drm_id_001_wav/"
JSON_FOLDER = "pop_rok_drm_id_001_json/json/"
KEY_MAP_MEMBER = "pop_rok_drm_id_001_json/pop_rok_drm_id_001_labels.json"


def read_members(path) -> list[tuple[str, bytes]]:
    """(name, bytes) of every regular file of a .tar.gz, in archive order."""
    with tarfile.open(path) as tar:
        return [(info.name, tar.extractfile(info).read()) for info in tar if info.isreg()]


def write_archive(path, members, compresslevel: int = 1, folders=()) -> Path:
    """A .tar.gz of ``members`` ((name, bytes) pairs), plus empty ``folders`` declared as entries."""
    path = Path(path)
    with TarGzWriter(path, compresslevel) as tar:
        for name, data in members:
            tar.add(name, data)
        for folder in folders:  # empty folders: a directory entry and nothing under it
            info = tarfile.TarInfo(folder.rstrip("/"))
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, MTIME
            tar._tar.addfile(info)
    return path


def write_pair(folder, wav_members, json_members, compresslevel: int = 1) -> Path:
    """Both archives of a (possibly broken) sample in ``folder``: a data_dir for the builder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_archive(folder / WAV, wav_members, compresslevel)
    write_archive(folder / JSON, json_members, compresslevel)
    return folder


@dataclass
class Sample:
    """A good sample's loops and archive members, in memory, junk left out."""

    manifest: list[sample_archives.SampleLoop]
    wav: list[tuple[str, bytes]]  # (member name, WAV bytes), one per loop, in manifest order
    labels: list[tuple[str, bytes]]  # the key-map file, then one JSON per loop
    by_name: dict[str, sample_archives.SampleLoop] = field(init=False)

    def __post_init__(self):
        self.by_name = {loop.name: loop for loop in self.manifest}

    @classmethod
    def generate(cls, folder, loops: int = 4, seed: int = 11) -> Sample:
        manifest = sample_archives.make_sample(folder, loops=loops, seed=seed, layout="per-loop", compresslevel=1)
        wav = [m for m in read_members(Path(folder) / WAV) if not is_junk(m[0])]
        labels = [m for m in read_members(Path(folder) / JSON) if not is_junk(m[0])]
        assert [Path(name).stem for name, _ in wav] == [loop.name for loop in manifest]
        return cls(manifest, wav, labels)

    @property
    def names(self) -> list[str]:
        return [loop.name for loop in self.manifest]

    def wav_member(self, name: str) -> str:
        return f"{WAV_FOLDER}{name}.wav"

    def label_member(self, name: str) -> str:
        return f"{JSON_FOLDER}{name}.json"

    def wav_bytes(self, name: str) -> bytes:
        return dict(self.wav)[self.wav_member(name)]

    def label_of(self, name: str) -> dict:
        return json.loads(dict(self.labels)[self.label_member(name)])[name]

    def write(self, folder, wav=None, labels=None) -> Path:
        """The pair with ``wav``/``labels`` member lists in place of the good ones."""
        return write_pair(folder, self.wav if wav is None else wav, self.labels if labels is None else labels)

    def without_wav(self, name: str) -> list[tuple[str, bytes]]:
        return [m for m in self.wav if m[0] != self.wav_member(name)]

    def without_label(self, name: str) -> list[tuple[str, bytes]]:
        return [m for m in self.labels if m[0] != self.label_member(name)]

    def replace_wav(self, name: str, data: bytes, member: str | None = None) -> list[tuple[str, bytes]]:
        """The WAV members with ``name``'s bytes (and optionally its member name) replaced."""
        old = self.wav_member(name)
        return [(member or old, data) if m == old else (m, d) for m, d in self.wav]

    def replace_label(self, name: str, document) -> list[tuple[str, bytes]]:
        """The label members with ``name``'s JSON file holding ``document`` (bytes are used as they are)."""
        data = document if isinstance(document, bytes) else json.dumps(document).encode()
        old = self.label_member(name)
        return [(m, data) if m == old else (m, d) for m, d in self.labels]


# ---------------------------------------------------------------------------------------- damage to bytes


def truncate(path, keep: float) -> Path:
    """Cut the file to ``keep`` (a fraction) of its bytes."""
    path = Path(path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def flip_byte(path, offset: int) -> Path:
    path = Path(path)
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
    return path


def wav_with_format(seconds: float, rate: int, channels: int, subtype: str) -> bytes:
    """A WAV written by libsndfile (soundfile) in a format POP-ROK does not use."""
    t = np.arange(int(seconds * rate)) / rate
    tone = 0.3 * np.sin(2 * np.pi * 220 * t)
    samples = tone if channels == 1 else np.stack([tone] * channels, axis=1)
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format="WAV", subtype=subtype)
    return buffer.getvalue()


# ----------------------------------------------------------------------------------------- Zenodo record


def md5_of(path) -> str:
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


def record_json(folder, base_url: str, overrides: dict | None = None) -> bytes:
    """A Zenodo record API document for the two archives in ``folder``, as zenodo_record_files reads it.

    ``overrides`` maps an archive name to fields to replace (``size``, ``checksum``).
    """
    files = []
    for name in (WAV, JSON):
        entry = {
            "key": name,
            "size": os.path.getsize(Path(folder) / name),
            "checksum": f"md5:{md5_of(Path(folder) / name)}",
            "links": {"self": f"{base_url}/{name}"},
        }
        entry.update((overrides or {}).get(name, {}))
        files.append(entry)
    return json.dumps({"id": 14038284, "files": files}).encode()
