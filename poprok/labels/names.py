"""The loop-name grammar (``{bpm}bpm_pop_rok_drm_id_001_{track:04d}``) and which archive members are loops at all."""

from __future__ import annotations

import re
from dataclasses import dataclass

from poprok.errors import PopRokError
from poprok.splits import FOLD_SPLITS, track_fold

# {bpm}bpm_{genre}_{subgenre}_drm_id_001_{track:04d}: pop = genre, rok = rock, drm = drums, id 001.
LOOP_NAME = re.compile(r"(?P<bpm>[1-9][0-9]{1,2})bpm_(?P<genre>pop)_(?P<subgenre>rok)_drm_id_001_(?P<track>[0-9]{4})")
GENRES = {"pop": "pop"}
SUBGENRES = {"rok": "rock"}


@dataclass(frozen=True)
class LoopName:
    name: str
    bpm: int
    genre: str
    subgenre: str
    track: int

    @property
    def fold(self) -> int:
        return track_fold(self.track)


def parse_loop_name(name: str) -> LoopName:
    """Split a loop's base name (``100bpm_pop_rok_drm_id_001_0039``) into its fields."""
    match = LOOP_NAME.fullmatch(name) if isinstance(name, str) else None
    if match is None:
        raise PopRokError(
            f"{name!r} is not a POP-ROK loop name ({{bpm}}bpm_pop_rok_drm_id_001_{{track:04d}}, "
            "e.g. 100bpm_pop_rok_drm_id_001_0039)"
        )
    return LoopName(
        name=name,
        bpm=int(match["bpm"]),
        genre=GENRES[match["genre"]],
        subgenre=SUBGENRES[match["subgenre"]],
        track=int(match["track"]),
    )


def is_junk(path: str) -> bool:
    """macOS leftovers and hidden files: never data (``._*`` AppleDouble, ``.DS_Store``, ``__MACOSX/``)."""
    parts = path.replace("\\", "/").split("/")
    return "__MACOSX" in parts or parts[-1].startswith(".")


def loop_name_of(key: str) -> tuple[str, str | None]:
    """The loop name a label key or record names (base name, no extension), and how it was written if not bare."""
    base = key.replace("\\", "/").rsplit("/", 1)[-1]
    stem, dot, extension = base.rpartition(".")
    if dot and extension.lower() in ("wav", "json"):
        base = stem
    if base == key:
        return key, None
    return base, "with a folder" if "/" in key.replace("\\", "/") else f"with a .{extension.lower()} suffix"


def split_of(name: str) -> str:
    """The split of a loop's name; a name off the grammar goes with train, whose pass reports it."""
    try:
        return FOLD_SPLITS[parse_loop_name(name).fold]
    except PopRokError:
        return "train"
