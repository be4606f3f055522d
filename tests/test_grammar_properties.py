"""The file-name and label grammar on any input: a parsed value or a PopRokError that names the input.

Never a bare KeyError / IndexError / TypeError / ValueError from inside the parser: the builder turns a
PopRokError into a problem naming the file, and anything else into a crash.
"""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import pop_rok
from poprok.labels.label_set import LabelSet, read_labels
from poprok.labels.names import LoopName, is_junk, parse_loop_name
from poprok.labels.shapes import Label, parse_label
from poprok.record import KEY_MAP_FIELD

PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

CANONICAL = "{bpm}bpm_pop_rok_drm_id_001_{track:04d}"

# ------------------------------------------------------------------------------------------- loop names


@PROPERTY
@given(bpm=st.integers(10, 999), track=st.integers(0, 9999))
def test_valid_names_round_trip(bpm, track):
    name = CANONICAL.format(bpm=bpm, track=track)
    loop = parse_loop_name(name)
    assert loop == LoopName(name=name, bpm=bpm, genre="pop", subgenre="rock", track=track)


def _mutations(name: str):
    """A valid name with one character inserted, deleted or replaced."""
    return st.tuples(st.integers(0, len(name)), st.sampled_from(["insert", "delete", "replace"]), st.characters()).map(
        lambda m: {
            "insert": name[: m[0]] + m[2] + name[m[0] :],
            "delete": name[: m[0]] + name[m[0] + 1 :],
            "replace": name[: m[0]] + m[2] + name[m[0] + 1 :],
        }[m[1]]
    )


VALID_NAMES = st.builds(
    lambda bpm, track: CANONICAL.format(bpm=bpm, track=track), st.integers(10, 999), st.integers(0, 9999)
)
NAME_LIKE = st.one_of(
    st.text(),
    st.text(alphabet="0123456789bpm_orkdi ."),
    st.from_regex(r"\d{1,4}bpm_(pop|POP)_rok_drm_id_\d{2,4}_\d{3,5}(\.wav)?", fullmatch=True),
    VALID_NAMES.flatmap(_mutations),
)
NOT_TEXT = st.one_of(st.none(), st.integers(), st.binary(), st.lists(st.text(), max_size=2))


@PROPERTY
@given(NAME_LIKE)
@example("")
@example("100bpm_pop_rok_drm_id_001_0039.wav")
@example("100bpm_pop_rok_drm_id_001_0039\n")
def test_any_text_parses_consistently_or_is_named_in_the_error(text):
    try:
        loop = parse_loop_name(text)
    except pop_rok.PopRokError as err:
        assert repr(text) in str(err)
        return
    # Whatever is accepted is read from the text itself, field by field.
    bpm_text, rest = text.split("bpm_", 1)
    assert loop.name == text
    assert loop.bpm == int(bpm_text) and loop.track == int(rest[-4:])
    assert (loop.genre, loop.subgenre) == ("pop", "rock")


@PROPERTY
@given(NOT_TEXT)
def test_non_text_is_a_poprokerror(value):
    with pytest.raises(pop_rok.PopRokError) as raised:
        parse_loop_name(value)
    assert repr(value) in str(raised.value)


@given(NAME_LIKE)
@example("١٠٠bpm_pop_rok_drm_id_001_0039")
@example("00bpm_pop_rok_drm_id_001_0039")
@example("099bpm_pop_rok_drm_id_001_0039")
@settings(max_examples=50, deadline=None)
def test_only_the_canonical_spelling_is_accepted(text):
    try:
        loop = parse_loop_name(text)
    except pop_rok.PopRokError:
        return
    assert loop.bpm > 0
    assert CANONICAL.format(bpm=loop.bpm, track=loop.track) == text


# ----------------------------------------------------------------------------------------------- labels

JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(),
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=20,
)
PITCHES = st.one_of(
    st.lists(st.integers(0, 127), max_size=8), st.lists(st.integers() | JSON_SCALARS, max_size=5), JSON_VALUES
)
TEMPOS = st.one_of(
    st.integers(-5, 300),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["100", "nan", "inf", "-1", "1e400", "", "fast"]),
    JSON_VALUES,
)
KEYS = st.sampled_from(["pitch", "bpm", "tempo", "style", "time_signature", "timesig", "time_sig", "velocity", ""])
LABEL_LIKE = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "pitch": PITCHES,
            "bpm": TEMPOS,
            "tempo": TEMPOS,
            "style": JSON_VALUES,
            "time_signature": JSON_VALUES,
            "timesig": JSON_VALUES,
            "extra": JSON_VALUES,
        },
    ),
    st.dictionaries(KEYS | st.text(max_size=6), JSON_VALUES, max_size=6),
    JSON_VALUES,
)


def _check_label(label: Label, value) -> None:
    """Whatever is accepted keeps what the label said: its notes in order, and every key feeding no column."""
    pitch_key = next(k for k in value if k.lower() == "pitch")
    assert len(label.pitch) == len(value[pitch_key])
    assert all(type(n) is int and 0 <= n <= 127 for n in label.pitch)
    assert label.notes == tuple(sorted(set(label.pitch)))
    assert label.bpm is None or (math.isfinite(label.bpm) and label.bpm > 0)
    assert all(v is None or isinstance(v, str) for v in label.optional.values())
    assert (pitch_key in label.extra) == (
        label.pitch != tuple(value[pitch_key]) or not all(type(n) is int for n in value[pitch_key])
    )
    kept = set(label.extra) | {pitch_key}
    assert all(key in kept or key.lower() in ("style", "time_signature", "timesig", "time_sig") for key in value)
    assert all(label.extra[key] is value[key] for key in label.extra)


@PROPERTY
@given(name=st.text(max_size=40), value=LABEL_LIKE)
@example(name="100bpm_pop_rok_drm_id_001_0039", value={"pitch": [36, 38], "bpm": 10**400})
@example(name="x", value={"pitch": [True]})
@example(name="x", value={"pitch": [36], "tempo": "nan"})
@example(name="x", value={"pitch": [36], "bpm": None})
def test_parse_label_returns_a_label_or_names_the_loop(name, value):
    try:
        label = parse_label(name, value, "x.json")
    except pop_rok.PopRokError as err:
        assert repr(name) in str(err) and "x.json" in str(err)
        return
    _check_label(label, value)
    assert label.source == "x.json"


def _label_document(names, values):
    return dict(zip(names, values))


LOOP_NAMES = st.one_of(VALID_NAMES, st.text(max_size=12))
DOCUMENTS = st.one_of(
    JSON_VALUES,
    st.builds(_label_document, st.lists(LOOP_NAMES, max_size=4), st.lists(LABEL_LIKE, max_size=4)),
    LABEL_LIKE,
    st.fixed_dictionaries(
        {
            KEY_MAP_FIELD: st.one_of(
                JSON_VALUES, st.lists(st.fixed_dictionaries({"note": JSON_SCALARS, "label": JSON_SCALARS}), max_size=4)
            )
        }
    ),
)
RAW_DOCUMENTS = st.one_of(
    DOCUMENTS.map(lambda d: json.dumps(d).encode()),
    DOCUMENTS.map(lambda d: json.dumps(d).encode("utf-16")),
    st.binary(max_size=64),
    st.text(max_size=64).map(str.encode),
    st.sampled_from([b"", b"\xef\xbb\xbf{}", b"NaN", b'{"a": NaN}', b"[1, 2", b"\xff\xfe", b"{" * 3]),
)
PATHS = st.sampled_from(
    ["labels/a.json", "b.JSON", "json/100bpm_pop_rok_drm_id_001_0039.json", "notes.txt", "._c.json", "__MACOSX/d.json"]
)


@PROPERTY
@given(st.lists(st.tuples(PATHS, RAW_DOCUMENTS), min_size=1, max_size=4))
def test_read_labels_returns_a_labelset_or_a_poprokerror(members):
    try:
        found = read_labels(members)
    except pop_rok.PopRokError as err:
        # The only whole-archive failure: no JSON file at all.
        assert not any(path.lower().endswith(".json") and not is_junk(path) for path, _ in members)
        assert "JSON" in str(err)
        return
    assert isinstance(found, LabelSet)
    json_paths = {path for path, _ in members if path.lower().endswith(".json") and not is_junk(path)}
    assert found.json_files == sum(1 for path, _ in members if path in json_paths)
    assert all(file in json_paths for file, _ in found.problems.entries)
    assert all(isinstance(label, Label) and label.source in json_paths for label in found.labels.values())
    assert not set(found.labels) & found.rejected
    assert all(isinstance(note, int) and isinstance(name, str) for note, name in found.key_map.items())


def test_read_labels_deeply_nested_json_is_a_problem():
    found = read_labels([("deep.json", b"[" * 100_000 + b"]" * 100_000)])
    assert [file for file, _ in found.problems.entries] == ["deep.json"]
