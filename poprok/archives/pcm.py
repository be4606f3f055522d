"""16-bit samples from a stored WAV or FLAC file's bytes, as stored: WAV read in place, FLAC decoded once.

What windows are cut from (``bar_windows``, the training feed): never re-quantised, so a file of other samples
(24-bit, float) is refused by name rather than cut down. FLAC is decoded by libFLAC (soundfile), which checks
every frame's CRC: the fastest bit-exact decoder measured.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import soundfile as sf

from poprok.archives.wav import WavError, read_wav_info


class PcmError(ValueError):
    """The bytes are not a whole, readable WAV or FLAC file of 16-bit samples."""


@dataclass(frozen=True)
class Pcm:
    kind: str  # "WAV" or "FLAC"
    sample_rate: int
    samples: np.ndarray  # (frames, channels) int16: a view of a WAV's bytes, or a FLAC's decoded samples

    @property
    def channels(self) -> int:
        return self.samples.shape[1]


def read_pcm16(data) -> Pcm:
    """The 16-bit samples of ``data``, a WAV or FLAC file's bytes (or a buffer of them); PcmError if unreadable."""
    head = bytes(data[:4])
    if head == b"RIFF":
        return _wav(memoryview(data))
    if head == b"fLaC":
        return _flac(data)
    raise PcmError(f"its audio is neither WAV nor FLAC (it starts with {head!r})")


def _wav(data: memoryview) -> Pcm:
    try:
        info = read_wav_info(data)
        return Pcm("WAV", info.sample_rate, info.samples(data))
    except WavError as error:
        raise PcmError(f"unreadable WAV: {error}") from error


def _flac(data) -> Pcm:
    try:
        with sf.SoundFile(io.BytesIO(data)) as flac:
            if flac.subtype != "PCM_16":
                raise PcmError(f"FLAC of {flac.subtype} samples: only 16-bit samples are read")
            declared, rate = flac.frames, flac.samplerate
            samples = flac.read(dtype="int16", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as error:
        raise PcmError(f"corrupt or unreadable FLAC: {error}") from error
    if len(samples) != declared:
        raise PcmError(f"corrupt FLAC: decoded {len(samples)} of the {declared} samples it declares")
    return Pcm("FLAC", rate, samples)
