"""The label grammar: every plausible shape of one loop's label, read into one normalised ``Label``.

Nobody here has seen the real label archive: every plausible shape is read, each reading is counted in the
first-contact report (``Survey``), and only what makes a row wrong is a problem.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from poprok.errors import PopRokError

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


@dataclass(frozen=True)
class Label:
    """One loop's label, normalised, with everything it said: two labels are equal when they say the same."""

    pitch: tuple[int, ...]  # as given: order and repeats kept
    bpm: float | None  # the tempo the label states, in BPM; None where it states none we can read
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


def label_fields(value: dict) -> dict[str, list[str]]:
    """Lower-cased key -> the label's keys that spell it (``Pitch``, ``PITCH``), in order."""
    fields: dict[str, list[str]] = {}
    for key in value:
        fields.setdefault(str(key).lower(), []).append(key)
    return fields


def first_key(fields: dict[str, list[str]], aliases: Iterable[str]) -> str | None:
    return next((key for alias in aliases for key in fields.get(alias, [])), None)


def _midi_note(value) -> int | None:
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
            key = first_key(label_fields(item), NOTE_EVENT_KEYS)
            note = _midi_note(item[key]) if key is not None and not isinstance(item[key], dict) else None
            kinds.add("note events")
        else:
            note = _midi_note(item)
            kinds.add({int: "integers", float: "integral floats", str: "digit strings"}.get(type(item), "other"))
        if note is None:
            raise ValueError(f"'pitch' must be a list of MIDI note numbers (0-127), got {item!r} in {value!r}")
        notes.append(note)
    return tuple(notes), " and ".join(sorted(kinds)) or "an empty list"


def _tempo_scalar(value) -> tuple[float, bool] | None:
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


def _tempo_entry(entry) -> tuple[tuple[float, bool] | None, str]:
    """One tempo that stands alone or in a tempo map: a number, text, ``[time, bpm]`` or an object."""
    if isinstance(entry, dict):
        key = first_key(label_fields(entry), TEMPO_OBJECT_KEYS)
        return (None if key is None else _tempo_scalar(entry[key])), "objects"
    if isinstance(entry, list) and len(entry) == 2:
        return _tempo_scalar(entry[1]), "[time, bpm] pairs"
    if isinstance(entry, str):
        return _tempo_scalar(entry), "numeric text" if re.fullmatch(r"[0-9.]+", entry.strip()) else "text with a unit"
    return _tempo_scalar(entry), "number"


def read_tempo(value) -> tuple[float | None, str]:
    """A label's tempo in BPM and how it was read; (None, how) when its shape says nothing we can read.

    A list is a tempo map. ValueError for a tempo that is wrong, not merely unfamiliar: one that is not
    positive, or a map whose tempi differ.
    """
    readings = [_tempo_entry(entry) for entry in value] if isinstance(value, list) and value else [_tempo_entry(value)]
    if any(reading is None for reading, _ in readings):
        return None, f"not read: {json_type(value)}"
    tempi = sorted({round(bpm, 6) for (bpm, _), _ in readings})
    if len(tempi) > 1:
        raise ValueError(
            f"the tempo map changes tempo ({', '.join(f'{t:g}' for t in tempi)} BPM): the loop is not on one grid"
        )
    (bpm, microseconds), kind = readings[0]
    how = "microseconds per quarter note" if microseconds else "BPM"
    if isinstance(value, list):
        return bpm, f"tempo map of {'numbers' if kind == 'number' else kind}, {how}"
    return bpm, how if kind == "number" else f"{how}, {'an object' if kind == 'objects' else kind}"


def label_text(value) -> str | None:
    """A label value for a string column: text as it is, null as null, anything else as JSON (never a repr)."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True)


def parse_label(name: str, value, source: str) -> Label:
    """Check one loop's label object (``{"pitch": [36, 38, ...], "bpm": 100, ...}``, field names in any case)."""
    where = f"{source}: label {name!r}"
    if not isinstance(value, dict):
        raise PopRokError(f"{where} is a {json_type(value)}, not an object with 'pitch'")
    fields = label_fields(value)
    pitch_key = first_key(fields, (PITCH_KEY,))
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
        key = first_key(fields, aliases)
        if key is not None:
            optional[column] = (key, label_text(value[key]))
    # Kept as given: every key that feeds no column, and `pitch` when its form had to be interpreted.
    feeding = {key for key, _ in optional.values()} | (
        {pitch_key} if pitch_shape in ("integers", "an empty list") else set()
    )
    extra = {key: item for key, item in value.items() if key not in feeding}
    return Label(
        pitch=pitch,
        bpm=stated[0][1] if stated else None,
        optional={column: text for column, (_, text) in optional.items()},
        extra=extra,
        source=source,
        readings=tuple(readings),
    )
