"""The first-contact survey: what the archives hold as first met, every shape the reader had to interpret, counted."""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from poprok.analysis import CLIPPED_AT_LEAST, OFF_GRID_FIT, SILENT_LUFS, Listening, find_facts
from poprok.grid import BEATS_PER_BAR, frame_at
from poprok.labels.general_midi import GM_PERCUSSION
from poprok.labels.names import is_junk
from poprok.labels.shapes import Label
from poprok.record import BARS_PER_LOOP, SAMPLE_RATE


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
    heard: dict = field(default_factory=dict)  # loop -> what listening found (Listening.facts()), for audio facts

    _COUNTERS = (
        "files",
        "documents",
        "label_keys",
        "readings",
        "names",
        "pitch_lengths",
        "outside_key_map",
        "tracks",
        "durations",
    )

    def add_file(self, archive: str, path: str) -> None:
        folder, _, base = path.replace("\\", "/").rpartition("/")
        extension = "macOS junk" if is_junk(path) else (Path(base).suffix.lower() or "no extension")
        self.files[(archive, folder or ".", extension)] += 1

    def add_label(self, label: Label, named: str | None) -> None:
        self.readings.update(label.readings)
        if named:
            self.names[named] += 1
        self.pitch_lengths[len(label.pitch)] += 1
        self.repeating_pitch += len(set(label.pitch)) < len(label.pitch)

    def add_duration(self, frames: int, bpm: int) -> None:
        off = frames - frame_at(BARS_PER_LOOP * BEATS_PER_BAR, bpm, SAMPLE_RATE)
        kind = "exact" if off == 0 else "longer" if off > 0 else "shorter"
        self.durations[kind] += 1
        if off:
            self.farthest[kind] = max(self.farthest[kind], abs(off))

    def add_listening(self, name: str, listening: Listening) -> None:
        self.heard[name] = listening.facts()

    def merge(self, state: dict) -> None:
        """Add another job's ``state()``."""
        self.heard.update(state["heard"])
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
            "heard": self.heard,
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
            "pitch_lengths": {"min": lengths[0], "median": statistics.median(lengths), "max": lengths[-1]}
            if lengths
            else None,
            "pitch_lists_repeating_a_note": self.repeating_pitch,
            "loop_names_in_labels": dict(sorted(self.names.items())),
            "notes_outside_key_map": {
                str(note): {"name": GM_PERCUSSION[note], "loops": loops}
                for note, loops in sorted(self.outside_key_map.items())
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
            "audio_facts": find_facts({name: Listening.from_facts(facts) for name, facts in self.heard.items()})
            if self.heard
            else None,
        }

    def notes(self) -> list[str]:
        """What the reader had to interpret or should be known, one short phrase each."""
        notes = [
            f"{count} label document(s) {shape}"
            for shape, count in sorted(self.documents.items())
            if shape not in ("keyed", "key map")
        ]
        notes += [
            f"{count} {what} read as {how}"
            for (what, how), count in sorted(self.readings.items())
            if how not in ("integers", "BPM")
        ]
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
        lines.append(
            "  label keys: " + "; ".join(f"{key} ({_counts(kinds)})" for key, kinds in report["label_keys"].items())
        )
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
        lines.append(
            "  notes outside the key map: "
            + ("; ".join(f"{n} {v['name']} ({v['loops']} loops)" for n, v in outside.items()) or "none")
        )
        shared = report["tracks_shared_by_several_loops"]
        first = ", ".join(f"{track}: {loops} loops" for track, loops in list(shared.items())[:10]) + (
            ", ..." if len(shared) > 10 else ""
        )
        lines.append(f"  tracks shared by several loops: {len(shared)}" + (f" ({first})" if shared else ""))
        durations = report["durations_vs_8_bars"]
        if sum(durations[kind] for kind in ("exact", "longer", "shorter")):
            lines.append(
                f"  durations against 8 bars at the file name's BPM: {durations['exact']} exact to the sample, "
                f"{durations['longer']} longer (by up to {durations['longest_overhang_ms']} ms), "
                f"{durations['shorter']} shorter (by up to {durations['largest_shortfall_ms']} ms)"
            )
        if report["audio_facts"]:
            lines += audio_facts_text(report["audio_facts"])
        return "\n".join(lines)


def _key(key):
    """A Counter key back from JSON: tuples were lists."""
    return tuple(key) if isinstance(key, list) else key


def _counts(counts: dict) -> str:
    return "; ".join(f"{count} {name}" for name, count in counts.items()) or "none"


def audio_facts_text(facts: dict) -> list[str]:
    """The audio facts of ``find_facts``, for people: facts of an uncurated dataset, never problems."""

    def names(kind: str) -> str:
        listed = facts[kind]
        return f"{len(listed)}" + (f" ({', '.join(listed[:5])}{', ...' if len(listed) > 5 else ''})" if listed else "")

    groups = facts["patterns"]
    spread = ", ".join(f"{count} of {size}" for size, count in sorted(Counter(groups["sizes"]).items(), reverse=True))
    duplicates = "; ".join(" = ".join(group) for group in facts["duplicates"][:3])
    return [
        "  audio facts (from listening to every loop; none is a problem):",
        f"    exact duplicates (identical PCM): {len(facts['duplicates'])} group(s)"
        + (f" ({duplicates})" if duplicates else ""),
        f"    clipped (>= {CLIPPED_AT_LEAST} samples at full scale): {names('clipped')}",
        f"    silent (below {SILENT_LUFS:g} LUFS, or no loudness at all): {names('silent')}",
        f"    off their grid (grid_fit < {OFF_GRID_FIT:g}): {names('off_grid')}",
        f"    unplaced (silent, off their grid or short of their bars; each its own group): {names('unplaced')}",
        f"    pattern groups: {groups['count']}, largest {groups['largest']} loop(s); sizes: {spread or 'none'}",
    ]
