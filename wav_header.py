"""Read a PCM WAV file's format from its header, without decoding the samples.

A dataset build needs each loop's duration and format for thousands of multi-megabyte files;
parsing the RIFF chunks costs microseconds where decoding costs milliseconds. The check that
the ``data`` chunk is complete catches truncated files without touching the samples.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

_PCM = 0x0001
_EXTENSIBLE = 0xFFFE


class WavError(ValueError):
    """The bytes are not a complete, readable PCM WAV file."""


@dataclass(frozen=True)
class WavInfo:
    sample_rate: int
    channels: int
    bits_per_sample: int
    num_frames: int

    @property
    def duration(self) -> float:
        return self.num_frames / self.sample_rate


def read_wav_info(data: bytes) -> WavInfo:
    """Parse the RIFF chunks of ``data`` and return its format; raise WavError if unreadable."""
    if len(data) < 12 or data[0:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise WavError("not a RIFF/WAVE file")
    fmt = None
    pos = 12
    while pos + 8 <= len(data):
        chunk_id, size = struct.unpack_from("<4sI", data, pos)
        body = pos + 8
        if chunk_id == b"fmt ":
            if size < 16 or body + size > len(data):
                raise WavError("truncated 'fmt ' chunk")
            tag, channels, rate, _, block_align, bits = struct.unpack_from("<HHIIHH", data, body)
            if tag == _EXTENSIBLE and size >= 40:
                tag = struct.unpack_from("<H", data, body + 24)[0]  # first two bytes of the sub-format GUID
            if tag != _PCM:
                raise WavError(f"not PCM (format tag 0x{tag:04x})")
            if channels < 1 or rate < 1 or block_align != channels * ((bits + 7) // 8):
                raise WavError(f"inconsistent 'fmt ' chunk ({channels} ch, {rate} Hz, {bits} bit)")
            fmt = (rate, channels, bits, block_align)
        elif chunk_id == b"data":
            if fmt is None:
                raise WavError("'data' chunk before 'fmt ' chunk")
            available = len(data) - body
            if size > available:
                raise WavError(f"truncated: the 'data' chunk declares {size} bytes, the file holds {available}")
            rate, channels, bits, block_align = fmt
            if size % block_align:
                raise WavError(f"'data' chunk of {size} bytes is not a whole number of {block_align}-byte frames")
            return WavInfo(rate, channels, bits, size // block_align)
        pos = body + size + (size & 1)  # chunks are padded to even sizes
    raise WavError("no 'data' chunk" if fmt else "no 'fmt ' chunk")
