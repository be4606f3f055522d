"""Every label of the label archive, with the key map, the problems found reading it and the survey of its shapes."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from poprok.errors import PopRokError, Problems
from poprok.labels.general_midi import GM_PERCUSSION
from poprok.labels.names import is_junk, loop_name_of
from poprok.labels.shapes import PITCH_KEY, RECORD_NAME_KEYS, Label, first_key, json_type, label_fields, parse_label
from poprok.labels.survey import Survey
from poprok.record import ARCHIVES, KEY_MAP, KEY_MAP_FIELD


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

    def instrument(self, note: int) -> str | None:
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
        elif isinstance(document, dict) and first_key(label_fields(document), (PITCH_KEY,)) is not None:
            shape, entries = "bare", [(Path(path).stem, document)]
        elif isinstance(document, dict):
            shape, entries = "keyed", list(document.items())
        elif isinstance(document, list):
            shape, entries = "records", _records(document, path, problems)
        else:
            problems.add(
                path, f"expected an object keyed by loop name or a list of records, got a {json_type(document)}"
            )
            continue
        survey.documents[shape] += 1
        for key, value in entries:
            _add_label(found, key, value, path)
    for name in found.rejected:
        found.labels.pop(name, None)
    for label in found.labels.values():
        survey.outside_key_map.update(n for n in label.notes if n not in found.key_map and n in GM_PERCUSSION)
    if found.json_files == 0:
        raise PopRokError(
            "the label archive holds no JSON file: is it pop_rok_drm_id_001_json.tar.gz? Re-download it."
        )
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
        key = first_key(label_fields(record), RECORD_NAME_KEYS) if isinstance(record, dict) else None
        if key is None or not isinstance(record[key], str):
            problems.add(
                path, f"record {index} names no loop (in a 'name', 'file', 'filename' or 'id' field): {record!r:.200}"
            )
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
        if not (
            isinstance(entry, dict) and isinstance(entry.get("note"), int) and isinstance(entry.get("label"), str)
        ):
            raise PopRokError(f"{KEY_MAP_FIELD} entry {entry!r} is not {{'note': int, 'label': str}}")
        key_map[entry["note"]] = entry["label"]
    return key_map
