"""The analysis measured on renders of known truth (tests/render_corpus.py), on injected faults and real previews."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import librosa
import numpy as np
import pyloudnorm
import pytest
import render_corpus as rc
from hypothesis import given, settings
from hypothesis import strategies as st

from poprok.analysis import (
    BANDS,
    OFF_GRID_FIT,
    SHIPPED,
    ListenError,
    find_facts,
    listen,
    pattern_id,
)
from poprok.analysis.onsets import onsets

REAL_EXAMPLES = Path(__file__).resolve().parents[2] / "shared" / "real-examples"
LOOPS_PER_PATTERN = 6  # of each of the corpus's 27 patterns: 162 loops, one true group is 3.7 % of them


@pytest.fixture(scope="session")
def kits(tmp_path_factory):
    if not rc.fluidsynth_available():
        if os.environ.get("CI"):
            pytest.fail(
                "fluidsynth and fluid-soundfont-gm are missing (apt-get install fluidsynth fluid-soundfont-gm)"
            )
        pytest.skip("fluidsynth or FluidR3_GM.sf2 is not installed")
    return rc.all_kits(tmp_path_factory.mktemp("kits"))


@pytest.fixture(scope="session")
def corpus(kits):
    renders = rc.corpus(kits, LOOPS_PER_PATTERN, seed=0)
    return renders, [listen(r.pcm, r.bpm, r.num_bars) for r in renders]


@pytest.fixture(scope="session")
def evidence(corpus):
    """Each render's pattern evidence per band and step: what its id is cut from, to cut it other ways."""
    renders, _ = corpus
    return [dict(zip(BANDS, onsets(r.pcm, r.bpm, r.num_bars, rc.SAMPLE_RATE)[2])) for r in renders]


def test_onset_strengths_rank_the_true_steps_first_in_every_band(corpus, measured):
    renders, listenings = corpus
    medians = {}
    for band in BANDS:
        aucs = [
            rc.roc_auc(item.onsets[band], [s in r.truth[band] for s in range(r.num_bars * 16)])
            for r, item in zip(renders, listenings)
            if 0 < len(r.truth[band]) < r.num_bars * 16
        ]
        medians[band] = float(np.median(aucs))
        measured.append(
            f"onset ROC AUC, {band} band: median {medians[band]:.3f}, 10th percentile {np.percentile(aucs, 10):.3f} "
            f"({len(aucs)} renders, {len(renders)} in the corpus)"
        )
    assert min(medians.values()) >= 0.9, medians


def test_the_grid_fit_of_every_render_is_above_the_off_grid_threshold(corpus, measured):
    _, listenings = corpus
    fits = [item.grid_fit for item in listenings]
    measured.append(f"grid_fit of {len(fits)} renders: min {min(fits):.3f}, median {np.median(fits):.3f}")
    assert min(fits) >= OFF_GRID_FIT


def test_shipped_pattern_ids_halve_a_random_splits_leak_without_giant_groups(corpus, measured):
    """The shipped point of benchmarks/pattern_curve.py on this corpus (its seed 0): expected leak 0.154, largest 15.

    The leak expected over the hash, as ``key_fold`` measures one draw of it (0.242 here) with 27 patterns.
    Short of the bar for pattern folds (no group above 5 % of the loops): rock and its open-hat, ghost-note
    and offbeat-hat variants still share ids in some kits, so the folds stay on the track number. The key
    shipped before (the kick's bleed left in the snare band) expects 0.179 here, 0.163-0.204 on seeds 1-5.
    """
    renders, listenings = corpus
    truth, ids = [r.pattern for r in renders], [item.pattern for item in listenings]
    report = rc.key_report(truth, ids)
    expected, largest, (fewest, mean, most) = report["expected_leak"], report["largest"], report["ids_per_pattern"]
    by_loop = rc.key_report(truth, [r.name for r in renders])["leak"]  # what folds on the track are
    sizes = sorted(Counter(Counter(ids).values()).items(), reverse=True)
    measured += [
        f"same-pattern pairs in different splits: folds on the loop {by_loop:.3f} (expected {rc.BASELINE_LEAK:.2f}); "
        f"folds on the shipped pattern id {report['leak']:.3f} in this hash draw, {expected:.3f} expected over "
        "the hash",
        f"pattern id groups: {len(set(ids))} ids for {len(set(truth))} true patterns; largest {largest} loops "
        f"({largest / len(ids):.1%}; one true pattern is {LOOPS_PER_PATTERN}); sizes "
        + ", ".join(f"{count} of {size}" for size, count in sizes),
        f"ids per true pattern: {fewest}-{mean:.1f}-{most}; ids holding more than one true pattern: "
        f"{report['merged_ids']}",
    ]
    assert expected <= rc.BASELINE_LEAK / 2
    assert largest <= 3 * LOOPS_PER_PATTERN  # the renders of three true patterns at most


def test_no_cut_tried_around_the_shipped_one_leaks_less_with_groups_as_small(corpus, evidence, measured):
    """The leak / largest-group curve of the shipped key's cuts scaled finer and coarser: the shipped point is on
    its lower edge (no scaled cut both leaks less and keeps its largest group as small)."""
    renders, listenings = corpus
    truth = [r.pattern for r in renders]
    placed = [(e, item.pattern) for e, item in zip(evidence, listenings) if not item.pattern.startswith("unplaced-")]
    assert len(placed) == len(renders) and all(pattern_id(e) == key for e, key in placed)  # the ids listen gave
    curve = {}
    for scale in (0.6, 0.8, 0.9, 1.0, 1.1, 1.25, 1.5):
        cut = dataclasses.replace(SHIPPED, threshold=tuple(scale * t for t in SHIPPED.threshold))
        ids = [pattern_id(e, cut) for e in evidence]
        report = rc.key_report(truth, ids)
        curve[scale] = (report["expected_leak"], report["largest"])
    measured.append(
        "leak expected / largest group, the shipped cuts scaled: "
        + "; ".join(f"x{scale}: {leak:.3f} / {largest}" for scale, (leak, largest) in curve.items())
    )
    shipped_leak, shipped_largest = curve[1.0]
    assert not [s for s, (leak, largest) in curve.items() if leak < shipped_leak and largest <= shipped_largest]


def test_loudness_equals_pyloudnorm_within_a_tenth_of_a_lu(corpus):
    renders, listenings = corpus
    for r, item in list(zip(renders, listenings))[::3]:
        reference = pyloudnorm.Meter(44100).integrated_loudness(r.pcm.astype(np.float64) / 32768)
        assert item.loudness_lufs == pytest.approx(reference, abs=0.1)


@pytest.mark.parametrize("rate", [22050, 48000, 96000])
def test_loudness_equals_pyloudnorm_at_other_rates(rate):
    """The spectral meter at the rates besides 44.1 kHz."""
    pcm = rc.render_loop(rc.synth_kit(0), rc.hits_of("rock_16ths", 4), 120, 4, np.random.default_rng(0), -3, None)
    reference = pyloudnorm.Meter(rate).integrated_loudness(pcm.astype(np.float64) / 32768)
    assert listen(pcm, 120 * rate / 44100, 4, rate).loudness_lufs == pytest.approx(reference, abs=0.1)


def test_every_injected_fault_is_found_under_its_kind(kits, measured):
    loops, expected = rc.faulty_corpus(kits)
    facts = find_facts({name: listen(*loop) for name, loop in loops.items()})
    measured.append(
        f"injected faults among {len(loops)} loops, reported under their kind / injected: "
        + ", ".join(
            f"{kind} {len([n for n in names if n in facts[kind]])}/{len(names)}" for kind, names in expected.items()
        )
        + "; on good loops: "
        + str(sum(n not in expected[kind] for kind in expected for n in facts[kind]))
    )
    for kind, names in expected.items():
        assert facts[kind] == names, kind
    assert facts["patterns"]["largest"] == facts["patterns"]["sizes"][0] >= 2  # the duplicate pair at least
    assert sum(facts["patterns"]["sizes"]) == len(loops)


def test_ids_are_the_same_in_any_order_and_in_another_process(corpus, tmp_path):
    renders, listenings = corpus
    chosen = renders[::17]
    again = [listen(r.pcm, r.bpm, r.num_bars).pattern for r in reversed(chosen)][::-1]
    assert again == [item.pattern for item in listenings[::17]]
    np.savez(tmp_path / "loops.npz", *[r.pcm for r in chosen])
    script = (
        "import json, sys, numpy as np\n"
        "from poprok.analysis import listen\n"
        f"data = np.load({str(tmp_path / 'loops.npz')!r})\n"
        f"bpms = {[r.bpm for r in chosen]!r}\n"
        "print(json.dumps([listen(data[f'arr_{i}'], b, 8).pattern for i, b in enumerate(bpms)]))\n"
    )
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    out = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True, env=env, cwd=root)
    assert json.loads(out.stdout) == again


@settings(max_examples=12, deadline=None)
@given(level=st.floats(-24, 0))
def test_a_loop_keeps_its_pattern_id_at_any_level(level):
    kit = rc.synth_kit(0)
    pcm = rc.render_loop(kit, rc.hits_of("rock", 8), 112, 8, np.random.default_rng(0), level, None)
    reference = rc.render_loop(kit, rc.hits_of("rock", 8), 112, 8, np.random.default_rng(0), -6, None)
    assert listen(pcm, 112, 8).pattern == listen(reference, 112, 8).pattern


def test_digital_silence_has_no_loudness_no_onsets_and_its_own_id():
    pcm = np.zeros((88200, 2), np.int16)
    item = listen(pcm, 120, 4)
    assert item.loudness_lufs is None and item.grid_fit == 0 and item.peak_dbfs is None
    assert all(v == 0 for values in item.onsets.values() for v in values)
    assert item.pattern.startswith("unplaced-")
    columns = item.columns()
    assert set(columns) == {"onsets", "grid_fit", "pattern", "peak_dbfs", "loudness_lufs", "clipped_samples"}
    assert not any(isinstance(v, float) and math.isnan(v) for v in columns.values())


def test_columns_round_floats_to_float32():
    rng = np.random.default_rng(0)
    pcm = rc.render_loop(rc.synth_kit(1), rc.hits_of("rock", 2), 120, 2, rng, -3, None)
    columns = listen(pcm, 120, 2).columns()
    assert columns["grid_fit"] == float(np.float32(columns["grid_fit"]))
    assert len(columns["onsets"]["low"]) == 32 and max(columns["onsets"]["low"]) == 1.0
    assert columns["peak_dbfs"] == pytest.approx(20 * math.log10(np.abs(pcm.astype(int)).max() / 32768), abs=1e-4)


@pytest.mark.parametrize(
    "pcm, bpm, bars, message",
    [
        (np.zeros((88200, 2), np.float32), 120, 4, "int16"),
        (np.zeros(88200, np.int16), 120, 4, "2-D"),
        (np.zeros((88200, 2), np.int16), 0, 4, "bpm"),
        (np.zeros((88200, 2), np.int16), float("nan"), 4, "bpm"),
        (np.zeros((88200, 2), np.int16), 120, 0, "num_bars"),
        (np.zeros((1000, 2), np.int16), 120, 1, "less than one bar"),
    ],
)
def test_bad_input_raises_listen_error(pcm, bpm, bars, message):
    with pytest.raises(ListenError, match=message):
        listen(pcm, bpm, bars)


def test_real_previews_sit_on_their_grid(measured):
    if not REAL_EXAMPLES.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"{REAL_EXAMPLES} is missing")
        pytest.skip(f"{REAL_EXAMPLES} is missing")
    previews = sorted(REAL_EXAMPLES.glob("*.mp3"))
    assert len(previews) >= 3
    for mp3 in previews:
        audio, rate = librosa.load(mp3, sr=None, mono=False)
        pcm = np.round(audio.T * 32767).astype(np.int16)
        # the encoder delay: everything before the first sample above 1 % of full scale
        start = int(np.argmax(np.abs(pcm).max(axis=1) > 0.01 * 32768))
        assert 0.015 < start / rate < 0.04
        item = listen(pcm[start:], float(mp3.name.split("bpm")[0]), 8, rate)
        measured.append(
            f"real preview {mp3.name}: grid_fit {item.grid_fit:.3f} once its {start / rate * 1000:.0f} ms "
            f"encoder delay is cut, pattern {item.pattern}, {item.loudness_lufs:.1f} LUFS"
        )
        assert item.grid_fit >= OFF_GRID_FIT, mp3.name
        assert not item.pattern.startswith("unplaced-")


def test_the_band_flux_is_librosas_onset_strength_multi():
    """The onset columns' flux is librosa's multi-channel onset strength on the same sub-band spectrogram, bit for
    bit: computed in numpy because importing librosa.onset costs seconds and ~200 MB in every build process."""
    import librosa.onset

    from poprok.analysis import onsets

    rng = np.random.default_rng(3)
    pcm = (rng.standard_normal((5 * 44100, 2)) * 3000 * (rng.random((5 * 44100, 1)) > 0.999)).astype(np.int16)
    rate = 44100 / onsets.decimation(44100)
    power = onsets.band_power(onsets.downmix(pcm, 44100), rate)
    decibels = 10 * np.log10(np.maximum(power, np.float32(1e-10)))
    decibels = np.maximum(decibels, decibels.max() - np.float32(80.0))
    _, starts = onsets.band_matrix(rate)
    expected = librosa.onset.onset_strength_multi(S=decibels, lag=1, max_size=1, channels=starts, center=False)
    np.testing.assert_array_equal(onsets.band_flux(power, rate), expected)


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000, 96000])
def test_the_k_weighting_biquads_are_pyloudnorms_own(rate):
    from pyloudnorm.iirfilter import IIRfilter

    from poprok.analysis.facts import K_WEIGHTING, k_weighting_biquads

    theirs = [IIRfilter(*K_WEIGHTING[kind], rate, kind) for kind in ("high_shelf", "high_pass")]
    for (b, a), stage in zip(k_weighting_biquads(rate), theirs, strict=True):
        np.testing.assert_allclose(b, stage.b, rtol=1e-14)  # math's sin and cos against numpy's: an ulp apart
        np.testing.assert_allclose(a, stage.a, rtol=1e-14)
        assert stage.passband_gain == 1.0


def test_listening_imports_neither_scipy_signal_nor_pyloudnorm():
    """Each costs ~50 MB in every build process (scipy.signal; pyloudnorm imports it): the build imports neither."""
    script = (
        "import sys, numpy as np, pop_rok\n"
        "from poprok.analysis import listen\n"
        "listen(np.ones((88200, 2), np.int16), 120, 4)\n"
        "print(sorted(m for m in ('scipy.signal', 'pyloudnorm', 'librosa') if m in sys.modules))\n"
    )
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    out = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True, env=env, cwd=root)
    assert out.stdout.strip() == "[]"
