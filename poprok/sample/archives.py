"""Synthetic POP-ROK-shaped archives for demos and benchmarks (``pop-rok sample``).

Real file names, layouts and label shapes, with drums rendered by ``drum_synth`` on the tempo grid, so
every field a build produces can be checked against what was rendered.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from poprok.archives.tar_writer import TarGzWriter
from poprok.archives.wav import wav_bytes
from poprok.errors import PopRokError
from poprok.record import ARCHIVES, BARS_PER_LOOP, BPM_RANGE, KEY_MAP, KEY_MAP_FIELD, SAMPLE_RATE
from poprok.sample.drum_synth import render_loop

SAMPLE_LAYOUTS = ("per-loop", "aggregated")
SAMPLE_LABELS = ("plain", "varied")


@dataclass(frozen=True)
class SampleLoop:
    """What the generator rendered for one loop: enough to render it again and compare."""

    name: str
    track: int
    bpm: int
    notes: tuple[int, ...]
    seed: int


def _sample_tracks(rng, loops: int) -> list[int]:
    """Random track numbers, drawn without regard to folds: a small sample may leave a split empty, as subsets do."""
    return sorted(rng.sample(range(1, 10000), loops))


# The shapes a "varied" sample writes its labels in, loop by loop: each one a reading the reader must make.
_VARIED_LABELS = (
    lambda loop: {"pitch": list(reversed(loop.notes)), "tempo": round(60_000_000 / loop.bpm)},  # microseconds per beat
    lambda loop: {"Pitch": [float(n) for n in loop.notes], "BPM": f"{loop.bpm} BPM"},
    lambda loop: {"pitch": [{"note": n, "velocity": 100} for n in loop.notes], "tempo": [[0.0, loop.bpm]]},
    lambda loop: {
        "pitch": [str(n) for n in loop.notes],
        "tempo": {"bpm": loop.bpm},
        "time_signature": "4/4",
        "timesig": [4, 4],
    },
    lambda loop: {"pitch": [*loop.notes, *loop.notes], "tempo": [float(loop.bpm)], "style": None},
)


def make_sample(
    out_dir, loops: int = 8, seed: int = 0, layout: str = "per-loop", compresslevel: int = 6, labels: str = "plain"
) -> list[SampleLoop]:
    """Write POP-ROK-shaped WAV and label archives into ``out_dir`` and return what they hold.

    ``per-loop``: folders, one JSON per loop, the key-map file and macOS junk, as a laptop packs them;
    ``aggregated``: WAVs and one JSON for all loops at the archive root. ``labels="varied"`` writes each
    label in another shape (microseconds per beat, tempo maps, note events, ``"120 BPM"``, records, bare
    labels), as the real archive might: ``validate`` then reports what it had to interpret.
    """
    if layout not in SAMPLE_LAYOUTS:
        raise PopRokError(f"unknown layout {layout!r}: choose one of {', '.join(SAMPLE_LAYOUTS)}")
    if labels not in SAMPLE_LABELS:
        raise PopRokError(f"unknown labels {labels!r}: choose one of {', '.join(SAMPLE_LABELS)}")
    rng = random.Random(seed)
    sample = []
    for track in _sample_tracks(rng, loops):
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
            audio, _ = render_loop(
                list(loop.notes), loop.bpm, bars=BARS_PER_LOOP, sample_rate=SAMPLE_RATE, seed=loop.seed
            )
            tar.add(f"{wav_folder}{loop.name}.wav", wav_bytes(audio, SAMPLE_RATE))
            if per_loop:
                tar.add_macos_junk(f"{wav_folder}{loop.name}.wav")
    with TarGzWriter(out / ARCHIVES["json"], compresslevel) as tar:
        for path, document in _sample_label_documents(sample, per_loop, labels):
            tar.add(f"{json_folder}{path}", json.dumps(document, indent=None if per_loop else 1).encode())
            if per_loop and path.startswith("json/"):
                tar.add_macos_junk(f"{json_folder}{path}")
    return sample


def _sample_label_documents(sample: list[SampleLoop], per_loop: bool, labels: str) -> Iterator[tuple[str, object]]:
    """(path, JSON document) of the label archive: keyed documents, and with "varied" labels bare ones and records."""
    if labels == "plain":
        values = {loop.name: {"pitch": list(reversed(loop.notes)), "bpm": loop.bpm} for loop in sample}
    else:
        values = {loop.name: _VARIED_LABELS[i % len(_VARIED_LABELS)](loop) for i, loop in enumerate(sample)}
    if per_loop:
        key_map = [{"note": note, "label": label} for note, label in KEY_MAP.items()]
        yield "pop_rok_drm_id_001_labels.json", {KEY_MAP_FIELD: key_map}
    if labels == "varied":  # every third loop as a record of a list, every third one after it bare
        records = [{"file": f"{name}.wav", **value} for i, (name, value) in enumerate(values.items()) if i % 3 == 2]
        yield "json/records.json", records
        bare = {name: value for i, (name, value) in enumerate(values.items()) if i % 3 == 1}
        for name, value in bare.items():
            yield f"json/{name}.json", value
        values = {name: value for i, (name, value) in enumerate(values.items()) if i % 3 == 0}
    if per_loop:
        for name, value in values.items():
            yield f"json/{name}.json", {name: value}
    else:
        yield "pop_rok_drm_id_001.json", values
