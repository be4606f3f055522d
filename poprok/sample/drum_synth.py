"""Render grid-quantised drum loops from General MIDI percussion notes.

Generic machinery for synthetic POP-ROK-like test data: it turns a set of GM
note numbers and a tempo into stereo PCM16 audio plus the exact hit times, so
tests and benchmarks can check annotations against audio. It knows nothing
about file names or archives; the dataset tooling above it does that.

Loops are exactly ``bars`` bars of 4/4 on a 16th-note grid. Voice tails that
run past the end of the loop are cut (not wrapped), so every file starts in
silence apart from the noise floor and its first hit at t=0.
"""

from __future__ import annotations

import functools

import numpy as np

from poprok.grid import BEATS_PER_BAR, STEPS_PER_BEAT, frame_at
from poprok.record import SAMPLE_RATE

# The General MIDI percussion notes this module has a voice for.
KICK, RIMSHOT, SNARE = 36, 37, 38
CLOSED_HAT, PEDAL_HAT, OPEN_HAT = 42, 44, 46
RIDE, RIDE_BELL = 51, 53
CRASH, CHINA, SPLASH = 49, 52, 55
CRASHES = (CRASH, SPLASH, CHINA)
# Preference order for the hand that keeps 8th-note time.
TIMEKEEPERS = (CLOSED_HAT, RIDE, OPEN_HAT, PEDAL_HAT, RIDE_BELL, *CRASHES)
NOTES = (KICK, RIMSHOT, SNARE, CLOSED_HAT, PEDAL_HAT, OPEN_HAT, CRASH, RIDE, CHINA, RIDE_BELL, SPLASH)

# Stereo position per voice, -1 (left) .. +1 (right): enough to make the
# channels differ the way a panned kit does.
PAN = {36: 0.0, 37: 0.1, 38: 0.05, 42: -0.35, 44: -0.3, 46: -0.35, 49: -0.5, 51: 0.4, 52: 0.6, 53: 0.4, 55: -0.2}

PEAK_DBFS = -1.0
NOISE_FLOOR_LSB = 24  # as loud as uniform +-24 LSB (about -67 dBFS RMS): room tone/hiss
# Room tone is pink-to-brown, not white: a one-pole low-pass shapes the floor. FLAC's predictor then sees
# it as it sees a recording's floor, while gzip, which models no spectrum, keeps as many bytes as before.
NOISE_FLOOR_POLE = 0.98
ROOM_WET = 0.25


def noise_floor(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Low-passed (one pole at NOISE_FLOOR_POLE) Gaussian noise, int16, as loud as uniform +-NOISE_FLOOR_LSB."""
    size = 1 << (shape[0] - 1).bit_length()  # a power of two: an FFT of a loop's length can be 20x slower
    white = np.fft.rfft(rng.standard_normal((size, *shape[1:])), axis=0)
    omega = np.fft.rfftfreq(size) * 2 * np.pi
    response = (1 - NOISE_FLOOR_POLE * np.exp(-1j * omega)).reshape(-1, *[1] * (len(shape) - 1))
    tone = np.fft.irfft(white / response, size, axis=0)[: shape[0]]
    tone *= NOISE_FLOOR_LSB / np.sqrt(3) / max(tone.std(), 1e-12)
    return np.rint(tone).astype(np.int16)


def _time(sr: int, seconds: float) -> np.ndarray:
    return np.arange(int(seconds * sr), dtype=np.float64) / sr


def _band(x: np.ndarray, sr: int, low: float = 0.0, high: float = np.inf) -> np.ndarray:
    """Brick-wall FFT band-pass; fine for the stationary sources it is used on
    (envelopes are applied afterwards) and keeps scipy out of the import."""
    spectrum = np.fft.rfft(x)
    freqs = np.fft.rfftfreq(len(x), 1 / sr)
    spectrum[(freqs < low) | (freqs > high)] = 0
    return np.fft.irfft(spectrum, len(x))


def _convolve(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    n = len(x) + len(kernel) - 1
    n_fft = 1 << (n - 1).bit_length()
    return np.fft.irfft(np.fft.rfft(x, n_fft) * np.fft.rfft(kernel, n_fft), n_fft)[:n]


def _metal(t: np.ndarray, scale: float) -> np.ndarray:
    """Six detuned square waves (the TR-808 cymbal trick): inharmonic shimmer."""
    freqs = np.array([205.3, 304.4, 369.6, 522.7, 540.0, 800.0]) * scale
    return np.sign(np.sin(2 * np.pi * freqs[:, None] * t)).sum(axis=0) / 6


def _finish(x: np.ndarray, level: float) -> np.ndarray:
    """Fade the last 10% so cut-off tails don't click; set the voice's level."""
    fade = max(len(x) // 10, 1)
    x = x.copy()
    x[-fade:] *= np.linspace(1.0, 0.0, fade)
    return (x * (level / np.abs(x).max())).astype(np.float32)


def _synthesise(note: int, sr: int) -> np.ndarray:
    rng = np.random.default_rng(note)  # fixed per note: voices never change

    def noise(t):
        return rng.uniform(-1.0, 1.0, len(t))

    if note == KICK:
        t = _time(sr, 0.5)
        freq = 45 + 105 * np.exp(-t / 0.04)  # pitch drops 150 -> 45 Hz
        body = np.sin(2 * np.pi * np.cumsum(freq) / sr) * np.exp(-t / 0.16)
        click = _band(noise(t), sr, high=4000) * np.exp(-t / 0.004)
        return _finish(body + 0.5 * click, 1.0)
    if note == RIMSHOT:
        t = _time(sr, 0.15)
        tone = np.sin(2 * np.pi * 1750 * t) + 0.6 * np.sin(2 * np.pi * 520 * t)
        crack = _band(noise(t), sr, 2000)
        return _finish(tone * np.exp(-t / 0.015) + crack * np.exp(-t / 0.006), 0.6)
    if note == SNARE:
        t = _time(sr, 0.35)
        tone = np.sin(2 * np.pi * 185 * t) + 0.5 * np.sin(2 * np.pi * 330 * t)
        wires = _band(noise(t), sr, 1500, 9000)
        return _finish(0.7 * tone * np.exp(-t / 0.05) + wires * np.exp(-t / 0.08), 0.85)
    if note in (CLOSED_HAT, PEDAL_HAT, OPEN_HAT):
        decay, seconds, level = {
            CLOSED_HAT: (0.03, 0.15, 0.35),
            PEDAL_HAT: (0.018, 0.1, 0.25),
            OPEN_HAT: (0.25, 0.9, 0.35),
        }[note]
        t = _time(sr, seconds)
        hiss = _band(0.6 * _metal(t, 1.6) + noise(t), sr, 7000)
        if note == PEDAL_HAT:  # the "chick" of the closing cymbals
            hiss += _band(noise(t), sr, 800, 2500) * np.exp(-t / 0.008)
        return _finish(hiss * np.exp(-t / decay), level)
    if note == RIDE_BELL:
        t = _time(sr, 1.5)
        ratios = np.array([1.0, 2.32, 4.25, 6.63])
        decays = np.array([0.6, 0.45, 0.3, 0.2])
        partials = np.sin(2 * np.pi * 760 * ratios[:, None] * t) * np.exp(-t / decays[:, None])
        return _finish(partials.sum(axis=0) + 0.2 * _metal(t, 3.0) * np.exp(-t / 0.3), 0.4)
    if note in (RIDE, *CRASHES):
        scale, band, decay, seconds, level = {
            RIDE: (2.5, (3000, 12000), 0.5, 1.5, 0.3),
            49: (1.8, (2500, 15000), 0.9, 2.5, 0.5),
            52: (1.1, (1200, 9000), 0.6, 2.0, 0.5),
            55: (2.2, (4000, 16000), 0.3, 1.2, 0.45),
        }[note]
        t = _time(sr, seconds)
        wash = _band(_metal(t, scale) + 0.8 * noise(t), sr, *band)
        if note == 52:  # china: trashy, overdriven
            wash = np.tanh(3 * wash)
        if note == RIDE:  # stick "ping" over the wash
            wash += 0.5 * np.sin(2 * np.pi * 3300 * t) * np.exp(-t / 0.25)
        return _finish(wash * np.exp(-t / decay), level)
    raise ValueError(f"no voice for MIDI note {note}")


@functools.cache
def voices(sample_rate: int = SAMPLE_RATE) -> dict[int, np.ndarray]:
    """Dry mono float32 voice per GM note, synthesised once per sample rate."""
    return {note: _synthesise(note, sample_rate) for note in NOTES}


VOICES = voices(SAMPLE_RATE)


@functools.cache
def _stereo_voices(sample_rate: int) -> dict[int, np.ndarray]:
    """Voices with a short room and panning baked in, so rendering only adds.

    Different room responses per channel decorrelate left and right a little,
    like overheads in a real room.
    """
    rng = np.random.default_rng(12345)
    t = _time(sample_rate, 0.12)
    rooms = rng.standard_normal((2, len(t))) * np.exp(-t / 0.03)
    rooms /= np.sqrt((rooms**2).sum(axis=1, keepdims=True))
    out = {}
    for note, dry in voices(sample_rate).items():
        angle = (PAN[note] + 1) * np.pi / 4  # equal-power pan law
        gains = (np.cos(angle), np.sin(angle))
        channels = [
            g * (np.pad(dry, (0, len(t) - 1)) + ROOM_WET * _convolve(dry, room)) for g, room in zip(gains, rooms)
        ]
        out[note] = np.stack(channels, axis=1).astype(np.float32)
    return out


def pattern(
    notes,
    bars: int = 8,
    steps_per_beat: int = STEPS_PER_BEAT,
    beats_per_bar: int = BEATS_PER_BAR,
    rng: np.random.Generator | None = None,
) -> list[tuple[int, int, int]]:
    """A pop-rock groove playing exactly ``notes``, as sorted (step, note, velocity).

    Every beat gets at least one hit (so the beat grid can be checked from
    onsets) and step 0 is always hit. Roles: a timekeeper on 8ths, kick on the
    even beats, backbeat on the odd ones (rimshot in the first half and snare
    in the second when both exist, like verse/chorus), fills at phrase ends,
    crashes on bar 1, mid-loop and after fills; ``rng`` (default: seed 0)
    picks the variations. Notes without a natural role are placed once on a
    random downbeat.
    """
    notes = set(notes)
    if not notes or not notes <= set(NOTES):
        raise ValueError(f"notes must be a non-empty subset of {sorted(NOTES)}: {sorted(notes)}")
    rng = np.random.default_rng(0) if rng is None else rng
    bar_len = steps_per_beat * beats_per_bar
    total = bars * bar_len
    beat_steps = range(0, total, steps_per_beat)
    if len(notes) == 1:
        (note,) = notes
        return [(s, note, 110 if s % bar_len == 0 else 90) for s in beat_steps]

    eighth = steps_per_beat // 2 if steps_per_beat % 2 == 0 else steps_per_beat
    timekeeper = next((n for n in TIMEKEEPERS if n in notes), None)
    fill_note = next((n for n in (SNARE, RIMSHOT) if n in notes), None)
    hits: dict[tuple[int, int], int] = {}

    def hit(step: int, note: int, velocity: int) -> None:
        if note in notes:
            hits[step, note] = int(np.clip(velocity + rng.integers(-8, 9), 1, 127))

    crash_bars = {0, bars // 2}
    for bar in range(bars):
        start = bar * bar_len
        fill_beats = 0
        if fill_note is not None and bar % 4 == 3 and rng.random() < 0.75:
            fill_beats = min(int(rng.integers(1, 3)), beats_per_bar)
            crash_bars.add(bar + 1)
        groove_end = start + (beats_per_bar - fill_beats) * steps_per_beat
        second_half = bar >= bars // 2
        backbeat = SNARE if SNARE in notes and (second_half or RIMSHOT not in notes) else RIMSHOT
        bell = RIDE_BELL in notes and timekeeper != RIDE_BELL and second_half

        if timekeeper is not None:
            for s in range(start, groove_end, eighth):
                hit(s, timekeeper, 96 if (s - start) % steps_per_beat == 0 else 72)
        for beat in range(beats_per_bar):
            s = start + beat * steps_per_beat
            if beat % 2 == 0:
                hit(s, KICK, 112)
            elif s < groove_end:
                hit(s, backbeat, 108)
                hit(s, PEDAL_HAT, 70)
            if bell and s < groove_end:
                hits.pop((s, RIDE), None)  # the bell replaces the ride stroke
                hit(s, RIDE_BELL, 100)

        offbeats = range(start + eighth, groove_end, 2 * eighth)
        if len(offbeats) and rng.random() < 0.5:  # syncopated extra kick
            hit(int(rng.choice(offbeats)), KICK, 95)
        if len(offbeats) and rng.random() < 0.3 and steps_per_beat > 2:  # snare ghost note
            hit(int(rng.choice(offbeats)) - 1, SNARE, 40)
        if timekeeper == CLOSED_HAT and fill_beats == 0 and rng.random() < 0.5:
            s = start + bar_len - eighth  # open the hat on the last "and"
            hits.pop((s, CLOSED_HAT), None)
            hit(s, OPEN_HAT, 88)
        for i, s in enumerate(range(groove_end, start + bar_len)):  # crescendo fill
            hit(s, fill_note, 70 + 40 * i // max(fill_beats * steps_per_beat - 1, 1))

    crash_notes = [n for n in CRASHES if n in notes]
    for i, bar in enumerate(sorted(b for b in crash_bars if b < bars and crash_notes)):
        if timekeeper not in CRASHES:
            hits.pop((bar * bar_len, timekeeper), None)  # that hand is on the crash
        hit(bar * bar_len, crash_notes[i % len(crash_notes)], 118)

    filler = next(n for n in (timekeeper, KICK, fill_note, min(notes)) if n in notes)
    covered = {s for s, _ in hits}
    for s in beat_steps:
        if s not in covered:
            hit(s, filler, 90)
    for note in sorted(notes - {n for _, n in hits}):
        hit(int(rng.integers(bars)) * bar_len, note, 100)
    return sorted((s, n, v) for (s, n), v in hits.items())


def render_loop(
    notes, bpm: float, bars: int = 8, sample_rate: int = SAMPLE_RATE, seed: int = 0
) -> tuple[np.ndarray, list[tuple[float, int]]]:
    """Render a 4/4 loop of ``notes`` at ``bpm``; deterministic per ``seed``.

    Returns int16 audio of shape (n_samples, 2), exactly
    ``round(bars * 4 * 60 / bpm * sample_rate)`` frames, peak-normalised to
    -1 dBFS over a faint noise floor (which keeps gzip ratios realistic), and
    the hits as (time_seconds, note), where time * sample_rate is the integer
    sample the hit starts at: the one nearest its exact 16th-note grid time.
    """
    rng = np.random.default_rng(seed)
    n_samples = frame_at(bars * BEATS_PER_BAR, bpm, sample_rate)
    stereo = _stereo_voices(sample_rate)
    mix = np.zeros((n_samples, 2), dtype=np.float32)
    hits = []
    for step, note, velocity in pattern(notes, bars, rng=rng):
        pos = frame_at(step / STEPS_PER_BEAT, bpm, sample_rate)
        voice = stereo[note][: n_samples - pos]
        gain = np.float32((velocity / 127) ** 2)  # square law: ghost notes ~-20 dB
        mix[pos : pos + len(voice)] += voice * gain
        hits.append((pos / sample_rate, note))
    mix *= np.float32(10 ** (PEAK_DBFS / 20) * 32767 / np.abs(mix).max())
    audio = np.rint(mix, out=mix).astype(np.int16)
    audio += noise_floor(rng, audio.shape)  # peaks sit at -1 dBFS, far above the floor: no overflow
    return audio, hits
