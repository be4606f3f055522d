"""``validate``: walk both archives once, in flat memory, and report every problem the builder would meet."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from poprok.archives.checked_tar import CheckedTarGz
from poprok.archives.download import DownloadError, zenodo_record_files
from poprok.errors import PopRokError, Problems
from poprok.labels.label_set import LabelSet, read_labels
from poprok.labels.shapes import OPTIONAL_LABEL_FIELDS
from poprok.labels.survey import Survey
from poprok.record import ARCHIVES, KEY_MAP, ZENODO_RECORD_API
from poprok.rows import LoopReader, archive_errors_as_problems, archive_sources, source_members


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
        lines += [
            f"  labels found: {self.labels}",
            f"  loops found:  {self.loops}",
            f"  audio:        {self.audio_hours:.3f} hours",
        ]
        lines.append(self.survey.text(self.key_map))
        notes = self.survey.notes()
        lines.append(
            f"{len(notes)} note(s) on what the reader interpreted:" if notes else "nothing had to be interpreted"
        )
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
        labels = read_labels(archive_errors_as_problems(members["json"]))
    except PopRokError as err:  # the WAV archive is still worth checking
        report.problems.add(ARCHIVES["json"], str(err))
        labels = LabelSet(unreadable=True)
    report.labels = len(labels.labels) + len(labels.rejected)
    loops = LoopReader(labels, (*OPTIONAL_LABEL_FIELDS, "extra_labels"))
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
