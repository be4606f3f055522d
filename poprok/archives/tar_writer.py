"""Write a gzip'd tar member by member from bytes, the way archivers on laptops pack folders.

Used to make POP-ROK-shaped sample archives for tests, demos and benchmarks: folder entries are
declared as real archives have them, and ``add_macos_junk`` adds what Finder's archiver leaves behind.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

MTIME = 1730000000  # fixed, so the same sample is the same archive


class TarGzWriter:
    """A gzip'd tar written member by member from bytes, folders declared as a real archive has them."""

    def __init__(self, path: Path, compresslevel: int = 6):
        self._tar = tarfile.open(path, "w:gz", compresslevel=compresslevel, format=tarfile.PAX_FORMAT)
        self._folders: set[str] = set()
        self._ds_store_folders: set[str] = set()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._tar.close()

    def add(self, path: str, data: bytes) -> None:
        parts = path.split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            folder = "/".join(parts[:depth])
            if folder not in self._folders:
                self._folders.add(folder)
                info = tarfile.TarInfo(folder)
                info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, MTIME
                self._tar.addfile(info)
        info = tarfile.TarInfo(path)
        info.size, info.mode, info.mtime = len(data), 0o644, MTIME
        self._tar.addfile(info, io.BytesIO(data))

    def add_macos_junk(self, path: str) -> None:
        """The AppleDouble twin, .DS_Store and __MACOSX copy that Finder's archiver adds."""
        folder, _, base = path.rpartition("/")
        prefix = f"{folder}/" if folder else ""
        apple_double = b"\x00\x05\x16\x07\x00\x02\x00\x00" + b"Mac OS X        " + bytes(58)
        self.add(f"{prefix}._{base}", apple_double)
        self.add(f"__MACOSX/{prefix}._{base}", apple_double)
        if prefix not in self._ds_store_folders:
            self._ds_store_folders.add(prefix)
            self.add(f"{prefix}.DS_Store", b"\x00\x00\x00\x01Bud1" + bytes(100))
