"""The controls (runtime/controls.py): definitions on runs worked by hand, the batched form
equal to the one-run form bit for bit, the training windows, and the checks callers meet."""
from __future__ import annotations

import math

import numpy as np
import pytest

from mpx.runtime import controls as ctl
from mpx.runtime.errors import OptionsError


def run(rows: list[tuple[float, float, float, float]], repeat: int = 1) -> np.ndarray:
    return np.array(rows * repeat, np.float32)


def test_definitions_on_a_run_worked_by_hand() -> None:
    # 16 notes: chords of two (C4+E4 played 10 ms apart) every 0.5 s, velocity 60/80
    notes = []
    for i in range(8):
        notes.append((60.0, 0.5 if i else 0.0, 0.4, 60.0))
        notes.append((64.0, 0.01, 0.2, 80.0))
    k = ctl.summaries(run(notes))
    named = dict(zip(ctl.CONTROLS, k.tolist()))
    # 8 chords; from the first chord's onset to the last one's: 7 steps of 0.5 s and the 7 chord
    # notes' 10 ms between them that lie before the last chord start
    assert named["density"] == pytest.approx(7 / (7 * 0.5 + 7 * 0.01), rel=1e-6)
    assert named["chord_share"] == 1.0
    assert named["pitch_mean"] == 62.0
    assert named["pitch_spread"] == 2.0
    assert named["velocity_mean"] == 70.0
    assert named["duration_median"] == pytest.approx(0.3)
    assert named["pc0"] == 0.5 and named["pc4"] == 0.5 and sum(k[6:]) == 1.0


def test_single_notes_have_no_chord_share_and_an_odd_median() -> None:
    notes = [(48.0 + i, 0.25, 0.1 * (i + 1), 64.0) for i in range(17)]
    named = dict(zip(ctl.CONTROLS, ctl.summaries(run(notes)).tolist()))
    assert named["chord_share"] == 0.0
    assert named["density"] == pytest.approx(4.0)
    assert named["duration_median"] == pytest.approx(0.9)
    assert named["pitch_spread"] == pytest.approx(math.sqrt((17 * 17 - 1) / 12), rel=1e-6)


def test_short_runs_and_single_chords_are_not_given() -> None:
    assert (ctl.summaries(run([(60, 0.1, 0.1, 64)], ctl.MIN_NOTES - 1)) == ctl.NOT_GIVEN).all()
    one_chord = ctl.summaries(run([(60, 0.0, 0.5, 64)], ctl.MIN_NOTES))
    assert one_chord[0] == ctl.NOT_GIVEN and one_chord[1] == 1.0


def test_batched_summaries_equal_one_run_at_a_time_bit_for_bit() -> None:
    rng = np.random.default_rng(0)
    runs = [np.column_stack([rng.integers(21, 109, n), rng.exponential(0.1, n) * (rng.random(n) < 0.6),
                             rng.exponential(0.2, n), rng.integers(1, 128, n)]).astype(np.float32)
            for n in rng.integers(1, ctl.WINDOW + 1, 200)]
    windows = np.zeros((len(runs), ctl.WINDOW, 4), np.float32)
    for i, r in enumerate(runs):
        windows[i, :len(r)] = r
        windows[i, len(r):] = rng.random((ctl.WINDOW - len(r), 4))  # what lies past the run is ignored
    batched = ctl.batch_summaries(windows, np.array([len(r) for r in runs]))
    single = np.stack([ctl.summaries(r) for r in runs])
    assert batched.tobytes() == single.tobytes()


def test_following_windows_stop_at_the_end_of_their_file() -> None:
    rng = np.random.default_rng(1)
    store = np.column_stack([rng.integers(40, 90, 300), rng.random(300) * 0.2, rng.random(300),
                             rng.integers(20, 120, 300)]).astype(np.float32)
    index = np.array([[0, 10, 150, 190]])
    out = ctl.following(store, index, np.array([[200, 200, 200, 200]]))
    assert np.array_equal(out[0, 0], ctl.summaries(store[1:1 + ctl.WINDOW]))
    assert np.array_equal(out[0, 2], ctl.summaries(store[151:200]))           # 49 notes left
    assert (out[0, 3] == ctl.NOT_GIVEN).all()                                 # 9 left: too few


def test_primer_summaries_read_the_last_window() -> None:
    notes = run([(60 + (i % 12), 0.1, 0.1, 30 + i) for i in range(200)])
    assert np.array_equal(ctl.primer_summaries(notes), ctl.summaries(notes[-ctl.WINDOW:]))


def test_check_names_the_control_and_its_range() -> None:
    ok = ctl.unset()
    ok[0] = 6.0
    assert ctl.check(ok).dtype == np.float32
    assert ctl.check(np.stack([ok, ctl.unset()])).shape == (2, ctl.C)
    bad = ok.copy()
    bad[4] = 200.0
    with pytest.raises(OptionsError, match=r"velocity_mean 200 is out of range; allowed \[1, 127\]"):
        ctl.check(bad)
    bad = ok.copy()
    bad[1] = np.nan
    with pytest.raises(OptionsError, match="chord_share is nan"):
        ctl.check(bad)
    with pytest.raises(OptionsError, match=f"must hold {ctl.C} values per row"):
        ctl.check([1.0, 2.0])
    with pytest.raises(OptionsError, match="must be numbers"):
        ctl.check(["fast"] * ctl.C)


def test_normalised_reading_is_of_order_one_over_the_typical_range() -> None:
    low = np.array([ctl.TYPICAL[n][0] for n in ctl.CONTROLS])
    high = np.array([ctl.TYPICAL[n][1] for n in ctl.CONTROLS])
    assert np.abs(ctl.normalised(low)).max() < 3 and np.abs(ctl.normalised(high)).max() < 3


def test_keys_parse_into_rotated_profiles() -> None:
    c_major = ctl.key_profile("C major")
    assert c_major.argmax() == 0 and c_major.sum() == pytest.approx(1.0, abs=1e-3)
    assert np.array_equal(ctl.key_profile("D minor"), np.roll(ctl.key_profile("c minor"), 2))
    assert np.array_equal(ctl.key_profile("Bb"), ctl.key_profile("A# major"))
    assert np.array_equal(ctl.key_profile("eb min"), ctl.key_profile("D# minor"))
    assert np.array_equal(ctl.key_profile("Am"), ctl.key_profile("A minor"))
    for bad in ("H major", "D dorian", "", "minor"):
        with pytest.raises(OptionsError, match="is not a key; write a tonic A-G"):
            ctl.key_profile(bad)


def test_resolve_holds_the_primer_but_its_register_and_releases_a_requested_family() -> None:
    notes = run([(60 + (i % 12), 0.1, 0.1, 30 + i % 90) for i in range(200)])
    primer = dict(zip(ctl.CONTROLS, ctl.primer_summaries(notes).tolist()))
    default = dict(zip(ctl.CONTROLS, ctl.resolve(notes).tolist()))
    for name in ctl.CONTROLS:  # the register is the model's to move; the rest stays the primer's
        assert default[name] == (ctl.NOT_GIVEN if name in ("pitch_mean", "pitch_spread") else primer[name]), name
    asked = dict(zip(ctl.CONTROLS, ctl.resolve(notes, {"density": 12.0, "velocity_mean": None}).tolist()))
    assert asked["density"] == 12.0
    assert asked["chord_share"] == asked["duration_median"] == ctl.NOT_GIVEN  # density's family released
    assert asked["velocity_mean"] == ctl.NOT_GIVEN                            # None: not given
    assert asked["pc0"] == primer["pc0"]                                     # another family: held
    with pytest.raises(OptionsError, match="controls: unknown tempo; known: density"):
        ctl.resolve(notes, {"tempo": 120.0})
    with pytest.raises(OptionsError, match="density"):
        ctl.resolve(notes, {"density": float("nan")})


def test_describe_lists_every_control_in_column_order() -> None:
    described = ctl.describe()
    assert described["names"] == list(ctl.CONTROLS) and len(described["units"]) == len(ctl.CONTROLS)
    assert described["not_given"] == ctl.NOT_GIVEN and described["window"] == ctl.WINDOW
