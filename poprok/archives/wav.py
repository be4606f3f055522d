"""PCM WAV files: their format read from the header without decoding, and canonical 16-bit files written.

A dataset build needs each loop's duration and format for thousands of multi-megabyte files;
parsing the RIFF chunks costs microseconds where decoding costs milliseconds. The check that
the ``data`` chunk is complete catches truncated files without touching the samples.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

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
    data_offset: int = 0  # where the samples start in the file's bytes

    def samples(self, data: bytes) -> np.ndarray:
        """The samples of ``data`` (this file's bytes) as a (frames, channels) view, never copied or decoded."""
        if self.bits_per_sample != 16:
            raise WavError(f"{self.bits_per_sample}-bit samples: only 16-bit PCM is read as samples")
        count = self.num_frames * self.channels
        return np.frombuffer(data, dtype="<i2", count=count, offset=self.data_offset).reshape(-1, self.channels)

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
            return WavInfo(rate, channels, bits, size // block_align, body)
        pos = body + size + (size & 1)  # chunks are padded to even sizes
    raise WavError("no 'data' chunk" if fmt else "no 'fmt ' chunk")


def wav_bytes(audio_int16: np.ndarray, sample_rate: int) -> bytes:
    """Canonical PCM16 WAV (44-byte header) for a (n,) or (n, channels) int16 array."""
    if audio_int16.dtype != np.int16:
        raise TypeError(f"expected int16 audio, got {audio_int16.dtype}")
    channels = 1 if audio_int16.ndim == 1 else audio_int16.shape[1]
    data = np.ascontiguousarray(audio_int16, dtype="<i2").tobytes()
    header = struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        36 + len(data),
        b"WAVE",
        b"fmt ",
        16,
        1,
        channels,
        sample_rate,
        sample_rate * channels * 2,
        channels * 2,
        16,
        b"data",
        len(data),
    )
    return header + data
