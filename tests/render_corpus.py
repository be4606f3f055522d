"""Drum loops whose truth is known, rendered without the analysis: basic rock patterns through differently voiced kits.

The kits are one-shots: General MIDI drum kits of FluidR3_GM.sf2 rendered once by fluidsynth (one MIDI file
that strikes every drum of every kit at three velocities), and two kits synthesised here in numpy with
voicings of their own. A loop mixes a kit's one-shots on the steps of a pattern, with single-drum swaps,
a synthetic room, a level and a tempo drawn from a seeded generator, so the same seed gives the same corpus.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.signal
import soundfile as sf

from poprok.grid import STEPS_PER_BAR, STEPS_PER_BEAT, frame_at
from poprok.splits import FOLD_SPLITS, NUM_FOLDS, SPLIT_FOLDS, key_fold

SAMPLE_RATE = 44100
SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
GM_KITS = {"standard": 0, "room": 8, "power": 16, "electronic": 24, "tr808": 25, "jazz": 32, "brush": 40}
NOTES = {"kick": 36, "snare": 38, "rim": 37, "hat": 42, "open_hat": 46, "ride": 51, "crash": 49}
BAND_OF = {
    "kick": "low",
    "snare": "mid",
    "rim": "mid",
    "hat": "high",
    "open_hat": "high",
    "ride": "high",
    "crash": "high",
}
VELOCITIES = (40, 80, 112)
ONE_SHOT_SECONDS = 1.5
SWAPS = {"hat": "ride", "snare": "rim"}

# One bar of 16 steps per pattern: (drum, steps, velocity). They differ by a few steps, like real basic beats.
_BACKBEAT = ("snare", (4, 12), 100)
_HATS_8 = ("hat", (0, 2, 4, 6, 8, 10, 12, 14), 80)
_HATS_16 = ("hat", tuple(range(16)), 70)
_HATS_4 = ("hat", (0, 4, 8, 12), 80)
PATTERNS: dict[str, tuple[tuple[str, tuple[int, ...], int], ...]] = {
    "rock": (("kick", (0, 8), 110), _BACKBEAT, _HATS_8),
    "rock_and": (("kick", (0, 6, 8), 110), _BACKBEAT, _HATS_8),
    "rock_16ths": (("kick", (0, 8), 110), _BACKBEAT, _HATS_16),
    "rock_ride": (("kick", (0, 8), 110), _BACKBEAT, ("ride", (0, 4, 8, 12), 90)),
    "rock_ghost": (("kick", (0, 8), 110), _BACKBEAT, ("snare", (7,), 40), _HATS_8),
    "four_floor": (("kick", (0, 4, 8, 12), 110), _BACKBEAT, _HATS_8),
    "syncopated": (("kick", (0, 3, 8, 10), 110), _BACKBEAT, _HATS_8),
    "disco": (("kick", (0, 4, 8, 12), 110), _BACKBEAT, ("open_hat", (2, 6, 10, 14), 80)),
    "half_time": (("kick", (0, 10), 110), ("snare", (8,), 100), _HATS_8),
    "rock_and_16ths": (("kick", (0, 6, 8), 110), _BACKBEAT, _HATS_16),
    "rock_kick_14": (("kick", (0, 8, 14), 110), _BACKBEAT, _HATS_8),
    "rock_open": (("kick", (0, 8), 110), _BACKBEAT, ("hat", (0, 2, 4, 6, 8, 10, 12), 80), ("open_hat", (14,), 90)),
    "rock_kick_10": (("kick", (0, 8, 10), 110), _BACKBEAT, _HATS_8),
    "rock_kick_2": (("kick", (0, 2, 8), 110), _BACKBEAT, _HATS_8),
    "rock_kick_7": (("kick", (0, 7, 8), 110), _BACKBEAT, _HATS_8),
    "rock_ghosts": (("kick", (0, 8), 110), _BACKBEAT, ("snare", (3, 11), 40), _HATS_8),
    "rock_pickup": (("kick", (0, 8), 110), ("snare", (4, 12, 15), 100), _HATS_8),
    "backbeat_only": (("kick", (0, 8), 110), _BACKBEAT),
    "offbeat_hats": (("kick", (0, 8), 110), _BACKBEAT, ("hat", (2, 6, 10, 14), 80)),
    "half_time_16ths": (("kick", (0, 10), 110), ("snare", (8,), 100), _HATS_16),
    "half_time_ride": (("kick", (0,), 110), ("snare", (8,), 100), ("ride", (0, 4, 8, 12), 90)),
    "half_time_ghost": (("kick", (0, 10), 110), ("snare", (8, 13), 100), _HATS_8),
    "four_floor_16ths": (("kick", (0, 4, 8, 12), 110), _BACKBEAT, _HATS_16),
    "four_floor_quarters": (("kick", (0, 4, 8, 12), 110), _BACKBEAT, _HATS_4),
    "syncopated_16ths": (("kick", (0, 3, 8, 10), 110), _BACKBEAT, _HATS_16),
    "pop_kick": (("kick", (0, 3, 6, 8), 110), _BACKBEAT, _HATS_8),
    "funk": (("kick", (0, 3, 10), 110), _BACKBEAT, ("snare", (7, 9), 40), _HATS_16),
}


@dataclass(frozen=True)
class Render:
    """One loop and its truth: the pattern it plays and, per band, the steps (of the whole loop) it hits."""

    name: str
    pattern: str
    pcm: np.ndarray
    bpm: float
    num_bars: int
    truth: dict[str, frozenset[int]]
    kit: str


def fluidsynth_available() -> bool:
    """Whether the GM kits can be rendered here (Debian: fluidsynth, fluid-soundfont-gm)."""
    return shutil.which("fluidsynth") is not None and SOUNDFONT.is_file()


def _vlq(value: int) -> bytes:
    out = [value & 0x7F]
    while value > 0x7F:
        value >>= 7
        out.append(0x80 | (value & 0x7F))
    return bytes(reversed(out))


def _strike_every_drum_midi() -> bytes:
    """A format-0 SMF at 120 BPM (960 ticks a second) that strikes each drum of each GM kit, one per slot."""
    events, now, slot_ticks = [], 0, int(ONE_SHOT_SECONDS * 960)
    for program in GM_KITS.values():
        events.append((now, bytes([0xC9, program])))
        now += slot_ticks
        for note in NOTES.values():
            for velocity in VELOCITIES:
                events.append((now, bytes([0x99, note, velocity])))
                events.append((now + 192, bytes([0x89, note, 0])))
                now += slot_ticks
    events.sort(key=lambda event: event[0])
    track, last = bytearray(_vlq(0) + b"\xff\x51\x03\x07\xa1\x20"), 0
    for tick, message in events:
        track += _vlq(tick - last) + message
        last = tick
    track += _vlq(slot_ticks) + b"\xff\x2f\x00"
    return b"MThd" + struct.pack(">IHHH", 6, 0, 1, 480) + b"MTrk" + struct.pack(">I", len(track)) + bytes(track)


def gm_kits(cache: Path) -> dict[str, dict[tuple[str, int], np.ndarray]]:
    """Every GM kit's one-shots (float stereo), rendered by one fluidsynth run, its reverb and chorus off."""
    wav = cache / "gm_one_shots.wav"
    if not wav.exists():
        midi = cache / "gm_one_shots.mid"
        midi.write_bytes(_strike_every_drum_midi())
        command = ["fluidsynth", "-ni", "-q", "-g", "1.0", "-R", "0", "-C", "0", "-F", str(wav)]
        subprocess.run([*command, "-r", str(SAMPLE_RATE), str(SOUNDFONT), str(midi)], check=True, capture_output=True)
    audio, rate = sf.read(wav, dtype="float32", always_2d=True)
    assert rate == SAMPLE_RATE
    slot = round(ONE_SHOT_SECONDS * SAMPLE_RATE)
    kits, position = {}, 0
    for kit in GM_KITS:
        position += slot
        shots = {}
        for drum in NOTES:
            for velocity in VELOCITIES:
                shot = audio[position : position + slot]
                position += slot
                start = int(np.argmax(np.abs(shot).max(axis=1) > 1e-4)) if np.abs(shot).max() > 1e-4 else 0
                shots[drum, velocity] = shot[start:]
        kits[kit] = shots
    return kits


def _decay(seconds: float, tau: float) -> np.ndarray:
    return np.exp(-np.arange(round(seconds * SAMPLE_RATE)) / (tau * SAMPLE_RATE)).astype(np.float32)


def _band_noise(rng, seconds: float, low: float, high: float) -> np.ndarray:
    sos = scipy.signal.butter(4, [low, high], btype="band", fs=SAMPLE_RATE, output="sos")
    return scipy.signal.sosfilt(sos, rng.standard_normal(round(seconds * SAMPLE_RATE))).astype(np.float32)


def _metal(rng, seconds: float, partials: np.ndarray, tau: float) -> np.ndarray:
    t = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    tone = np.sin(2 * np.pi * partials[:, None] * t + rng.uniform(0, 2 * np.pi, (len(partials), 1))).sum(axis=0)
    return (tone / len(partials) + 0.5 * _band_noise(rng, seconds, 4000, 14000)) * _decay(seconds, tau)


def synth_kit(voicing: int) -> dict[tuple[str, int], np.ndarray]:
    """A kit synthesised here: swept-sine kicks, tone-plus-noise snares, inharmonic metal cymbals.

    ``voicing`` 0 and 1 are two different kits (tuning, decay and timbre), not two levels of one.
    """
    rng = np.random.default_rng(100 + voicing)
    tune = (1.0, 1.35)[voicing]
    t = np.arange(round(0.6 * SAMPLE_RATE)) / SAMPLE_RATE
    sweep = 45 * tune + 90 * np.exp(-t / 0.03)
    kick = np.sin(2 * np.pi * np.cumsum(sweep) / SAMPLE_RATE) * _decay(0.6, (0.12, 0.07)[voicing])
    kick[:60] += np.hanning(120)[60:] * (0.3, 0.6)[voicing]
    tone = np.sin(2 * np.pi * 185 * tune * t[: round(0.4 * SAMPLE_RATE)])
    snare = 0.6 * tone * _decay(0.4, 0.05) + _band_noise(rng, 0.4, 900 * tune, 9000) * _decay(
        0.4, (0.09, 0.06)[voicing]
    )
    rim = np.sin(2 * np.pi * 1700 * tune * t[:2000]) * _decay(2000 / SAMPLE_RATE, 0.008)
    hat = _metal(rng, 0.2, rng.uniform(6000, 11000, 6), (0.025, 0.04)[voicing])
    open_hat = _metal(rng, 0.8, rng.uniform(6000, 11000, 6), 0.2)
    ride = _metal(rng, 1.5, rng.uniform(3000, 7000, 9) * tune, 0.6)
    crash = _metal(rng, 1.5, rng.uniform(2500, 9000, 12), 0.5) + 0.5 * _band_noise(rng, 1.5, 2000, 15000) * _decay(
        1.5, 0.4
    )
    drums = {"kick": kick, "snare": snare, "rim": rim, "hat": hat, "open_hat": open_hat, "ride": ride, "crash": crash}
    kit = {}
    for drum, sound in drums.items():
        sound = (sound / np.abs(sound).max()).astype(np.float32)
        for velocity in VELOCITIES:
            # harder hits are brighter, not only louder
            bright = sound if velocity >= 80 else scipy.signal.lfilter([0.5, 0.5], [1.0], sound).astype(np.float32)
            kit[drum, velocity] = np.stack([bright, bright], axis=1) * (velocity / 127) ** 1.5
    return kit


def room_impulse(rng, rt60: float, pre_delay: float) -> np.ndarray:
    """A stereo room: the direct sound, then decorrelated noise decaying 60 dB in ``rt60`` s after ``pre_delay``."""
    length = round((pre_delay + rt60) * SAMPLE_RATE)
    tail = rng.standard_normal((length, 2)) * np.exp(-6.9 * np.arange(length) / (rt60 * SAMPLE_RATE))[:, None]
    tail[: round(pre_delay * SAMPLE_RATE)] = 0
    impulse = 0.25 * tail / np.sqrt((tail**2).sum(axis=0))
    impulse[0] += 1.0
    return impulse.astype(np.float32)


def hits_of(
    pattern: str, num_bars: int, swaps: frozenset[str] = frozenset(), crash: bool = False
) -> list[tuple[str, int, int]]:
    """The (drum, step, velocity) hits of ``pattern`` over ``num_bars`` bars, swaps applied, a crash on bar 1."""
    hits = []
    for bar in range(num_bars):
        for drum, steps, velocity in PATTERNS[pattern]:
            hits += [(SWAPS[drum] if drum in swaps else drum, bar * STEPS_PER_BAR + s, velocity) for s in steps]
    return hits + ([("crash", 0, 110)] if crash else [])


def render_loop(kit, hits, bpm: float, num_bars: int, rng, level_db: float, room: np.ndarray | None) -> np.ndarray:
    """Mix ``hits`` (drum, step, velocity) from ``kit`` on the grid of ``bpm``; int16 stereo of ``num_bars`` bars."""
    frames = frame_at(num_bars * STEPS_PER_BAR / STEPS_PER_BEAT, bpm, SAMPLE_RATE)
    mix = np.zeros((frames, 2), np.float32)
    pans = {drum: rng.uniform(0.3, 0.7) for drum in NOTES}
    for drum, step, velocity in hits:
        velocity = int(np.clip(velocity + rng.integers(-8, 9), 1, 127))
        nearest = min(VELOCITIES, key=lambda v: abs(v - velocity))
        shot = kit[drum, nearest] * (velocity / nearest) * np.array([1 - pans[drum], pans[drum]], np.float32) * 2
        start = max(0, frame_at(step / STEPS_PER_BEAT, bpm, SAMPLE_RATE) + int(rng.integers(-40, 41)))
        end = min(frames, start + len(shot))
        mix[start:end] += shot[: end - start]
    if room is not None:
        mix = scipy.signal.oaconvolve(mix, room, axes=0)[:frames]
    mix *= 10 ** (level_db / 20) * 0.99 / max(np.abs(mix).max(), 1e-9)
    return np.round(mix * 32767).astype(np.int16)


def truth_of(hits) -> dict[str, frozenset[int]]:
    """Per band, the steps the loop hits with a drum of that band."""
    return {band: frozenset(s for d, s, _ in hits if BAND_OF[d] == band) for band in ("low", "mid", "high")}


def numpy_kits() -> dict[str, dict[tuple[str, int], np.ndarray]]:
    """The two kits synthesised here (no fluidsynth needed): what the listening benchmarks render with."""
    return {"synth_a": synth_kit(0), "synth_b": synth_kit(1)}


def all_kits(cache: Path) -> dict[str, dict[tuple[str, int], np.ndarray]]:
    """The GM kits (when fluidsynth is here) and the two numpy kits."""
    kits = gm_kits(cache) if fluidsynth_available() else {}
    return {**kits, **numpy_kits()}


def corpus(kits, loops_per_pattern: int = 12, seed: int = 0, num_bars: int = 8) -> list[Render]:
    """``loops_per_pattern`` renders of each pattern, each with a random kit, swaps, room, level and tempo."""
    rng = np.random.default_rng(seed)
    names = sorted(kits)
    renders = []
    for pattern in PATTERNS:
        for index in range(loops_per_pattern):
            kit = names[(index + rng.integers(len(names))) % len(names)]
            swaps = {drum for drum in SWAPS if rng.random() < 0.3}
            hits = hits_of(pattern, num_bars, swaps, crash=rng.random() < 0.4)
            room = room_impulse(rng, rng.uniform(0.2, 1.5), rng.uniform(0.0, 0.03)) if rng.random() < 0.8 else None
            bpm = float(rng.integers(100, 131))
            pcm = render_loop(kits[kit], hits, bpm, num_bars, rng, rng.uniform(-24, 0), room)
            name = f"{pattern}_{index:02d}_{kit}_{bpm:.0f}bpm"
            renders.append(Render(name, pattern, pcm, bpm, num_bars, truth_of(hits), kit))
    return renders


def faulty_corpus(kits, seed: int = 1) -> tuple[dict[str, tuple[np.ndarray, float, int]], dict[str, list[str]]]:
    """Good loops plus one of each fault, as name -> (pcm, named bpm, bars), and the names expected per kind."""
    rng = np.random.default_rng(seed)
    kit = kits[min(kits)]
    room = room_impulse(rng, 0.5, 0.01)
    loops = {}
    for pattern in ("rock", "rock_and", "four_floor", "half_time"):
        loops[f"good_{pattern}"] = (
            render_loop(kit, hits_of(pattern, 8, set(), False), 120, 8, rng, -6, room),
            120.0,
            8,
        )
    hits = hits_of("rock_16ths", 8, set(), False)
    loops["original"] = (render_loop(kit, hits, 110, 8, rng, -3, room), 110.0, 8)
    loops["copy_of_original"] = (loops["original"][0].copy(), 110.0, 8)
    clipped = render_loop(kit, hits, 105, 8, rng, 0, room).astype(np.float32) * 4
    loops["clipped"] = (np.clip(clipped, -32768, 32767).astype(np.int16), 105.0, 8)
    loops["near_silent"] = (render_loop(kit, hits, 125, 8, rng, -55, room), 125.0, 8)
    loops["digital_silence"] = (np.zeros((frame_at(32, 120, SAMPLE_RATE), 2), np.int16), 120.0, 8)
    loops["wrong_tempo"] = (render_loop(kit, hits_of("rock", 8, set(), False), 112, 8, rng, -6, room), 120.0, 8)
    late = render_loop(kit, hits_of("rock", 8, set(), False), 120, 8, rng, -6, room)
    shift = frame_at(1 / 8, 120, SAMPLE_RATE)  # a 32nd note
    loops["starts_late"] = (np.concatenate([np.zeros((shift, 2), np.int16), late[:-shift]]), 120.0, 8)
    whole = render_loop(kit, hits_of("four_floor", 8, set(), False), 115, 8, rng, -6, room)
    loops["cut_short"] = (whole[: round(len(whole) * 7.6 / 8)], 115.0, 8)  # named 8 bars, ends 0.4 bars early
    expected = {
        "duplicates": [["copy_of_original", "original"]],
        "clipped": ["clipped"],
        "silent": ["digital_silence", "near_silent"],
        "off_grid": ["starts_late", "wrong_tempo"],
        "unplaced": ["cut_short", "digital_silence", "near_silent", "starts_late", "wrong_tempo"],
    }
    return loops, expected


def _share_of_pairs_differing(true_patterns: list[str], keys: list) -> float:
    """Among pairs of loops of one true pattern, the share whose ``keys`` differ."""
    pairs = differing = 0
    for i in range(len(keys)):
        for j in range(i + 1, len(keys)):
            if true_patterns[i] == true_patterns[j]:
                pairs += 1
                differing += keys[i] != keys[j]
    return differing / pairs


def leak_and_largest(true_patterns: list[str], ids: list[str], split_of) -> tuple[float, int]:
    """The share of same-true-pattern pairs that land in different splits, and the largest id group's size."""
    leak = _share_of_pairs_differing(true_patterns, [split_of(pattern) for pattern in ids])
    return leak, max(Counter(ids).values())


def split_pairs(true_patterns: list[str], ids: list[str]) -> float:
    """The share of same-true-pattern pairs with different ids: times 0.34, the leak expected over the fold hash."""
    return _share_of_pairs_differing(true_patterns, ids)


# The chance that two different keys land in different splits when the folds hash them (so a random split by
# loop leaks this share of same-pattern pairs): 1 - (0.8^2 + 0.1^2 + 0.1^2) = 0.34
BASELINE_LEAK = 1 - sum((len(folds) / NUM_FOLDS) ** 2 for folds in SPLIT_FOLDS.values())


def key_report(true_patterns: list[str], ids: list[str]) -> dict:
    """How ``ids`` group the true patterns: the leak if the folds hashed them (one hash draw, and expected over the
    hash), the largest group, ids per true pattern (min, mean, max) and ids holding more than one true pattern."""
    leak, largest = leak_and_largest(true_patterns, ids, lambda key: FOLD_SPLITS[key_fold(key)])
    ids_of, patterns_of = defaultdict(set), defaultdict(set)
    for pattern, key in zip(true_patterns, ids):
        ids_of[pattern].add(key)
        patterns_of[key].add(pattern)
    counts = [len(keys) for keys in ids_of.values()]
    return {
        "leak": leak,
        "expected_leak": split_pairs(true_patterns, ids) * BASELINE_LEAK,
        "largest": largest,
        "ids_per_pattern": (min(counts), float(np.mean(counts)), max(counts)),
        "merged_ids": sum(len(patterns) > 1 for patterns in patterns_of.values()),
    }


def roc_auc(scores, labels) -> float:
    """The probability that a true step outranks a false one (ties count half): Mann-Whitney's U over both counts."""
    scores, labels = np.asarray(scores, np.float64), np.asarray(labels, bool)
    positive, negative = scores[labels], scores[~labels]
    wins = (positive[:, None] > negative[None, :]).sum() + 0.5 * (positive[:, None] == negative[None, :]).sum()
    return float(wins / (len(positive) * len(negative)))
