"""Reliability: every bad archive, file or label gives a clear answer, and nothing is lost silently.

The policy under test: by default a build with any problem raises ``pop_rok.PopRokError`` before anything
is cached as complete, with one message listing every problem, naming the files and saying what to do;
with ``on_error="skip"`` the bad loops are left out, the report goes to stderr and into
``dataset.info.description``, and every other row is exactly what the archives hold. ``validate`` walks
the same input and reports the same problems (exit 0 only when there is none).

Each test builds its broken archives from a generated 4-loop sample (``broken_archives.Sample``) and runs
the builder (prepared, streamed, skip) and ``validate`` on them.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import logging
import os
import random
import re
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import datasets
import pytest
from broken_archives import (
    JSON,
    JSON_FOLDER,
    KEY_MAP_MEMBER,
    WAV,
    WAV_FOLDER,
    Sample,
    flip_byte,
    md5_of,
    read_members,
    record_json,
    truncate,
    wav_with_format,
    write_archive,
)
from file_server import FileServer

import pop_rok
from poprok import cli
from poprok.labels.names import parse_loop_name
from poprok.record import KEY_MAP_FIELD
from poprok.sample import archives as sample_archives
from poprok.splits import FOLD_SPLITS
from poprok.validation import validate

ROOT = Path(pop_rok.__file__).resolve().parent
INSTRUMENT_NAMES = list(pop_rok.KEY_MAP.values())


# ------------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Sample:
    """4 good loops in memory: one WAV member per loop, a key-map file and one label JSON per loop."""
    return Sample.generate(tmp_path_factory.mktemp("good_sample"), loops=4, seed=11)


@pytest.fixture(scope="module")
def good_archives(sample, tmp_path_factory) -> Path:
    return sample.write(tmp_path_factory.mktemp("good_archives"))


# ------------------------------------------------------------------------------------------------- helpers


def build(folder, cache, **kwargs):
    return pop_rok.load_pop_rok(split=pop_rok.ALL_SPLITS, data_dir=str(folder), cache_dir=str(cache), **kwargs)


def stream_rows(**kwargs) -> list[dict]:
    stream = pop_rok.load_pop_rok(split=pop_rok.ALL_SPLITS, streaming=True, **kwargs)
    if "audio" in stream.features:
        stream = stream.cast_column("audio", datasets.Audio(sampling_rate=44100, decode=False))
    return list(stream)


def rows_of(dataset) -> list[dict]:
    if "audio" in dataset.features:
        dataset = dataset.cast_column("audio", datasets.Audio(sampling_rate=44100, decode=False))
    return list(dataset)


def assert_rows(rows: list[dict], sample: Sample, names) -> None:
    """Exactly the loops ``names``, once each, every field what the archives hold."""
    assert sorted(row["name"] for row in rows) == sorted(names)
    for row in rows:
        loop = sample.by_name[row["name"]]
        assert row["track"] == loop.track and row["bpm"] == loop.bpm
        assert (row["genre"], row["subgenre"]) == ("pop", "rock")
        assert row["notes"] == list(loop.notes)
        assert row["instruments"] == [INSTRUMENT_NAMES.index(pop_rok.KEY_MAP[n]) for n in loop.notes]
        assert row["audio"]["bytes"] == sample.wav_bytes(loop.name)  # stored unchanged
        assert row["num_bars"] == 8
        assert row["duration"] == pytest.approx(8 * 4 * 60 / loop.bpm, abs=1e-4)


def assert_nothing_cached(folder, cache) -> None:
    """No dataset (complete or half-written) in the cache, and a builder over it serves nothing."""
    cache = Path(cache)
    assert not list(cache.rglob("dataset_info.json")), "a failed build left a dataset marked complete"
    assert not list(cache.rglob("*.arrow")), "a failed build left data files behind"
    with pytest.raises((FileNotFoundError, pop_rok.PopRokError)):
        pop_rok.PopRok(config_name="default", data_dir=str(folder), cache_dir=str(cache)).as_dataset(
            split=pop_rok.ALL_SPLITS
        )


def assert_build_fails(folder, cache, *named, on_error="raise") -> str:
    """The build raises PopRokError naming each of ``named``, and leaves nothing cached."""
    with pytest.raises(pop_rok.PopRokError) as raised:
        build(folder, cache, on_error=on_error)
    message = str(raised.value)
    for needle in named:
        assert needle in message, f"{needle!r} is not named in:\n{message}"
    assert_nothing_cached(folder, cache)
    return message


def problem_lines(output: str) -> str:
    """The problem list of a printed report (its header names both archives, so it is left out)."""
    return "\n".join(line for line in output.splitlines() if line.startswith("  - "))


def assert_validate_reports(folder, *named, capsys=None) -> str:
    """validate() lists a problem naming each of ``named``; the CLI (in-process) prints the same, exits 1."""
    report = validate(data_dir=str(folder))
    problems = report.problems.report()
    assert problems, str(report)
    for needle in named:
        assert needle in problems, f"{needle!r} is not named in:\n{report}"
    if capsys is not None:
        capsys.readouterr()
        assert cli.main(["validate", "--data-dir", str(folder)]) == 1
        printed = problem_lines(capsys.readouterr().out)
        for needle in named:
            assert needle in printed
    return problems


def run_cli(*args, cwd=None, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "pop_rok.py"), *args], capture_output=True, text=True, cwd=cwd, timeout=timeout
    )


ARCHIVE_DAMAGE = re.compile(r"truncated|corrupt|damaged", re.I)


# ===================================================================================== loop-level problems
#
# Each case breaks the good sample in one way. ``left_out``: the loops a skip build leaves out; ``named``:
# the files (members) the error, the skip report and validate must name; ``problems``: every problem line
# the report must hold, and no other, as (file, regex of the reason in the loader's words), in report order.


def _bpm_mismatch(s: Sample):
    name = s.names[0]
    label = dict(s.label_of(name), bpm=s.by_name[name].bpm + 3)
    return s.wav, s.replace_label(name, {name: label})


def _unknown_note(s: Sample):
    """99: neither the key map nor General MIDI percussion (35-81) names it (a GM note would keep its loop)."""
    name = s.names[0]
    label = dict(s.label_of(name), pitch=[*s.label_of(name)["pitch"], 99])
    return s.wav, s.replace_label(name, {name: label})


def _labels_disagree(s: Sample):
    name = s.names[0]
    label = s.label_of(name)
    other = dict(label, pitch=[36] if label["pitch"] != [36] else [36, 38])
    return s.wav, [*s.labels, ("pop_rok_drm_id_001_json/more/all.json", json.dumps({name: other}).encode())]


def _bad_pitch(value):
    def make(s: Sample):
        name = s.names[1]
        label = {"bpm": s.by_name[name].bpm} if value is _MISSING else {"pitch": value, "bpm": s.by_name[name].bpm}
        return s.wav, s.replace_label(name, {name: label})

    return make


def _format(rate: int, bits: int, channels: int) -> str:
    """The reason a WAV of another format gets: what it is, against what POP-ROK loops are."""
    return re.escape(f"is {rate} Hz / {bits}-bit / {channels} channel(s); POP-ROK loops are 44100 Hz / 16-bit / 2")


def _no_label(s: Sample, index: int) -> tuple[str, str]:
    name = s.names[index]
    return s.wav_member(name), re.escape(f"loop '{name}' has no label in the label archive") + "$"


def _pitch_reason(name: str, got) -> str:
    if got is _MISSING:
        return re.escape(f"label '{name}' has no 'pitch': a list of MIDI note numbers") + "$"
    return re.escape(f"label '{name}': 'pitch' must be a list of MIDI note numbers (0-127), got {got}") + "$"


def _bad_name_reason(bad: str) -> str:
    stem = bad[: -len(".wav")]
    return re.escape(f"'{stem}' is not a POP-ROK loop name ({{bpm}}bpm_pop_rok_drm_id_001_{{track:04d}}, e.g. ")


_MISSING = object()
BAD_NAMES = [
    "100bpm_pop_rok_drm_id_1_0039.wav",  # id is 001
    "100bpm_pop_rok_drm_id_001_39.wav",  # track has 4 digits
    "100BPM_pop_rok_drm_id_001_0039.wav",
    "pop_rok_drm_id_001_0039.wav",
    "100bpm_pop_rok_drm_id_001_0039 (1).wav",
    "100bpm_pop_rok_drm_id_001_0039.wav.wav",
]
BAD_PITCHES = {  # tag -> (the label's "pitch", what the reason says it got)
    "with-a-word": ([36, "snare"], "'snare' in [36, 'snare']"),
    "an-int": (36, "36"),
    "floats": ([36.0, 38.5], "38.5 in [36.0, 38.5]"),
    "bools": ([True], "True in [True]"),
    "null": (None, "None"),
    "an-object": ({"36": 1}, "{'36': 1}"),
    "missing": (_MISSING, _MISSING),
}

# id -> (make(sample) -> (wav members, label members), index of the loop left out or None, named(sample) -> [str],
#        problems(sample) -> [(file, reason regex)]: the whole report)
LOOP_CASES = {
    "wav-garbage-bytes": (
        lambda s: (s.replace_wav(s.names[1], b"this is not a wav file" * 40), s.labels),
        1,
        lambda s: [s.wav_member(s.names[1])],
        lambda s: [(s.wav_member(s.names[1]), r"unreadable WAV: not a RIFF/WAVE file$")],
    ),
    "wav-truncated-data-chunk": (
        lambda s: (s.replace_wav(s.names[1], s.wav_bytes(s.names[1])[:100_000]), s.labels),
        1,
        lambda s: [s.wav_member(s.names[1])],
        # 100,000 bytes less the 44-byte header: what the file holds of the samples its data chunk declares
        lambda s: [
            (
                s.wav_member(s.names[1]),
                rf"unreadable WAV: truncated: the 'data' chunk declares {len(s.wav_bytes(s.names[1])) - 44} bytes, "
                r"the file holds 99956$",
            )
        ],
    ),
    "wav-48kHz": (
        lambda s: (s.replace_wav(s.names[1], wav_with_format(1.0, 48000, 2, "PCM_16")), s.labels),
        1,
        lambda s: [s.wav_member(s.names[1]), "48000"],
        lambda s: [(s.wav_member(s.names[1]), _format(48000, 16, 2))],
    ),
    "wav-24bit": (
        lambda s: (s.replace_wav(s.names[1], wav_with_format(1.0, 44100, 2, "PCM_24")), s.labels),
        1,
        lambda s: [s.wav_member(s.names[1]), "24-bit"],
        lambda s: [(s.wav_member(s.names[1]), _format(44100, 24, 2))],
    ),
    "wav-mono": (
        lambda s: (s.replace_wav(s.names[1], wav_with_format(1.0, 44100, 1, "PCM_16")), s.labels),
        1,
        lambda s: [s.wav_member(s.names[1])],
        lambda s: [(s.wav_member(s.names[1]), _format(44100, 16, 1))],
    ),
    "wav-float": (
        lambda s: (s.replace_wav(s.names[1], wav_with_format(1.0, 44100, 2, "FLOAT")), s.labels),
        1,
        lambda s: [s.wav_member(s.names[1])],
        lambda s: [(s.wav_member(s.names[1]), re.escape("unreadable WAV: not PCM (format tag 0x0003)") + "$")],
    ),
    "wav-without-label": (
        lambda s: (s.wav, s.without_label(s.names[2])),
        2,
        lambda s: [s.wav_member(s.names[2])],
        lambda s: [_no_label(s, 2)],
    ),
    "label-without-wav": (
        lambda s: (s.without_wav(s.names[2]), s.labels),
        2,
        lambda s: [s.label_member(s.names[2])],
        lambda s: [(s.label_member(s.names[2]), re.escape(f"label '{s.names[2]}' has no WAV in the audio archive"))],
    ),
    "bpm-name-vs-label": (
        _bpm_mismatch,
        0,
        lambda s: [s.wav_member(s.names[0]), s.label_member(s.names[0])],
        lambda s: [
            (
                s.wav_member(s.names[0]),
                re.escape(
                    f"the file name says {s.by_name[s.names[0]].bpm} BPM, its label ({s.label_member(s.names[0])}) "
                    f"says {s.by_name[s.names[0]].bpm + 3}"
                )
                + "$",
            )
        ],
    ),
    "midi-note-outside-key-map-and-gm": (
        _unknown_note,
        0,
        lambda s: [s.label_member(s.names[0]), "99"],
        lambda s: [
            (
                s.label_member(s.names[0]),
                re.escape(
                    f"loop '{s.names[0]}' plays MIDI note(s) [99] that neither the key map nor General MIDI "
                    "percussion (35-81) names"
                ),
            )
        ],
    ),
    "same-wav-twice": (
        lambda s: ([*s.wav, (s.wav_member(s.names[1]), s.wav_bytes(s.names[1]))], s.labels),
        None,  # one copy is kept: the row is the loop, once
        lambda s: [s.wav_member(s.names[1])],
        lambda s: [(s.wav_member(s.names[1]), re.escape(f"loop '{s.names[1]}' appears twice in the audio archive"))],
    ),
    "labels-disagree": (
        _labels_disagree,
        0,
        lambda s: [s.label_member(s.names[0]), "pop_rok_drm_id_001_json/more/all.json"],
        lambda s: [
            (
                "pop_rok_drm_id_001_json/more/all.json",
                re.escape(f"loop '{s.names[0]}' is labelled differently in {s.label_member(s.names[0])}") + "$",
            )
        ],
    ),
    "malformed-json": (
        lambda s: (s.wav, s.replace_label(s.names[1], b'{"' + s.names[1].encode() + b'": {"pitch": [36,')),
        1,
        lambda s: [s.label_member(s.names[1])],
        # the label file cannot be read, so its loop's WAV has no label: two problems, one cause
        lambda s: [
            (s.label_member(s.names[1]), r"malformed JSON \(Expecting value: line 1 column \d+ \(char \d+\)\)$"),
            _no_label(s, 1),
        ],
    ),
    **{
        f"pitch-{tag}": (
            _bad_pitch(value),
            1,
            lambda s: [s.label_member(s.names[1]), s.names[1]],
            lambda s, got=got: [(s.label_member(s.names[1]), _pitch_reason(s.names[1], got))],
        )
        for tag, (value, got) in BAD_PITCHES.items()
    },
    **{
        f"bad-file-name-{i}": (
            lambda s, bad=bad: ([*s.wav, (WAV_FOLDER + bad, s.wav_bytes(s.names[0]))], s.labels),
            None,  # the four good loops all stay
            lambda s, bad=bad: [WAV_FOLDER + bad, repr(bad[: -len(".wav")])],
            lambda s, bad=bad: [(WAV_FOLDER + bad, _bad_name_reason(bad))],
        )
        for i, bad in enumerate(BAD_NAMES)
    },
}


def assert_problems(text: str, expected: list[tuple[str, str]]) -> None:
    """``text``'s problem lines are exactly ``expected``: as many, in order, each file with a matching reason."""
    lines = problem_lines(text).splitlines()
    assert len(lines) == len(expected), f"{len(expected)} problem line(s) expected, {len(lines)} found:\n{text}"
    for line, (file, reason) in zip(lines, expected):
        found_file, _, found_reason = line.removeprefix("  - ").partition(": ")
        assert found_file == file, f"{file!r} expected, {found_file!r} found:\n{text}"
        assert re.match(reason, found_reason), f"{file}: the reason {found_reason!r} does not match {reason!r}"


def skip_reports(caplog) -> list[str]:
    """The on_error='skip' reports among the pop_rok warnings."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "pop_rok" and r.levelno == logging.WARNING and r.getMessage().startswith("Left out by on_error")
    ]


@pytest.fixture(scope="module")
def broken(sample, tmp_path_factory):
    """case id -> (data_dir with the broken pair, loops a skip build keeps, names to find, problem lines)."""
    made = {}

    def get(case: str):
        if case not in made:
            make, left_out, named, problems = LOOP_CASES[case]
            wav, labels = make(sample)
            folder = sample.write(tmp_path_factory.mktemp(case), wav=wav, labels=labels)
            kept = [n for i, n in enumerate(sample.names) if i != left_out]
            made[case] = folder, kept, named(sample), problems(sample)
        return made[case]

    return get


@pytest.mark.parametrize("case", LOOP_CASES)
def test_loop_problem_fails_the_build_naming_the_file(case, broken, tmp_path):
    folder, _, named, problems = broken(case)
    message = assert_build_fails(folder, tmp_path, *named)
    assert "on_error" in message, "the message does not say what to do"
    assert_problems(message, problems)


@pytest.mark.parametrize("case", LOOP_CASES)
def test_loop_problem_skip_leaves_the_loop_out_and_reports_it(case, broken, sample, tmp_path, caplog):
    folder, kept, named, problems = broken(case)
    with caplog.at_level(logging.WARNING, logger="pop_rok"):
        dataset = build(folder, tmp_path, on_error="skip")
    [report] = skip_reports(caplog)
    assert report.startswith(f"Left out by on_error='skip' ({len(problems)} problem(s)):"), report
    assert_problems(report, problems)
    for needle in named:
        assert needle in report, f"{needle!r} is not in the skip report, a warning:\n{report}"
        assert needle in dataset.info.description, f"{needle!r} is not in dataset.info.description"
    assert_problems(dataset.info.description, problems)
    assert_rows(rows_of(dataset), sample, kept)
    # The report survives the cache: the same build again reads it back from disk.
    again = build(folder, tmp_path, on_error="skip")
    assert_problems(again.info.description, problems)


@pytest.mark.parametrize("case", LOOP_CASES)
def test_loop_problem_streaming(case, broken, sample, caplog):
    folder, kept, named, problems = broken(case)
    with pytest.raises(pop_rok.PopRokError) as raised:
        stream_rows(data_dir=str(folder))
    assert all(needle in str(raised.value) for needle in named), str(raised.value)
    assert_problems(str(raised.value), problems)
    with caplog.at_level(logging.WARNING, logger="pop_rok"):
        rows = stream_rows(data_dir=str(folder), on_error="skip")
    reports = skip_reports(caplog)
    assert reports, "streaming with on_error='skip' left loops out without a report"
    for report in reports:  # each streamed split is a pass over the archives: each says the same
        assert_problems(report, problems)
    assert_rows(rows, sample, kept)


@pytest.mark.parametrize("case", LOOP_CASES)
def test_loop_problem_validate(case, broken, capsys):
    folder, _, named, problems = broken(case)
    report = assert_validate_reports(folder, *named, capsys=capsys)
    assert_problems(report, problems)


def test_validate_cli_lists_a_bad_wav_and_exits_1(broken):
    folder, _, named, problems = broken("wav-48kHz")
    result = run_cli("validate", "--data-dir", str(folder))
    assert result.returncode == 1, result.stderr
    assert all(needle in result.stdout for needle in named), result.stdout
    assert_problems(result.stdout, problems)
    assert re.search(r"loops found:\s+3", result.stdout) and re.search(r"labels found:\s+4", result.stdout)
    assert "hours" in result.stdout


def test_every_problem_in_one_message(sample, tmp_path, caplog):
    """Five problems in five files: one error lists them all, and so do the skip report and validate."""
    a, b, c, d = sample.names
    orphan = "100bpm_pop_rok_drm_id_001_0001"  # a label with no WAV
    wav = [
        *sample.replace_wav(a, b"garbage" * 50),
        (WAV_FOLDER + "100bpm_pop_rok_drm_id_001_39.wav", sample.wav_bytes(b)),
    ]
    labels = sample.replace_label(b, b"{not json")
    labels = [
        (m, data) if m != sample.label_member(c) else (m, json.dumps({c: dict(sample.label_of(c), bpm=99)}).encode())
        for m, data in labels
    ]
    labels.append((f"{JSON_FOLDER}{orphan}.json", json.dumps({orphan: {"pitch": [36], "bpm": 100}}).encode()))
    folder = sample.write(tmp_path / "data", wav=wav, labels=labels)
    named = [
        sample.wav_member(a),
        sample.label_member(b),
        sample.wav_member(c),
        f"{JSON_FOLDER}{orphan}.json",
        WAV_FOLDER + "100bpm_pop_rok_drm_id_001_39.wav",
    ]
    message = assert_build_fails(folder, tmp_path / "raise", *named)
    with caplog.at_level(logging.WARNING, logger="pop_rok"):
        dataset = build(folder, tmp_path / "skip", on_error="skip")
    warnings = [r.getMessage() for r in caplog.records if r.name == "pop_rok" and r.levelno == logging.WARNING]
    [skip_report] = [w for w in warnings if w.startswith("Left out by on_error='skip'")]
    bpm_c = sample.by_name[c].bpm
    expected = {  # every problem once, with its reason: the malformed JSON also leaves b's WAV without a label
        sample.label_member(b): "malformed JSON",
        sample.wav_member(a): "unreadable WAV: not a RIFF/WAVE file",
        sample.wav_member(b): f"loop '{b}' has no label in the label archive",
        sample.wav_member(c): f"the file name says {bpm_c} BPM, its label ({sample.label_member(c)}) says 99",
        WAV_FOLDER + "100bpm_pop_rok_drm_id_001_39.wav": "'100bpm_pop_rok_drm_id_001_39' is not a POP-ROK loop name",
        f"{JSON_FOLDER}{orphan}.json": f"label '{orphan}' has no WAV in the audio archive",
    }
    assert skip_report.startswith(f"Left out by on_error='skip' ({len(expected)} problem(s)):"), skip_report
    lines = problem_lines(skip_report).splitlines()
    assert len(lines) == len(expected), skip_report
    reported = dict(line.removeprefix("  - ").split(": ", 1) for line in lines)
    assert set(reported) == set(expected), skip_report
    assert all(reported[file].startswith(reason) for file, reason in expected.items()), skip_report
    assert problem_lines(message).splitlines() == lines, "the error and the skip report list the same problems"
    assert all(needle in dataset.info.description for needle in named)
    assert all(needle in skip_report for needle in named), skip_report
    assert_rows(rows_of(dataset), sample, [d])
    assert_validate_reports(folder, *named)


def test_skip_with_every_loop_bad_gives_a_clear_answer(sample, tmp_path, capsys):
    """Nothing usable: say so, naming every file, and cache nothing (an empty dataset would hide it)."""
    wav = [(m, b"garbage") for m, _ in sample.wav]
    folder = sample.write(tmp_path / "data", wav=wav)
    with pytest.raises(pop_rok.PopRokError, match="left out every loop") as raised:
        build(folder, tmp_path / "cache", on_error="skip")
    assert all(sample.wav_member(n) in str(raised.value) for n in sample.names), str(raised.value)
    assert_nothing_cached(folder, tmp_path / "cache")


def test_extracted_folder_reports_like_the_archives(sample, tmp_path):
    """data_dir holding the unpacked files: the same problems, named by their paths."""
    a, b, *_ = sample.names
    folder = sample.write(
        tmp_path / "archives", wav=sample.replace_wav(a, b"garbage" * 50), labels=sample.without_label(b)
    )
    extracted = tmp_path / "extracted"
    for name in (WAV, JSON):
        with tarfile.open(folder / name) as tar:
            tar.extractall(extracted, filter="data")
    bad_wav, unlabelled = str(extracted / sample.wav_member(a)), str(extracted / sample.wav_member(b))
    assert_build_fails(extracted, tmp_path / "raise", bad_wav, unlabelled)
    dataset = build(extracted, tmp_path / "skip", on_error="skip")
    assert bad_wav in dataset.info.description and unlabelled in dataset.info.description
    assert_rows(rows_of(dataset), sample, sample.names[2:])
    assert_validate_reports(extracted, bad_wav, unlabelled)


def test_two_label_files_that_agree_pass(sample, tmp_path):
    """The same label in two files (say, per-loop files and an aggregate) is not a conflict."""
    name = sample.names[0]
    labels = [*sample.labels, ("pop_rok_drm_id_001_json/all.json", json.dumps({name: sample.label_of(name)}).encode())]
    folder = sample.write(tmp_path / "data", labels=labels)
    dataset = build(folder, tmp_path / "cache")
    assert "Left out" not in dataset.info.description
    assert_rows(rows_of(dataset), sample, sample.names)
    report = validate(data_dir=str(folder))
    assert not report.problems, str(report)


def test_zero_bpm_in_a_file_name_is_a_problem_not_a_crash(sample, tmp_path):
    bad = "00bpm_pop_rok_drm_id_001_0001"
    wav = [*sample.wav, (f"{WAV_FOLDER}{bad}.wav", sample.wav_bytes(sample.names[0]))]
    labels = [*sample.labels, (f"{JSON_FOLDER}{bad}.json", json.dumps({bad: {"pitch": [36]}}).encode())]
    folder = sample.write(tmp_path / "data", wav=wav, labels=labels)
    assert f"{WAV_FOLDER}{bad}.wav" in validate(data_dir=str(folder)).problems.report()
    assert_build_fails(folder, tmp_path / "cache", f"{bad}.wav")


def test_key_map_naming_two_notes_the_same(sample, tmp_path):
    """35 and 36 both 'Kick' (General MIDI has two bass drums): both notes are the one 'Kick' class."""
    name = sample.names[0]
    key_map = [{"note": n, "label": label} for n, label in pop_rok.KEY_MAP.items()] + [{"note": 35, "label": "Kick"}]
    label = dict(sample.label_of(name), pitch=[35, *sample.label_of(name)["pitch"]])
    labels = [
        (m, json.dumps({KEY_MAP_FIELD: key_map}).encode()) if m == KEY_MAP_MEMBER else (m, d)
        for m, d in sample.replace_label(name, {name: label})
    ]
    folder = sample.write(tmp_path / "data", labels=labels)
    report = validate(data_dir=str(folder))
    dataset = build(folder, tmp_path / "cache")
    assert not report.problems, str(report)
    names = dataset.features["instruments"].feature.names
    assert names == INSTRUMENT_NAMES
    for row in dataset.select_columns(["name", "notes", "instruments"]):
        loop = sample.by_name[row["name"]]
        notes = sorted({35, *loop.notes}) if loop.name == name else list(loop.notes)
        assert row["notes"] == notes
        assert [names[i] for i in row["instruments"]] == ["Kick" if n == 35 else pop_rok.KEY_MAP[n] for n in notes]


# ============================================================================ empty and label-less archives


def test_empty_wav_archive(sample, tmp_path):
    folder = sample.write(tmp_path / "data", wav=[])
    for on_error in ("raise", "skip"):
        assert_build_fails(folder, tmp_path / on_error, WAV, on_error=on_error)
    with pytest.raises(pop_rok.PopRokError, match=re.escape(WAV)):
        stream_rows(data_dir=str(folder), on_error="skip")
    assert_validate_reports(folder, WAV)


@pytest.mark.parametrize("members", ["nothing", "no-json", "only-junk-json"])
def test_label_archive_without_json(members, sample, tmp_path):
    labels = {
        "nothing": [],
        "no-json": [("pop_rok_drm_id_001_json/README.txt", b"labels")],
        "only-junk-json": [("pop_rok_drm_id_001_json/._a.json", b"\x00\x05\x16\x07"), ("__MACOSX/x/b.json", b"{}")],
    }[members]
    folder = sample.write(tmp_path / "data", labels=labels)
    for on_error in ("raise", "skip"):
        assert_build_fails(folder, tmp_path / on_error, JSON, on_error=on_error)
    with pytest.raises(pop_rok.PopRokError, match=re.escape(JSON)):
        stream_rows(data_dir=str(folder))
    assert_validate_reports(folder, JSON)


# ================================================================================ truncated / corrupt archives


def damaged(sample, folder, archive: str, how: str) -> Path:
    """The good pair in ``folder`` with ``archive`` damaged: truncated, emptied or overwritten mid-stream."""
    folder = sample.write(folder)
    path = folder / archive
    if how == "truncated":
        truncate(path, 0.5)
    elif how == "empty-file":
        path.write_bytes(b"")
    elif how == "garbage-block":  # 4 KB (or a third of a small file) of random bytes mid-stream
        data = path.read_bytes()
        size = min(4096, len(data) // 3)
        start = len(data) // 3
        path.write_bytes(data[:start] + random.Random(0).randbytes(size) + data[start + size :])
    elif how == "not-gzip":
        flip_byte(path, 2)  # the gzip header's compression method
    return folder


ARCHIVE_CASES = [
    pytest.param(WAV, "truncated", id="wav-truncated"),
    pytest.param(WAV, "empty-file", id="wav-empty-file"),
    pytest.param(WAV, "garbage-block", id="wav-garbage-block"),
    pytest.param(WAV, "not-gzip", id="wav-not-gzip"),
    pytest.param(JSON, "truncated", id="json-truncated"),
    pytest.param(JSON, "empty-file", id="json-empty-file"),
    pytest.param(JSON, "garbage-block", id="json-garbage-block"),
    pytest.param(JSON, "not-gzip", id="json-not-gzip"),
]


@pytest.mark.parametrize("archive, how", ARCHIVE_CASES)
def test_damaged_archive_from_data_dir(archive, how, sample, tmp_path):
    folder = damaged(sample, tmp_path / "data", archive, how)
    for on_error in ("raise", "skip"):  # a damaged archive is never skipped over
        message = assert_build_fails(folder, tmp_path / on_error, archive, on_error=on_error)
        assert ARCHIVE_DAMAGE.search(message) and "download" in message, message
    with pytest.raises(pop_rok.PopRokError) as raised:
        stream_rows(data_dir=str(folder), on_error="skip")
    assert archive in str(raised.value)


@pytest.mark.parametrize(
    "archive, how",
    ARCHIVE_CASES,
)
def test_damaged_archive_validate(archive, how, sample, tmp_path, capsys):
    folder = damaged(sample, tmp_path / "data", archive, how)
    problems = assert_validate_reports(folder, archive, capsys=capsys)
    assert ARCHIVE_DAMAGE.search(problems), problems


@pytest.mark.parametrize("archive, how", [c for c in ARCHIVE_CASES if c.id.endswith("truncated")])
def test_damaged_archive_from_base_url(archive, how, sample, tmp_path):
    folder = damaged(sample, tmp_path / "served", archive, how)
    with FileServer(folder) as server:
        with pytest.raises(pop_rok.PopRokError) as raised:
            pop_rok.load_pop_rok(split=pop_rok.ALL_SPLITS, base_url=server.url, cache_dir=str(tmp_path / "cache"))
        assert archive in str(raised.value) and ARCHIVE_DAMAGE.search(str(raised.value))
        assert not list((tmp_path / "cache").rglob("dataset_info.json"))
        with pytest.raises(pop_rok.PopRokError) as raised:
            stream_rows(base_url=server.url)
        assert archive in str(raised.value)
        report = validate(base_url=server.url)
        assert archive in report.problems.report(), str(report)


def test_truncated_wav_archive_streaming_yields_rows_then_fails_naming_it(sample, tmp_path):
    """Streaming reads as it goes: the complete loops come first, then the error, never a silent end."""
    folder = damaged(sample, tmp_path / "served", WAV, "truncated")
    first = parse_loop_name(Path(sample.wav[0][0]).stem)  # the archive's first loop: its split streams it first
    with FileServer(folder) as server:
        stream = pop_rok.load_pop_rok(split=FOLD_SPLITS[first.fold], streaming=True, base_url=server.url)
        stream = stream.cast_column("audio", datasets.Audio(sampling_rate=44100, decode=False))
        rows = []
        with pytest.raises(pop_rok.PopRokError, match=re.escape(WAV)):
            for row in stream:
                rows.append(row)
    assert 0 < len(rows) < len(sample.names)
    assert_rows(rows, sample, [row["name"] for row in rows])


def test_rerun_after_a_truncated_download_fetches_it_again(sample, tmp_path):
    served = damaged(sample, tmp_path / "served", WAV, "truncated")
    cache = tmp_path / "cache"
    with FileServer(served) as server:
        with pytest.raises(pop_rok.PopRokError):
            pop_rok.load_pop_rok(split=pop_rok.ALL_SPLITS, base_url=server.url, cache_dir=str(cache))
        sample.write(served)  # the mirror is fixed
        dataset = pop_rok.load_pop_rok(split=pop_rok.ALL_SPLITS, base_url=server.url, cache_dir=str(cache))
    assert_rows(rows_of(dataset), sample, sample.names)


def test_corruption_only_the_gzip_crc_can_see_is_reported(sample, tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    write_archive(folder / WAV, sample.wav, compresslevel=0)
    write_archive(folder / JSON, sample.labels)
    flip_byte(folder / WAV, os.path.getsize(folder / WAV) // 2)  # inside the second WAV's samples
    assert WAV in validate(data_dir=str(folder)).problems.report()
    assert_build_fails(folder, tmp_path / "cache", WAV)


def test_damaged_member_header_is_reported_as_archive_corruption(sample, tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    tar_path = tmp_path / "plain.tar"
    with tarfile.open(tar_path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in sample.wav:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with tarfile.open(tar_path) as tar:
        third = [m for m in tar.getmembers() if m.isreg()][2]
    raw = bytearray(tar_path.read_bytes())
    raw[third.offset : third.offset + 100] = b"\xff" * 100  # the header block of the third WAV
    (folder / WAV).write_bytes(gzip.compress(bytes(raw), compresslevel=1))
    write_archive(folder / JSON, sample.labels)
    message = assert_build_fails(folder, tmp_path / "cache", WAV)
    assert ARCHIVE_DAMAGE.search(message), message
    text = assert_validate_reports(folder, WAV)
    assert ARCHIVE_DAMAGE.search(text), text


def test_validate_reports_both_damaged_archives(sample, tmp_path):
    folder = damaged(sample, tmp_path / "data", WAV, "truncated")
    (folder / JSON).write_bytes(b"")
    problems = validate(data_dir=str(folder)).problems.report()
    assert WAV in problems and JSON in problems, problems


# ======================================================================================= junk passes quietly


def test_macos_junk_and_empty_folders_pass_quietly(sample, tmp_path, capsys):
    junk_wav = [
        ("__MACOSX/x/foo.wav", b"not a wav at all"),  # a basename that does not start with ._
        ("__MACOSX/pop_rok_drm_id_001_wav/._" + Path(sample.wav[0][0]).name, b"\x00\x05\x16\x07" + bytes(60)),
        (WAV_FOLDER + "._" + Path(sample.wav[1][0]).name, b"\x00\x05\x16\x07" + bytes(60)),
        (WAV_FOLDER + ".DS_Store", b"\x00\x00\x00\x01Bud1" + bytes(100)),
        (".DS_Store", b"\x00\x00\x00\x01Bud1" + bytes(100)),
    ]
    junk_json = [
        ("__MACOSX/pop_rok_drm_id_001_json/json/foo.json", b"{broken"),
        (JSON_FOLDER + "._" + Path(sample.labels[1][0]).name, b"\x00\x05\x16\x07" + bytes(60)),
        (JSON_FOLDER + ".DS_Store", b"\x00\x00\x00\x01Bud1" + bytes(100)),
    ]
    folder = tmp_path / "data"
    folder.mkdir()
    write_archive(
        folder / WAV, sample.wav[:2] + junk_wav + sample.wav[2:], folders=["empty/", WAV_FOLDER + "nothing/"]
    )
    write_archive(folder / JSON, junk_json + sample.labels, folders=["pop_rok_drm_id_001_json/empty/"])
    extracted = tmp_path / "extracted"
    for name in (WAV, JSON):
        with tarfile.open(folder / name) as tar:
            tar.extractall(extracted, filter="data")
    assert (extracted / "empty").is_dir() and (extracted / "__MACOSX/x/foo.wav").is_file()
    for data_dir in (folder, extracted):
        capsys.readouterr()
        dataset = build(data_dir, tmp_path / f"cache-{data_dir.name}")
        assert_rows(rows_of(dataset), sample, sample.names)
        assert_rows(stream_rows(data_dir=str(data_dir)), sample, sample.names)
        assert "Left out" not in dataset.info.description
        assert "POP-ROK:" not in capsys.readouterr().err
        report = validate(data_dir=str(data_dir))
        assert not report.problems, str(report)
        assert (report.loops, report.labels) == (4, 4)
    result = run_cli("validate", "--data-dir", str(folder))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no problems found" in result.stdout


# ============================================================================== num_proc over extracted files


@pytest.fixture(scope="module")
def two_bad_shards(sample, tmp_path_factory):
    """An extracted folder whose first and last WAV (in sorted order: different num_proc jobs) are garbage."""
    names = sorted(sample.names)
    wav = sample.replace_wav(names[0], b"garbage" * 50)
    wav = [(m, b"garbage" * 50) if m == sample.wav_member(names[-1]) else (m, d) for m, d in wav]
    folder = sample.write(tmp_path_factory.mktemp("shards_archives"), wav=wav)
    extracted = tmp_path_factory.mktemp("shards_extracted")
    for name in (WAV, JSON):
        with tarfile.open(folder / name) as tar:
            tar.extractall(extracted, filter="data")
    return extracted, [str(extracted / sample.wav_member(names[0])), str(extracted / sample.wav_member(names[-1]))]


def test_num_proc_raises_one_message_with_every_problem(two_bad_shards, tmp_path):
    extracted, bad = two_bad_shards
    builder = pop_rok.PopRok(config_name="default", data_dir=str(extracted), cache_dir=str(tmp_path))
    with pytest.raises(pop_rok.PopRokError) as raised:
        builder.download_and_prepare(num_proc=2)
    assert all(path in str(raised.value) for path in bad), str(raised.value)


def test_num_proc_skip_keeps_the_report_in_the_description(two_bad_shards, sample, tmp_path):
    extracted, bad = two_bad_shards
    builder = pop_rok.PopRok(config_name="default", data_dir=str(extracted), cache_dir=str(tmp_path), on_error="skip")
    builder.download_and_prepare(num_proc=2)
    dataset = builder.as_dataset(split=pop_rok.ALL_SPLITS)
    assert_rows(rows_of(dataset), sample, sorted(sample.names)[1:-1])
    assert all(path in dataset.info.description for path in bad), dataset.info.description


# ===================================================================================== interrupted build


def rows_in_cache(cache: Path, at_least: int) -> bool:
    """Whether an unfinished build's Arrow file in ``cache`` holds ``at_least`` bytes."""
    try:
        return any(f.stat().st_size >= at_least for d in cache.rglob("*.incomplete") for f in d.glob("*.arrow"))
    except FileNotFoundError:  # the build renamed its folder as we looked: it finished
        return False


def test_build_killed_half_way_restarts_clean(tmp_path):
    """SIGKILL `pop_rok.py build` once rows of the split are in its cache; the next run starts over and builds it all.

    The test watches the cache folder (no hook in the build) until an unfinished Arrow file holds a loop's bytes.
    """
    archives = tmp_path / "archives"
    manifest = sample_archives.make_sample(archives, loops=40, seed=21, layout="aggregated", compresslevel=1)
    cache = tmp_path / "cache"
    command = ["build", "--data-dir", str(archives), "--cache-dir", str(cache)]
    loop_bytes = min(len(data) for _, data in read_members(archives / WAV))

    stderr = tmp_path / "stderr.txt"
    with open(stderr, "w") as errors:
        build = [sys.executable, str(ROOT / "pop_rok.py"), *command]
        process = subprocess.Popen(build, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=errors)
        try:  # every wait has a timeout: a build that deadlocks fails the test instead of hanging CI
            deadline = time.monotonic() + 300
            while process.poll() is None and not rows_in_cache(cache, loop_bytes) and time.monotonic() < deadline:
                time.sleep(0.01)  # polls the folder: the build has no hook to say when rows land
            running_with_rows = process.poll() is None and rows_in_cache(cache, loop_bytes)
            process.kill()
        finally:
            process.kill()
            process.wait(timeout=60)
    assert running_with_rows, f"the build ended, or wrote no rows within 300 s: {stderr.read_text()}"
    assert process.returncode == -signal.SIGKILL
    incomplete = list(cache.rglob("*.incomplete"))
    assert incomplete, "the interrupted build left no incomplete folder"
    assert any(f.stat().st_size > 0 for d in incomplete for f in d.glob("*.arrow")), "no rows reached the cache"
    assert not list(cache.rglob("dataset_info.json")), "an interrupted build was marked complete"

    # The builder the CLI ran: its dataset name and script hash are the cache path's first and last folders
    # (the hash is read back in case pop_rok.py was edited since).
    def cli_builder(output: Path):
        name, script_hash = output.relative_to(cache).parts[0], output.name.removesuffix(".incomplete")
        return pop_rok.PopRok(
            config_name="default", data_dir=str(archives), cache_dir=str(cache), dataset_name=name, hash=script_hash
        )

    with pytest.raises((FileNotFoundError, pop_rok.PopRokError)):
        cli_builder(incomplete[0]).as_dataset(split=pop_rok.ALL_SPLITS)  # nothing half-built is served

    result = run_cli(*command, cwd=tmp_path, timeout=300)  # the next run, same cache
    assert result.returncode == 0, result.stderr
    assert f"rows: {len(manifest)}" in result.stdout
    [info] = cache.rglob("dataset_info.json")
    assert not Path(f"{info.parent}.incomplete").exists()

    dataset = cli_builder(info.parent).as_dataset(split=pop_rok.ALL_SPLITS)  # every loop is in one split
    assert dataset.num_rows == len(manifest)
    assert sorted(dataset["name"]) == sorted(loop.name for loop in manifest)
    wav_md5 = {Path(name).stem: hashlib.md5(data).hexdigest() for name, data in read_members(archives / WAV)}
    by_name = {loop.name: loop for loop in manifest}
    for row in rows_of(dataset.select_columns(["audio", "name", "bpm", "notes"])):
        loop = by_name[row["name"]]
        assert (row["bpm"], row["notes"]) == (loop.bpm, list(loop.notes))
        assert hashlib.md5(row["audio"]["bytes"]).hexdigest() == wav_md5[loop.name]


def test_cli_build_is_the_cache_the_library_reads(good_archives, sample, tmp_path):
    result = run_cli("build", "--data-dir", str(good_archives), "--cache-dir", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    builder = pop_rok.PopRok(config_name="default", data_dir=str(good_archives), cache_dir=str(tmp_path))
    assert_rows(rows_of(builder.as_dataset(split=pop_rok.ALL_SPLITS)), sample, sample.names)


# ======================================================================== the Zenodo record: --online, verify


@pytest.fixture
def record_server(tmp_path):
    """Serves record documents written into a folder: ``publish(name, bytes)`` returns its URL."""
    folder = tmp_path / "records"
    folder.mkdir()
    with FileServer(folder) as server:

        def publish(name: str, document: bytes) -> str:
            (folder / name).write_bytes(document)
            return f"{server.url}/{name}"

        yield publish


def test_validate_online_against_a_matching_record(good_archives, record_server):
    url = record_server("record.json", record_json(good_archives, "http://127.0.0.1:9/files"))
    result = run_cli("validate", "--online", "--data-dir", str(good_archives), "--record-url", url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert md5_of(good_archives / WAV) in result.stdout and "no problems found" in result.stdout


@pytest.mark.parametrize("field", ["checksum", "size"])
def test_validate_online_names_the_archive_and_both_md5s(field, good_archives, record_server):
    real_md5, real_size = md5_of(good_archives / WAV), os.path.getsize(good_archives / WAV)
    wrong = {"checksum": "md5:" + "0123456789abcdef" * 2} if field == "checksum" else {"size": real_size - 1}
    url = record_server("record.json", record_json(good_archives, "http://127.0.0.1:9/files", {WAV: wrong}))
    result = run_cli("validate", "--online", "--data-dir", str(good_archives), "--record-url", url)
    assert result.returncode == 1, result.stdout + result.stderr
    problem = next(line for line in result.stdout.splitlines() if line.startswith(f"  - {WAV}"))
    assert real_md5 in problem
    if field == "checksum":
        assert "0123456789abcdef" * 2 in problem
    else:
        assert f"{real_size:,}" in problem and f"{real_size - 1:,}" in problem
    assert JSON not in "".join(line for line in result.stdout.splitlines() if line.startswith("  - "))


def test_validate_online_over_base_url(good_archives, record_server):
    with FileServer(good_archives) as server:
        good = record_server("good.json", record_json(good_archives, server.url))
        bad = record_server(
            "bad.json", record_json(good_archives, server.url, {JSON: {"checksum": "md5:" + "f" * 32}})
        )
        assert not validate(base_url=server.url, online=True, record_url=good).problems
        report = validate(base_url=server.url, online=True, record_url=bad)
    assert JSON in report.problems.report() and "f" * 32 in report.problems.report()


def test_validate_online_record_missing_an_archive(good_archives, record_server):
    document = json.loads(record_json(good_archives, "http://127.0.0.1:9/files"))
    document["files"] = [f for f in document["files"] if f["key"] != WAV]
    url = record_server("record.json", json.dumps(document).encode())
    report = validate(data_dir=str(good_archives), online=True, record_url=url)
    assert WAV in report.problems.report()


def test_verify_build_with_a_matching_record(good_archives, sample, record_server, tmp_path):
    with FileServer(good_archives) as server:
        url = record_server("record.json", record_json(good_archives, server.url))
        dataset = pop_rok.load_pop_rok(
            split=pop_rok.ALL_SPLITS, base_url=server.url, verify=True, record_url=url, cache_dir=str(tmp_path)
        )
    assert_rows(rows_of(dataset), sample, sample.names)


@pytest.mark.parametrize("field", ["checksum", "size"])
def test_verify_build_against_a_different_record_fails_and_caches_nothing(
    field, good_archives, sample, record_server, tmp_path
):
    real_size = os.path.getsize(good_archives / WAV)
    wrong = {"checksum": "md5:" + "0" * 32} if field == "checksum" else {"size": real_size + 10}
    cache = tmp_path / "cache"
    with FileServer(good_archives) as server:
        bad = record_server("bad.json", record_json(good_archives, server.url, {WAV: wrong}))
        with pytest.raises(pop_rok.PopRokError) as raised:
            pop_rok.load_pop_rok(
                split=pop_rok.ALL_SPLITS, base_url=server.url, verify=True, record_url=bad, cache_dir=str(cache)
            )
        assert WAV in str(raised.value)
        assert ("0" * 32 if field == "checksum" else str(real_size + 10)) in str(raised.value)
        assert not list(cache.rglob("dataset_info.json")) and not list(cache.rglob("*.arrow"))
        assert not [p for p in cache.rglob(f"{WAV}*") if p.is_file()], "the rejected archive stays in the cache"
        # A rerun trusts nothing of the failed one: it downloads again and checks again.
        with pytest.raises(pop_rok.PopRokError, match=re.escape(WAV)):
            pop_rok.load_pop_rok(
                split=pop_rok.ALL_SPLITS, base_url=server.url, verify=True, record_url=bad, cache_dir=str(cache)
            )
        good = record_server("good.json", record_json(good_archives, server.url))
        sent_before = server.bytes_sent[WAV]
        dataset = pop_rok.load_pop_rok(
            split=pop_rok.ALL_SPLITS, base_url=server.url, verify=True, record_url=good, cache_dir=str(cache)
        )
        assert server.bytes_sent[WAV] - sent_before >= os.path.getsize(good_archives / WAV)
    assert_rows(rows_of(dataset), sample, sample.names)


def test_verify_build_with_an_unreachable_record_raises_poprokerror(good_archives, record_server, tmp_path):
    missing = record_server("present.json", b"{}").replace("present.json", "missing.json")
    with FileServer(good_archives) as server:
        with pytest.raises(pop_rok.PopRokError, match=re.escape(missing)):
            pop_rok.load_pop_rok(
                split=pop_rok.ALL_SPLITS, base_url=server.url, verify=True, record_url=missing, cache_dir=str(tmp_path)
            )


def test_verify_build_from_data_dir_checks_the_local_archives(good_archives, record_server, tmp_path):
    bad = record_server(
        "bad.json", record_json(good_archives, "http://127.0.0.1:9/files", {WAV: {"checksum": "md5:" + "0" * 32}})
    )
    with pytest.raises(pop_rok.PopRokError, match=re.escape(WAV)):
        pop_rok.load_pop_rok(
            split=pop_rok.ALL_SPLITS, data_dir=str(good_archives), verify=True, record_url=bad, cache_dir=str(tmp_path)
        )
