"""Label shapes the real archive may hold, written here by hand as raw JSON bytes (never through make_sample).

Each case builds the default config from archives holding one shape, strictly, and asserts the exact
row fields; the problem cases fail naming the file and the loop. WAVs of 8 bars, a sample short, and
50 and 80 ms long pin the beat grid; ``validate --json`` is parsed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pytest

import pop_rok
from poprok.archives.tar_writer import TarGzWriter
from poprok.archives.wav import wav_bytes
from poprok.labels.names import parse_loop_name
from poprok.labels.shapes import read_tempo
from poprok.validation import validate

ROOT = Path(pop_rok.__file__).resolve().parent
A = "120bpm_pop_rok_drm_id_001_0001"
B = "100bpm_pop_rok_drm_id_001_0002"
KEY_MAP_NAMES = list(pop_rok.KEY_MAP.values())
KEY_MAP_JSON = json.dumps(
    {"key_map_drum_note_labels": [{"note": n, "label": name} for n, name in pop_rok.KEY_MAP.items()]}
)


def loop_wav(name: str, extra_frames: int = 0, bars: int = 1) -> bytes:
    """``bars`` bars of quiet noise at the name's tempo, ``extra_frames`` longer (or shorter)."""
    bpm = parse_loop_name(name).bpm
    frames = round(bars * 4 * 60 / bpm * 44100) + extra_frames
    rng = np.random.default_rng(len(name) + extra_frames)
    return wav_bytes(rng.integers(-200, 200, size=(frames, 2), dtype=np.int16), 44100)


def write_archives(folder: Path, labels: list[tuple[str, str]], wavs: dict[str, bytes] | None = None) -> Path:
    """The two archives: WAVs (default: one bar of each of A and B) and the label members as given (raw text)."""
    folder.mkdir(parents=True, exist_ok=True)
    wavs = wavs if wavs is not None else {A: loop_wav(A), B: loop_wav(B)}
    with TarGzWriter(folder / pop_rok.ARCHIVES["wav"]) as tar:
        for name, data in wavs.items():
            tar.add(f"pop_rok_drm_id_001_wav/{name}.wav", data)
    with TarGzWriter(folder / pop_rok.ARCHIVES["json"]) as tar:
        for path, text in labels:
            tar.add(path, text.encode())
    return folder


def build_rows(folder: Path, cache: Path) -> tuple[dict[str, dict], datasets.Dataset]:
    dataset = pop_rok.load_pop_rok(split=pop_rok.ALL_SPLITS, data_dir=str(folder), cache_dir=str(cache))
    rows = dataset.cast_column("audio", datasets.Audio(decode=False))
    return {row["name"]: row for row in rows}, dataset


def names_of(dataset, row) -> list[str]:
    return [dataset.features["instruments"].feature.names[i] for i in row["instruments"]]


# Each case: the label archive's members (raw JSON text), and the fields expected of loop A
# (B is always {"pitch": [36], "bpm": 100} in a file of its own, so every build has two loops).
B_LABEL = ("json/b.json", f'{{"{B}": {{"pitch": [36], "bpm": 100}}}}')
SHAPES = {
    "keyed": (
        [("json/all.json", f'{{"{A}": {{"pitch": [38, 36, 38], "bpm": 120}}}}')],
        {"pitch": [38, 36, 38], "notes": [36, 38], "instruments": ["Kick", "Snare"], "extra": {"bpm": 120}},
    ),
    "bare-label-named-by-its-file": (
        [(f"labels/{A}.json", '{"pitch": [42, 36], "tempo": 120}')],
        {"pitch": [42, 36], "notes": [36, 42], "instruments": ["Kick", "Closed Hat"], "extra": {"tempo": 120}},
    ),
    "records-name-with-wav-suffix": (
        [("records.json", f'[{{"name": "{A}.wav", "pitch": [36], "bpm": 120}}]')],
        {"pitch": [36], "notes": [36], "instruments": ["Kick"], "extra": {"bpm": 120}},
    ),
    "records-file-with-folder": (
        [("records.json", f'[{{"file": "audio/wav/{A}.wav", "pitch": [36, 46], "bpm": 120}}]')],
        {"pitch": [36, 46], "notes": [36, 46], "instruments": ["Kick", "Open Hat"], "extra": {"bpm": 120}},
    ),
    "records-filename-and-id": (
        [
            (
                "records.json",
                f'[{{"filename": "{A}.json", "pitch": [36], "bpm": 120}}, '
                f'{{"id": "x/{B}", "pitch": [36], "bpm": 100}}]',
            )
        ],
        {"pitch": [36], "notes": [36], "instruments": ["Kick"], "extra": {"bpm": 120}},
    ),
    "keys-in-other-case": (
        [("all.json", f'{{"{A}.wav": {{"Pitch": [36, 38], "BPM": 120}}}}')],
        {"pitch": [36, 38], "notes": [36, 38], "instruments": ["Kick", "Snare"], "extra": {"BPM": 120}},
    ),
    "pitch-integral-floats": (
        [("all.json", f'{{"{A}": {{"pitch": [38.0, 36.0], "bpm": 120}}}}')],
        {
            "pitch": [38, 36],
            "notes": [36, 38],
            "instruments": ["Kick", "Snare"],
            "extra": {"pitch": [38.0, 36.0], "bpm": 120},
        },
    ),
    "pitch-digit-strings": (
        [("all.json", f'{{"{A}": {{"pitch": ["38", "36"], "bpm": 120}}}}')],
        {
            "pitch": [38, 36],
            "notes": [36, 38],
            "instruments": ["Kick", "Snare"],
            "extra": {"pitch": ["38", "36"], "bpm": 120},
        },
    ),
    "pitch-note-events": (
        [
            (
                "all.json",
                f'{{"{A}": {{"pitch": [{{"note": 36, "velocity": 90, "time": 0.0}}, {{"pitch": 42}}], "bpm": 120}}}}',
            )
        ],
        {
            "pitch": [36, 42],
            "notes": [36, 42],
            "instruments": ["Kick", "Closed Hat"],
            "extra": {"pitch": [{"note": 36, "velocity": 90, "time": 0.0}, {"pitch": 42}], "bpm": 120},
        },
    ),
    **{
        f"tempo-{tag}": (
            [("all.json", f'{{"{A}": {{"pitch": [36], "tempo": {raw}}}}}')],
            {"pitch": [36], "notes": [36], "instruments": ["Kick"], "extra": {"tempo": json.loads(raw)}},
        )
        for tag, raw in {
            "numeric-string": '"120"',
            "string-with-unit": '"120 BPM"',
            "map-of-numbers": "[120.0]",
            "map-of-pairs": "[[0.0, 120.0], [8.0, 120.0]]",
            "map-of-objects": '[{"time": 0, "bpm": 120}]',
            "object-bpm": '{"bpm": 120}',
            "object-value": '{"value": 120.0, "unit": "bpm"}',
            "microseconds-per-beat": "500000",
            "microseconds-in-a-map": '[{"time": 0, "tempo": 500000}]',
            # Shapes that say nothing readable: the loop builds with its name's BPM, the value is kept.
            "unreadable-word": '"fast"',
            "unreadable-bool": "true",
            "unreadable-null": "null",
            "unreadable-object": '{"qpm": 120}',
        }.items()
    },
    "aliases-null-and-json-kept": (
        [
            (
                "all.json",
                f'{{"{A}": {{"pitch": [36], "bpm": 120, "time_signature": "4/4", "timesig": [4, 4], '
                '"style": null, "comment": null}}',
            )
        ],
        {
            "pitch": [36],
            "notes": [36],
            "instruments": ["Kick"],
            "extra": {"bpm": 120, "timesig": [4, 4], "comment": None},
            "time_signature": "4/4",
            "style": None,
        },
    ),
    "time-signature-as-a-list": (
        [("all.json", f'{{"{A}": {{"pitch": [36], "bpm": 120, "timesig": [4, 4]}}}}')],
        {"pitch": [36], "notes": [36], "instruments": ["Kick"], "extra": {"bpm": 120}, "time_signature": "[4, 4]"},
    ),
    "two-labels-that-agree": (
        [
            ("a.json", f'{{"{A}": {{"pitch": [36, 38], "bpm": 120}}}}'),
            ("b.json", f'[{{"name": "{A}", "pitch": [36, 38], "bpm": 120}}]'),
        ],
        {"pitch": [36, 38], "notes": [36, 38], "instruments": ["Kick", "Snare"], "extra": {"bpm": 120}},
    ),
}


@pytest.mark.parametrize("shape", SHAPES)
def test_label_shape_builds_strictly_with_exact_fields(shape, tmp_path):
    labels, expected = SHAPES[shape]
    folder = write_archives(tmp_path / "data", labels if shape == "records-filename-and-id" else [*labels, B_LABEL])
    rows, dataset = build_rows(folder, tmp_path / "cache")
    assert sorted(rows) == [B, A]
    row = rows[A]
    assert row["bpm"] == 120 and row["track"] == 1
    assert {k: row[k] for k in ("pitch", "notes")} == {k: expected[k] for k in ("pitch", "notes")}
    assert names_of(dataset, row) == expected["instruments"]
    assert json.loads(row["extra_labels"]) == expected["extra"]
    for column in ("time_signature", "style"):
        if column in expected:
            assert row[column] == expected[column]
    assert dataset.features["pitch"] == datasets.List(datasets.Value("int32"))


def test_key_map_file_with_labels_beside_it(tmp_path):
    """One JSON holding the key map and loop labels: both are read (the key map's own names become the classes)."""
    key_map = [{"note": n, "label": f"{label} (kit)"} for n, label in pop_rok.KEY_MAP.items()]
    document = json.dumps(
        {"key_map_drum_note_labels": key_map, A: {"pitch": [38, 36], "bpm": 120}, B: {"pitch": [36], "bpm": 100}}
    )
    folder = write_archives(tmp_path / "data", [("pop_rok_drm_id_001_labels.json", document)])
    rows, dataset = build_rows(folder, tmp_path / "cache")
    assert dataset.features["instruments"].feature.names == [f"{n} (kit)" for n in KEY_MAP_NAMES]
    assert names_of(dataset, rows[A]) == ["Kick (kit)", "Snare (kit)"]


def test_general_midi_notes_outside_the_key_map_keep_their_loop(tmp_path):
    labels = [
        ("all.json", json.dumps({A: {"pitch": [36, 41, 57, 41], "bpm": 120}, B: {"pitch": [40, 36], "bpm": 100}}))
    ]
    folder = write_archives(tmp_path / "data", labels)
    rows, dataset = build_rows(folder, tmp_path / "cache")
    names = dataset.features["instruments"].feature.names
    assert names == [*KEY_MAP_NAMES, "Electric Snare", "Low Floor Tom", "Crash Cymbal 2"]
    assert rows[A]["pitch"] == [36, 41, 57, 41] and rows[A]["notes"] == [36, 41, 57]
    assert names_of(dataset, rows[A]) == ["Kick", "Low Floor Tom", "Crash Cymbal 2"]
    assert names_of(dataset, rows[B]) == ["Kick", "Electric Snare"]
    report = validate(data_dir=str(folder)).to_json()["first_contact"]
    assert report["notes_outside_key_map"] == {
        "40": {"name": "Electric Snare", "loops": 1},
        "41": {"name": "Low Floor Tom", "loops": 1},
        "57": {"name": "Crash Cymbal 2", "loops": 1},
    }
    assert (
        "notes outside the key map: 40 Electric Snare (1 loops); 41 Low Floor Tom (1 loops); "
        "57 Crash Cymbal 2 (1 loops)" in dataset.info.description
    )


# Problems: each fails a strict build naming the file and the loop.
PROBLEMS = {
    "tempo-map-that-changes": (
        [("all.json", f'{{"{A}": {{"pitch": [36], "tempo": [[0, 120], [4, 130]]}}}}')],
        ["all.json", A, "changes tempo"],
    ),
    "microseconds-that-disagree": (
        [("all.json", f'{{"{A}": {{"pitch": [36], "tempo": 600000}}}}')],
        ["all.json", A, "says 100"],
    ),
    "bpm-that-disagrees": (
        [("all.json", f'{{"{A}": {{"pitch": [36], "bpm": "125 BPM"}}}}')],
        ["all.json", A, "says 125"],
    ),
    "tempo-zero": ([("all.json", f'{{"{A}": {{"pitch": [36], "bpm": 0}}}}')], ["all.json", A, "positive"]),
    "note-outside-general-midi": (
        [("all.json", f'{{"{A}": {{"pitch": [36, 99], "bpm": 120}}}}')],
        ["all.json", A, "99"],
    ),
    "pitch-not-integral": ([("all.json", f'{{"{A}": {{"pitch": [36.5], "bpm": 120}}}}')], ["all.json", A, "36.5"]),
    "pitch-above-127": ([("all.json", f'{{"{A}": {{"pitch": [128], "bpm": 120}}}}')], ["all.json", A, "128"]),
    "pitch-a-word": ([("all.json", f'{{"{A}": {{"pitch": ["kick"], "bpm": 120}}}}')], ["all.json", A, "kick"]),
    "pitch-not-a-list": ([("all.json", f'{{"{A}": {{"pitch": 36, "bpm": 120}}}}')], ["all.json", A]),
    "event-without-a-note": (
        [("all.json", f'{{"{A}": {{"pitch": [{{"velocity": 3}}], "bpm": 120}}}}')],
        ["all.json", A],
    ),
    "duplicates-differ-in-order": (
        [
            ("a.json", f'{{"{A}": {{"pitch": [36, 38], "bpm": 120}}}}'),
            ("b.json", f'{{"{A}": {{"pitch": [38, 36], "bpm": 120}}}}'),
        ],
        ["b.json", A, "a.json"],
    ),
    "duplicates-differ-in-repeats": (
        [
            ("a.json", f'{{"{A}": {{"pitch": [36, 38], "bpm": 120}}}}'),
            ("b.json", f'{{"{A}": {{"pitch": [36, 38, 38], "bpm": 120}}}}'),
        ],
        ["b.json", A, "a.json"],
    ),
    "record-naming-no-loop": ([("r.json", '[{"pitch": [36], "bpm": 120}]')], ["r.json", "record 0"]),
    "records-twice-that-differ": (
        [
            (
                "r.json",
                f'[{{"name": "{A}", "pitch": [36], "bpm": 120}}, {{"name": "{A}.wav", "pitch": [38], "bpm": 120}}]',
            )
        ],
        ["r.json", A, "labelled differently"],
    ),
    "a-json-key-twice-with-different-values": (
        [("all.json", f'{{"{A}": {{"pitch": [36], "bpm": 120}}, "{A}": {{"pitch": [38], "bpm": 120}}}}')],
        ["all.json", A, "twice"],
    ),
    "two-key-maps-that-disagree": (
        [
            ("k1.json", KEY_MAP_JSON),
            ("k2.json", '{"key_map_drum_note_labels": [{"note": 36, "label": "Bass Drum"}]}'),
            ("all.json", f'{{"{A}": {{"pitch": [36], "bpm": 120}}}}'),
        ],
        ["k2.json", "k1.json", "key map"],
    ),
}


@pytest.mark.parametrize("case", PROBLEMS)
def test_label_problem_fails_a_strict_build_naming_file_and_loop(case, tmp_path):
    labels, named = PROBLEMS[case]
    folder = write_archives(tmp_path / "data", [*labels, B_LABEL])
    with pytest.raises(pop_rok.PopRokError) as raised:
        pop_rok.load_pop_rok(data_dir=str(folder), cache_dir=str(tmp_path / "cache"))
    for text in named:
        assert text in str(raised.value), (text, str(raised.value))
    assert all(text in validate(data_dir=str(folder)).problems.report() for text in named)


@pytest.mark.parametrize(
    "extra_frames, kind",
    [(0, "exact"), (-1, "shorter"), (round(0.050 * 44100), "longer"), (round(0.080 * 44100), "longer")],
    ids=["exact", "one-sample-short", "50ms-long", "80ms-long"],
)
def test_beats_come_from_the_bars_not_the_file_end(extra_frames, kind, tmp_path):
    wavs = {A: loop_wav(A, extra_frames, bars=8), B: loop_wav(B, bars=8)}
    labels = [("all.json", json.dumps({A: {"pitch": [36], "bpm": 120}, B: {"pitch": [36], "bpm": 100}}))]
    folder = write_archives(tmp_path / "data", labels, wavs)
    rows, _ = build_rows(folder, tmp_path / "cache")
    row = rows[A]
    assert row["num_bars"] == 8
    assert row["beats"] == pytest.approx([k * 0.5 for k in range(32)], abs=1e-6)
    assert row["downbeats"] == pytest.approx([k * 2.0 for k in range(8)], abs=1e-6)
    durations = validate(data_dir=str(folder)).to_json()["first_contact"]["durations_vs_8_bars"]
    assert durations[kind] == 1 + (kind == "exact")
    if kind != "exact":
        key = "longest_overhang_ms" if kind == "longer" else "largest_shortfall_ms"
        assert durations[key] == pytest.approx(abs(extra_frames) / 44.1, abs=0.01)


def test_validate_json_reports_what_the_archive_holds(tmp_path):
    labels = [
        ("pop_rok_drm_id_001_json/labels.json", KEY_MAP_JSON),
        ("pop_rok_drm_id_001_json/records.json", f'[{{"file": "{A}.wav", "Pitch": [36, 36, 41], "tempo": 500000}}]'),
        (f"pop_rok_drm_id_001_json/{B}.json", '{"pitch": [36], "bpm": "100 BPM", "kit": null}'),
        ("pop_rok_drm_id_001_json/notes.txt", "hello"),
    ]
    folder = write_archives(tmp_path / "data", labels)
    result = subprocess.run(
        [sys.executable, str(ROOT / "pop_rok.py"), "validate", "--data-dir", str(folder), "--json"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["problems"] == [] and report["loops_found"] == 2 and report["labels_found"] == 2
    first = report["first_contact"]
    assert first["files"] == {
        pop_rok.ARCHIVES["json"]: {"pop_rok_drm_id_001_json": {".json": 3, ".txt": 1}},
        pop_rok.ARCHIVES["wav"]: {"pop_rok_drm_id_001_wav": {".wav": 2}},
    }
    assert first["label_documents"] == {"bare": 1, "key map": 1, "records": 1}
    assert first["label_keys"] == {
        "Pitch": {"list": 1},
        "bpm": {"string": 1},
        "kit": {"null": 1},
        "pitch": {"list": 1},
        "tempo": {"number": 1},
    }
    assert first["tempo_read_as"] == {"BPM, text with a unit": 1, "microseconds per quarter note": 1}
    assert first["pitch_read_as"] == {"integers": 2}
    assert first["pitch_lengths"] == {"min": 1, "median": 2, "max": 3}
    assert first["pitch_lists_repeating_a_note"] == 1
    assert first["loop_names_in_labels"] == {"with a .wav suffix": 1}
    assert first["notes_outside_key_map"] == {"41": {"name": "Low Floor Tom", "loops": 1}}
    assert first["tracks_shared_by_several_loops"] == {}
    assert first["durations_vs_8_bars"]["shorter"] == 2  # one-bar WAVs
    assert any("microseconds per quarter note" in note for note in first["notes"])


def test_shared_track_numbers_are_reported(tmp_path):
    other = "110bpm_pop_rok_drm_id_001_0001"  # track 0001 again, at another tempo
    wavs = {A: loop_wav(A), other: loop_wav(other), B: loop_wav(B)}
    labels = [("all.json", json.dumps({A: {"pitch": [36], "bpm": 120}, other: {"pitch": [36]}, B: {"pitch": [36]}}))]
    folder = write_archives(tmp_path / "data", labels, wavs)
    report = validate(data_dir=str(folder))
    assert not report.problems
    assert report.to_json()["first_contact"]["tracks_shared_by_several_loops"] == {"0001": 2}
    assert "tracks shared by several loops: 1" in str(report)


# Each tempo shape: how the first-contact report must say it was read (loop A at 120 BPM; B's plain "bpm" is
# "BPM"), and its disagreeing twin: the same shape saying 125 BPM, which the file name's 120 contradicts.
TEMPO_READINGS = {
    "numeric-string": ('"120"', 120.0, "BPM, numeric text", '"125"'),
    "string-with-unit": ('"120 BPM"', 120.0, "BPM, text with a unit", '"125 BPM"'),
    "map-of-numbers": ("[120.0]", 120.0, "tempo map of numbers, BPM", "[125.0]"),
    "map-of-pairs": ("[[0.0, 120.0], [8.0, 120.0]]", 120.0, "tempo map of [time, bpm] pairs, BPM", "[[0.0, 125.0]]"),
    "map-of-objects": ('[{"time": 0, "bpm": 120}]', 120.0, "tempo map of objects, BPM", '[{"time": 0, "bpm": 125}]'),
    "object-bpm": ('{"bpm": 120}', 120.0, "BPM, an object", '{"bpm": 125}'),
    "object-value": ('{"value": 120.0, "unit": "bpm"}', 120.0, "BPM, an object", '{"value": 125.0, "unit": "bpm"}'),
    "microseconds-per-beat": ("500000", 120.0, "microseconds per quarter note", "480000"),
    "microseconds-in-a-map": (
        '[{"time": 0, "tempo": 500000}]',
        120.0,
        "tempo map of objects, microseconds per quarter note",
        '[{"time": 0, "tempo": 480000}]',
    ),
}


@pytest.mark.parametrize("tag", TEMPO_READINGS)
def test_tempo_shape_is_read_as_its_value_and_reported(tag, tmp_path):
    raw, bpm, how, twin = TEMPO_READINGS[tag]
    assert read_tempo(json.loads(raw)) == (pytest.approx(bpm), how)
    folder = write_archives(
        tmp_path / "data", [("all.json", f'{{"{A}": {{"pitch": [36], "tempo": {raw}}}}}'), B_LABEL]
    )
    report = validate(data_dir=str(folder))
    assert not report.problems, str(report)
    assert report.to_json()["first_contact"]["tempo_read_as"] == {how: 1, "BPM": 1}
    # The twin: read the same way, 125 BPM, against the file name's 120: one problem, naming the file and the loop.
    assert read_tempo(json.loads(twin)) == (pytest.approx(125.0), how)
    folder = write_archives(
        tmp_path / "twin", [("all.json", f'{{"{A}": {{"pitch": [36], "tempo": {twin}}}}}'), B_LABEL]
    )
    with pytest.raises(pop_rok.PopRokError) as raised:
        pop_rok.load_pop_rok(data_dir=str(folder), cache_dir=str(tmp_path / "cache"))
    assert "POP-ROK input has 1 problem(s)" in str(raised.value), str(raised.value)
    [(file, message)] = validate(data_dir=str(folder)).problems.entries
    assert A in file and message == "the file name says 120 BPM, its label (all.json) says 125", message


@pytest.mark.parametrize(
    "raw, json_type", [('"fast"', "string"), ("true", "bool"), ("null", "null"), ('{"qpm": 120}', "object")]
)
def test_unreadable_tempo_is_reported_as_not_read(raw, json_type, tmp_path):
    assert read_tempo(json.loads(raw))[0] is None
    folder = write_archives(
        tmp_path / "data", [("all.json", f'{{"{A}": {{"pitch": [36], "tempo": {raw}}}}}'), B_LABEL]
    )
    report = validate(data_dir=str(folder))
    assert not report.problems, str(report)
    [(how, count)] = [(h, c) for h, c in report.to_json()["first_contact"]["tempo_read_as"].items() if h != "BPM"]
    assert how.startswith("not read") and count == 1, how
